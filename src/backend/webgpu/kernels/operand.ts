/**
 * Float operands in their own storage (mixed precision): a kernel binds each float buffer
 * as raw 32-bit words and reads element e through `ld_<name>(e)` as f32, whether the
 * buffer holds f32 or 16-bit values packed two to a word.
 *
 * Writing a 16-bit element alone would race with the thread writing the other half of its
 * word, so kernels write outputs in pairs of elements (e even) through
 * `put_<name>(e, v0, v1, has1)`: one word for 16 bits, two stores for f32. Each value is
 * rounded to nearest even (the CPU reference's rounding, HALF_CONV).
 */
import type { DType, Precision } from '../../../tensor/dtype.js';
import { isPrecision } from '../../../tensor/dtype.js';
import { InternalError } from '../../../errors.js';
import type { Access, BufferBinding } from '../wgsl.js';
import { HALF_CONV } from '../wgsl.js';

/** How a float operand is stored: f32, f16 or bf16 (the same choices as a precision). */
export type FStore = Precision;

/** A float operand's storage; anything else is a caller's bug. */
export function fstore(dt: DType, what: string): FStore {
  if (!isPrecision(dt)) throw new InternalError(`webgpu.${what}: needs f32, f16 or bf16, got ${dt}`);
  return dt;
}

/** The binding of a float operand: raw 32-bit words, whatever it holds. */
export function words(name: string, access: Access): BufferBinding {
  return { name, access, type: 'u32' };
}

/** WGSL expression: the f32 value of element `e` of word buffer `buf` stored as `st`. */
export function loadExpr(st: FStore, buf: string, e: string): string {
  switch (st) {
    case 'f32': return `bitcast<f32>(${buf}[${e}])`;
    case 'f16': return `unpack2x16float(${buf}[(${e}) >> 1u])[(${e}) & 1u]`;
    case 'bf16': return `bitcast<f32>((${buf}[(${e}) >> 1u] >> (((${e}) & 1u) * 16u)) << 16u)`;
  }
}

/** WGSL `fn ld_<name>(e: u32) -> f32`, reading buffer `buf` (default: the operand's own binding). */
export function ld(name: string, st: FStore, buf = name): string {
  return `fn ld_${name}(e: u32) -> f32 { return ${loadExpr(st, buf, 'e')}; }`;
}

/** WGSL expression: f32 `v` rounded to the 16 bits of `st` (low half of a u32; needs HALF_CONV). */
export function to16(st: Exclude<FStore, 'f32'>, v: string): string {
  return st === 'f16' ? `f32_to_f16(${v})` : `f32_to_bf16(${v})`;
}

/** WGSL expression: the word holding `lo` and `hi` as 16-bit `st` values. */
export function pack16(st: Exclude<FStore, 'f32'>, lo: string, hi: string): string {
  return `(${to16(st, lo)} | (${to16(st, hi)} << 16u))`;
}

/**
 * WGSL `fn put_<name>(e: u32, v0: f32, v1: f32, has1: bool)`: writes elements e (even) and,
 * when has1, e + 1. A 16-bit word without its second element keeps that half's old bits.
 */
export function put(name: string, st: FStore): string {
  if (st === 'f32') {
    return `fn put_${name}(e: u32, v0: f32, v1: f32, has1: bool) { ${name}[e] = bitcast<u32>(v0); if (has1) { ${name}[e + 1u] = bitcast<u32>(v1); } }`;
  }
  // An if, not select(): the old word is read only for a last, half-filled word.
  return `fn put_${name}(e: u32, v0: f32, v1: f32, has1: bool) {
  let w = e >> 1u;
  var hi: u32;
  if (has1) { hi = ${to16(st, 'v1')}; } else { hi = ${name}[w] >> 16u; }
  ${name}[w] = ${to16(st, 'v0')} | (hi << 16u);
}`;
}

/** Whether any of `stores` is 16-bit (the kernel then needs HALF_CONV to write). */
export function any16(stores: readonly FStore[]): boolean {
  return stores.some((s) => s !== 'f32');
}

/**
 * The WGSL accessors of a kernel's float operands: `ld_<name>` for each, `put_<name>` for
 * each output, and HALF_CONV (the rounding) when an output is 16-bit.
 */
export function accessors(stores: Readonly<Record<string, FStore>>, outs: readonly string[]): string {
  return [
    ...(any16(outs.map((o) => stores[o]!)) ? [HALF_CONV] : []),
    ...Object.entries(stores).map(([name, st]) => ld(name, st)),
    ...outs.map((o) => put(o, stores[o]!)),
  ].join('\n');
}
