/** Fill, cast, unary/binary elementwise, SwiGLU, affine, strided copy and sums. */
import type { BinaryOp, CopyArgs, UnaryOp } from '../../backend.js';
import type { DType } from '../../../tensor/dtype.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../../../tensor/dtype.js';
import { InternalError } from '../../../errors.js';
import type { FieldType, KernelSpec, Launch } from '../wgsl.js';
import { grid1, gridRows, HALF_CONV, main1d, mainRows, WG_REDUCE } from '../wgsl.js';
import { accessors, any16, type FStore, ld, words } from './operand.js';

const specs = new Map<string, KernelSpec>();
/** One spec object per key, built on first use. */
export function spec(key: string, make: () => Omit<KernelSpec, 'key'>): KernelSpec {
  let s = specs.get(key);
  if (!s) { s = { key, ...make() }; specs.set(key, s); }
  return s;
}

const f32bits = new Float32Array(1);
const u32bits = new Uint32Array(f32bits.buffer);

/** Elements of `dtype` per 32-bit word. */
export function perWord(dtype: DType): number {
  return dtype === 'f16' || dtype === 'bf16' ? 2 : dtype === 'u8' ? 4 : 1;
}

/** Words holding `numel` elements of `dtype`. */
export function wordsOf(dtype: DType, numel: number): number {
  return Math.ceil(numel / perWord(dtype));
}

// ---- fill ---------------------------------------------------------------------------

/** The 32-bit word that repeats `value` stored as `dtype`. */
function fillWord(dtype: DType, value: number): number {
  switch (dtype) {
    case 'f32': f32bits[0] = value; return u32bits[0]!;
    case 'i32': return (Math.trunc(value) | 0) >>> 0;
    case 'f16': { const h = f32ToF16Bits(value); return ((h << 16) | h) >>> 0; }
    case 'bf16': { const h = f32ToBf16Bits(value); return ((h << 16) | h) >>> 0; }
    case 'u8': { const b = Math.trunc(value) & 0xff; return (b * 0x01010101) >>> 0; }
    case 'f64': throw new InternalError('webgpu: no f64');
  }
}

export function fill(dtype: DType, numel: number, value: number): Launch {
  const words = wordsOf(dtype, numel);
  return {
    spec: spec('fill', () => ({
      buffers: [{ name: 'o', access: 'rw', type: 'u32' }],
      fields: [['n', 'u32'], ['v', 'u32']],
      body: `${main1d()}\n  if (i >= a.n) { return; }\n  o[i] = a.v;\n}`,
    })),
    args: [words, fillWord(dtype, value)],
    grid: grid1(words),
  };
}

// ---- cast ---------------------------------------------------------------------------

/** WGSL expression reading element `e` of raw-word buffer `buf` (dtype `dt`) as f32. */
function readAsF32(dt: DType, buf: string, e: string): string {
  switch (dt) {
    case 'f32': return `bitcast<f32>(${buf}[${e}])`;
    case 'i32': return `f32(bitcast<i32>(${buf}[${e}]))`;
    case 'f16': return `f16_to_f32((${buf}[(${e}) >> 1u] >> (((${e}) & 1u) * 16u)) & 0xffffu)`;
    case 'bf16': return `bf16_to_f32((${buf}[(${e}) >> 1u] >> (((${e}) & 1u) * 16u)) & 0xffffu)`;
    case 'u8': return `f32((${buf}[(${e}) >> 2u] >> (((${e}) & 3u) * 8u)) & 0xffu)`;
    case 'f64': throw new InternalError('webgpu: no f64');
  }
}

/** WGSL expression converting f32 `v` to the stored bits of `dt` (in the low bits). */
function storeBits(dt: DType, v: string): string {
  switch (dt) {
    case 'f32': return `bitcast<u32>(${v})`;
    case 'i32': return `bitcast<u32>(i32(trunc(${v})))`;
    case 'f16': return `f32_to_f16(${v})`;
    case 'bf16': return `f32_to_bf16(${v})`;
    case 'u8': return `(bitcast<u32>(i32(trunc(${v}))) & 0xffu)`;
    case 'f64': throw new InternalError('webgpu: no f64');
  }
}

/** Converts between dtypes; one thread per destination word. Same dtype is a raw copy. */
export function cast(src: DType, dst: DType, numel: number): Launch {
  const words = wordsOf(dst, numel);
  if (src === dst) {
    return {
      spec: spec('copywords', () => ({
        buffers: [{ name: 's', access: 'read', type: 'u32' }, { name: 'o', access: 'rw', type: 'u32' }],
        fields: [['n', 'u32']],
        body: `${main1d()}\n  if (i >= a.n) { return; }\n  o[i] = s[i];\n}`,
      })),
      args: [words],
      grid: grid1(words),
    };
  }
  const per = perWord(dst);
  const bits = 32 / per;
  return {
    spec: spec(`cast:${src}:${dst}`, () => {
      const parts: string[] = [];
      for (let p = 0; p < per; p++) {
        const e = `i * ${per}u + ${p}u`;
        const val = storeBits(dst, readAsF32(src, 's', e));
        parts.push(p === 0 ? `  var w = ${val};` : `  if (${e} < a.n) { w = w | (${val} << ${p * bits}u); }`);
      }
      return {
        buffers: [{ name: 's', access: 'read', type: 'u32' }, { name: 'o', access: 'rw', type: 'u32' }],
        fields: [['n', 'u32'], ['words', 'u32']],
        body: `${HALF_CONV}\n${main1d()}\n  if (i >= a.words) { return; }\n${parts.join('\n')}\n  o[i] = w;\n}`,
      };
    }),
    args: [numel, words],
    grid: grid1(words),
  };
}

// ---- unary, binary, affine ------------------------------------------------------------

const UNARY: Record<UnaryOp, string> = {
  neg: '-v',
  exp: 'exp(v)',
  log: 'log(v)',
  silu: 'v / (1.0 + exp(-v))',
  sigmoid: '1.0 / (1.0 + exp(-v))',
  square: 'v * v',
  sqrt: 'sqrt(v)',
  tanh: 'tanh(clamp(v, -15.0, 15.0))',
  relu: 'select(0.0, v, v > 0.0)',
};

/** op'(v), as WGSL statements ending in `return`. */
const DERIV: Record<UnaryOp, string> = {
  neg: 'return -1.0;',
  exp: 'return exp(v);',
  log: 'return 1.0 / v;',
  silu: 'let s = 1.0 / (1.0 + exp(-v)); return s * (1.0 + v * (1.0 - s));',
  sigmoid: 'let s = 1.0 / (1.0 + exp(-v)); return s * (1.0 - s);',
  square: 'return 2.0 * v;',
  sqrt: 'return 0.5 / sqrt(v);',
  tanh: 'let t = tanh(clamp(v, -15.0, 15.0)); return 1.0 - t * t;',
  relu: 'return select(0.0, 1.0, v > 0.0);',
};

const F32_IN = (name: string) => ({ name, access: 'read' as const, type: 'f32' });
const F32_OUT = (name: string) => ({ name, access: 'rw' as const, type: 'f32' });

/** An operand of a pointwise kernel: its binding name, storage, and whether the kernel writes it. */
interface Operand { name: string; st: FStore; out?: boolean }
/** An input read through another operand's binding (in place): [name, binding, storage]. */
type Alias = readonly [string, string, FStore];

/**
 * A pointwise kernel over n elements. `fn` defines `fn f(e: u32) -> R`, the outputs of
 * element e (f32 for one output, vecK<f32> for K, in operand order), reading inputs with
 * `ld_<name>(e)`. With a 16-bit output each thread does a pair of elements (put, operand.ts).
 */
function pointwise(key: string, ops: readonly Operand[], fn: string, n: number,
  extra: { fields?: ReadonlyArray<readonly [string, FieldType]>; args?: readonly number[]; aliases?: readonly Alias[] } = {}): Launch {
  const outs = ops.filter((o) => o.out);
  const P = any16(outs.map((o) => o.st)) ? 2 : 1;
  const res = (r: string, j: number): string => (outs.length === 1 ? r : `${r}[${j}]`);
  const s = spec(`${key}|${ops.map((o) => o.st).join(',')}|${(extra.aliases ?? []).map((x) => x[2]).join(',')}`, () => {
    const lines = [main1d(), `  let e0 = i * ${P}u;`, '  if (e0 >= a.n) { return; }', '  let r0 = f(e0);'];
    if (P === 1) outs.forEach((o, j) => lines.push(`  ${o.name}[e0] = bitcast<u32>(${res('r0', j)});`));
    else {
      lines.push('  let has1 = e0 + 1u < a.n;', '  var r1 = r0;', '  if (has1) { r1 = f(e0 + 1u); }');
      outs.forEach((o, j) => lines.push(`  put_${o.name}(e0, ${res('r0', j)}, ${res('r1', j)}, has1);`));
    }
    lines.push('}');
    return {
      buffers: ops.map((o) => words(o.name, o.out ? 'rw' : 'read')),
      fields: [['n', 'u32'], ...(extra.fields ?? [])],
      body: [
        accessors(Object.fromEntries(ops.map((o) => [o.name, o.st])), outs.map((o) => o.name)),
        ...(extra.aliases ?? []).map(([name, buf, st]) => ld(name, st, buf)),
        fn, ...lines,
      ].join('\n'),
    };
  });
  return { spec: s, args: [n, ...(extra.args ?? [])], grid: grid1(Math.ceil(n / P)) };
}

/** Storage of the operands of a pointwise kernel (all f32 unless given). */
export type Stores = Readonly<Record<string, FStore>>;
const stOf = (st: Stores, name: string): FStore => st[name] ?? 'f32';

/** out = op(x); `inPlace` when out is x. */
export function unary(op: UnaryOp, n: number, inPlace: boolean, st: Stores = {}): Launch {
  const o: Operand = { name: 'o', st: stOf(st, 'o'), out: true };
  return pointwise(`unary:${op}:${inPlace}`, inPlace ? [o] : [{ name: 'x', st: stOf(st, 'x') }, o],
    `fn f(e: u32) -> f32 { let v = ld_x(e); return ${UNARY[op]}; }`, n, { aliases: inPlace ? [['x', 'o', o.st]] : [] });
}

export function unaryBackward(op: UnaryOp, n: number, st: Stores = {}): Launch {
  return pointwise(`unaryBackward:${op}`, [{ name: 'x', st: stOf(st, 'x') }, { name: 'dy', st: stOf(st, 'dy') }, { name: 'dx', st: stOf(st, 'dx'), out: true }],
    `fn df(v: f32) -> f32 { ${DERIV[op]} }
fn f(e: u32) -> f32 { return ld_dy(e) * df(ld_x(e)); }`, n);
}

const BINARY: Record<BinaryOp, string> = { add: '+', sub: '-', mul: '*', div: '/' };

/** out[i] = a[i] ∘ b[i mod nb]; `inPlace` when out is a. */
export function binary(op: BinaryOp, n: number, nb: number, inPlace: boolean, st: Stores = {}): Launch {
  const o: Operand = { name: 'o', st: stOf(st, 'o'), out: true };
  const y: Operand = { name: 'y', st: stOf(st, 'y') };
  return pointwise(`binary:${op}:${inPlace}`, inPlace ? [y, o] : [{ name: 'x', st: stOf(st, 'x') }, y, o],
    `fn f(e: u32) -> f32 { return ld_x(e) ${BINARY[op]} ld_y(e % a.nb); }`, n,
    { fields: [['nb', 'u32']], args: [nb], aliases: inPlace ? [['x', 'o', o.st]] : [] });
}

/** σ(v) as a WGSL expression (the sigmoid of `UNARY`). */
const SIGMOID = (v: string): string => `1.0 / (1.0 + exp(-${v}))`;

/** out = silu(gate) · up; `gateIsOut` / `upIsOut` when out is that input (in place). */
export function swiglu(n: number, gateIsOut: boolean, upIsOut: boolean, st: Stores = {}): Launch {
  const o: Operand = { name: 'o', st: stOf(st, 'o'), out: true };
  const ins: Operand[] = [...(gateIsOut ? [] : [{ name: 'g', st: stOf(st, 'g') }]), ...(upIsOut ? [] : [{ name: 'u', st: stOf(st, 'u') }])];
  const aliases: Alias[] = [...(gateIsOut ? [['g', 'o', o.st] as const] : []), ...(upIsOut ? [['u', 'o', o.st] as const] : [])];
  return pointwise(`swiglu:${gateIsOut}:${upIsOut}`, [...ins, o],
    `fn f(e: u32) -> f32 { let v = ld_g(e); return v * (${SIGMOID('v')}) * ld_u(e); }`, n, { aliases });
}

/**
 * dgate = dout · up · silu'(gate) and dup = dout · silu(gate); the flags say which
 * gradients are written (each is a binding of its own, after gate, up and dout).
 */
export function swigluBackward(n: number, dgate: boolean, dup: boolean, st: Stores = {}): Launch {
  if (!dgate && !dup) throw new InternalError('webgpu.swigluBackward: no gradient to write');
  const outs: string[] = [];
  if (dgate) outs.push('dy * ld_u(e) * s * (1.0 + v * (1.0 - s))');
  if (dup) outs.push('dy * v * s');
  const R = outs.length === 1 ? 'f32' : 'vec2<f32>';
  return pointwise(`swigluBackward:${dgate}:${dup}`, [
    { name: 'g', st: stOf(st, 'g') }, { name: 'u', st: stOf(st, 'u') }, { name: 'dy', st: stOf(st, 'dy') },
    ...(dgate ? [{ name: 'dg', st: stOf(st, 'dg'), out: true }] : []), ...(dup ? [{ name: 'du', st: stOf(st, 'du'), out: true }] : []),
  ], `fn f(e: u32) -> ${R} {
  let v = ld_g(e);
  let s = ${SIGMOID('v')};
  let dy = ld_dy(e);
  return ${R}(${outs.join(', ')});
}`, n);
}

export function affine(n: number, alpha: number, beta: number, inPlace: boolean, st: Stores = {}): Launch {
  const o: Operand = { name: 'o', st: stOf(st, 'o'), out: true };
  return pointwise(`affine:${inPlace}`, inPlace ? [o] : [{ name: 'x', st: stOf(st, 'x') }, o],
    'fn f(e: u32) -> f32 { return a.alpha * ld_x(e) + a.beta; }', n,
    { fields: [['alpha', 'f32'], ['beta', 'f32']], args: [alpha, beta], aliases: inPlace ? [['x', 'o', o.st]] : [] });
}

// ---- strided copy ---------------------------------------------------------------------

interface Dims { shape: number[]; src: number[]; dst: number[] }

/** Drops size-1 axes and merges axes that are contiguous in both source and destination. */
export function collapse(a: CopyArgs): Dims {
  const shape: number[] = [];
  const src: number[] = [];
  const dst: number[] = [];
  for (let ax = 0; ax < a.shape.length; ax++) {
    const n = a.shape[ax]!;
    if (n === 1) continue;
    const s = a.srcStrides[ax]!;
    const d = a.dstStrides[ax]!;
    const last = shape.length - 1;
    if (last >= 0 && src[last] === s * n && dst[last] === d * n) {
      shape[last] = shape[last]! * n;
      src[last] = s;
      dst[last] = d;
    } else {
      shape.push(n);
      src.push(s);
      dst.push(d);
    }
  }
  if (shape.length === 0) { shape.push(1); src.push(0); dst.push(0); }
  return { shape, src, dst };
}

/** WGSL that decomposes `lin` over axes `axes` (names of shape/stride fields) into offsets s, d. */
function decompose(lin: string, axes: number[], prefix: string, withDst: boolean): string {
  const lines = [`  var rem = ${lin};`];
  for (let k = axes.length - 1; k >= 0; k--) {
    const ax = axes[k]!;
    lines.push(`  { let c = rem % a.${prefix}sh${ax}; rem = rem / a.${prefix}sh${ax}; s = s + c * a.${prefix}ss${ax};${withDst ? ` d = d + c * a.${prefix}ds${ax};` : ''} }`);
  }
  return lines.join('\n');
}

/**
 * The strided copy. 32-bit elements copy raw words (f32 adds when accumulating);
 * 16- and 8-bit destinations are written with atomics on their word, so neighbouring
 * elements written by other threads survive. With `accumulate` and destination stride 0
 * on some axes (the reduction that undoes a broadcast), one thread owns each destination
 * element and sums over those axes, so no two threads add into one element.
 */
export function copy(dtype: DType, args: CopyArgs): Launch {
  const { shape, src, dst } = collapse(args);
  const total = shape.reduce((p, s) => p * s, 1);
  const reduceAxes = args.accumulate ? shape.map((_, i) => i).filter((i) => dst[i] === 0) : [];
  const keepAxes = shape.map((_, i) => i).filter((i) => !reduceAxes.includes(i));
  const R = shape.length;
  const per = perWord(dtype);
  if (args.accumulate && per !== 1) throw new InternalError(`webgpu.copy: accumulate needs 32-bit elements, got ${dtype}`);
  if (args.accumulate && dtype !== 'f32' && dtype !== 'i32') throw new InternalError(`webgpu.copy: cannot accumulate ${dtype}`);
  const fields: Array<[string, 'u32']> = [['n', 'u32'], ['nr', 'u32'], ['so', 'u32'], ['do_', 'u32']];
  for (let k = 0; k < R; k++) fields.push([`sh${k}`, 'u32'], [`ss${k}`, 'u32'], [`ds${k}`, 'u32']);
  const keepN = keepAxes.reduce((p, ax) => p * shape[ax]!, 1);
  const redN = reduceAxes.reduce((p, ax) => p * shape[ax]!, 1);
  const values: number[] = [keepN, redN, args.srcOffset, args.dstOffset];
  for (let k = 0; k < R; k++) values.push(shape[k]!, src[k]!, dst[k]!);
  const key = `copy:${dtype}:${R}:${args.accumulate}:${keepAxes.join('.')}|${reduceAxes.join('.')}`;
  // Plain copies move raw words (no float registers that could flush subnormals or NaN payloads).
  const elem = !args.accumulate ? 'u32' : dtype === 'f32' ? 'f32' : 'i32';
  const launchSpec = spec(key, () => {
    let body: string;
    if (per === 1) {
      const sumType = elem;
      const inner = reduceAxes.length === 0
        ? (args.accumulate ? '  o[d] = o[d] + x[s];' : '  o[d] = x[s];')
        : `  let s0 = s;
  var acc: ${sumType} = ${sumType}(0);
  for (var r = 0u; r < a.nr; r = r + 1u) {
    s = s0;
    {
${decompose('r', reduceAxes, '', false).replace(/^/gm, '  ')}
    }
    acc = acc + x[s];
  }
  o[d] = o[d] + acc;`;
      body = `${main1d()}
  if (i >= a.n) { return; }
  var s = a.so;
  var d = a.do_;
${decompose('i', keepAxes, '', true)}
${inner}
}`;
      return {
        buffers: [{ name: 'x', access: 'read', type: elem }, { name: 'o', access: 'rw', type: elem }],
        fields, body,
      };
    }
    const bits = 32 / per;
    const mask = per === 2 ? '0xffffu' : '0xffu';
    const shiftS = per === 2 ? 1 : 2;
    body = `${main1d()}
  if (i >= a.n) { return; }
  var s = a.so;
  var d = a.do_;
${decompose('i', keepAxes, '', true)}
  let v = (x[s >> ${shiftS}u] >> ((s & ${per - 1}u) * ${bits}u)) & ${mask};
  let sh = (d & ${per - 1}u) * ${bits}u;
  atomicAnd(&o[d >> ${shiftS}u], ~(${mask} << sh));
  atomicOr(&o[d >> ${shiftS}u], v << sh);
}`;
    return {
      buffers: [{ name: 'x', access: 'read', type: 'u32' }, { name: 'o', access: 'rw', type: 'atomic<u32>' }],
      fields, body,
    };
  });
  return { spec: launchSpec, args: values, grid: grid1(total === 0 ? 0 : keepN) };
}

// ---- sums ---------------------------------------------------------------------------

/** x [outer, size, inner] → out [outer, inner]. */
export function reduceSum(outer: number, size: number, inner: number): Launch {
  if (inner === 1) {
    return {
      spec: spec('reduceRows', () => ({
        buffers: [F32_IN('x'), F32_OUT('o')],
        fields: [['rows', 'u32'], ['size', 'u32']],
        body: `${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  var acc = 0.0;
  for (var r = li; r < a.size; r = r + 256u) { acc = acc + x[row * a.size + r]; }
  acc = wg_sum(acc, li);
  if (li == 0u) { o[row] = acc; }
}`,
      })),
      args: [outer, size],
      grid: gridRows(outer),
    };
  }
  return {
    spec: spec('reduceCols', () => ({
      buffers: [F32_IN('x'), F32_OUT('o')],
      fields: [['n', 'u32'], ['size', 'u32'], ['inner', 'u32']],
      body: `${main1d()}
  if (i >= a.n) { return; }
  let oi = i / a.inner;
  let ii = i % a.inner;
  var acc = 0.0;
  for (var r = 0u; r < a.size; r = r + 1u) { acc = acc + x[(oi * a.size + r) * a.inner + ii]; }
  o[i] = acc;
}`,
    })),
    args: [outer * inner, size, inner],
    grid: grid1(outer * inner),
  };
}
