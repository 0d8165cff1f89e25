/**
 * WGSL module assembly shared by the kernels.
 *
 * A kernel is a `KernelSpec`: a cache key (everything that changes the code), its storage
 * buffers in binding order, the scalar arguments it reads from a small uniform block
 * (`a.<field>`), and the WGSL body with `fn main`. The backend compiles one pipeline per
 * key and writes each dispatch's arguments into a shared uniform arena, so no dispatch
 * needs a host round trip. Sizes, offsets and scalars are arguments; structure (dtypes,
 * transposes, head dim, tile sizes, mask form) is part of the key.
 */

export type Access = 'read' | 'rw';
export type FieldType = 'u32' | 'i32' | 'f32';

export interface BufferBinding {
  name: string;
  access: Access;
  /** Element type of the `array<...>`: f32, i32, u32, atomic<u32>, f16. */
  type: string;
}

export interface KernelSpec {
  key: string;
  buffers: readonly BufferBinding[];
  fields: ReadonlyArray<readonly [string, FieldType]>;
  /** Helpers and `fn main`, after the declarations. */
  body: string;
  /** Needs `enable f16;` (the shader-f16 feature). */
  f16?: boolean;
  /** Further directives (`enable ...;`, `diagnostic(...);`), placed before every declaration. */
  header?: string;
  /** Binds the backend's status buffer as `status` (kernels that validate ids report there). */
  status?: boolean;
}

export type Grid = [number, number, number];

/** One kernel launch: the spec, its argument values (in `fields` order) and the workgroup grid. */
export interface Launch {
  spec: KernelSpec;
  args: readonly number[];
  grid: Grid;
}

export const MAX_GROUPS = 65535;

/** Workgroups for `threads` threads in groups of `wg`, folded into 2-D when over the per-dimension limit. */
export function grid1(threads: number, wg = 256): Grid {
  const groups = Math.ceil(threads / wg);
  if (groups <= MAX_GROUPS) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y, 1];
}

/** A grid with one workgroup per row, folded into 2-D when needed (row = wid.y·nwg.x + wid.x). */
export function gridRows(rows: number): Grid {
  return grid1(rows, 1);
}

/** Entry point header for 1-D kernels: defines `i`, the global thread index. */
export function main1d(wg = 256): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${wg}u + li;`;
}

/** Entry point header for one-workgroup-per-row kernels: defines `row` (uniform) and `li`. */
export function mainRows(wg = 256): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wid.y * nwg.x + wid.x;`;
}

/** Assembles the full WGSL module of a kernel. */
export function buildModule(spec: KernelSpec): string {
  const fields = spec.fields.length > 0 ? spec.fields : [['pad_', 'u32'] as const];
  const lines: string[] = [];
  if (spec.f16) lines.push('enable f16;');
  if (spec.header) lines.push(spec.header);
  lines.push(`struct Args {\n${fields.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}`);
  lines.push('@group(0) @binding(0) var<uniform> a: Args;');
  spec.buffers.forEach((b, i) => {
    const access = b.access === 'read' ? 'read' : 'read_write';
    lines.push(`@group(0) @binding(${i + 1}) var<storage, ${access}> ${b.name}: array<${b.type}>;`);
  });
  if (spec.status) {
    lines.push(`@group(0) @binding(${spec.buffers.length + 1}) var<storage, read_write> status: array<atomic<u32>>;`);
    lines.push(STATUS_FN);
  }
  lines.push(spec.body);
  return lines.join('\n');
}

/** Bytes of the uniform block of a spec (4 per field, rounded up to 16). */
export function argsBytes(spec: KernelSpec): number {
  return Math.max(16, Math.ceil((spec.fields.length * 4) / 16) * 16);
}

/**
 * The status buffer: [code, position, value, limit]. The first kernel thread that finds
 * a bad id records it; the backend reads it back at the next download/sync and throws.
 */
const STATUS_FN = `
fn report(code: u32, pos: u32, value: i32, limit: u32) {
  loop {
    let r = atomicCompareExchangeWeak(&status[0], 0u, code);
    if (r.exchanged) {
      atomicStore(&status[1], pos);
      atomicStore(&status[2], bitcast<u32>(value));
      atomicStore(&status[3], limit);
      break;
    }
    if (r.old_value != 0u) { break; }
  }
}`;

export const STATUS_BAD_TOKEN = 1;
export const STATUS_BAD_TARGET = 2;

/** A finite stand-in for −∞ (WGSL implementations may assume no infinities). */
export const NEG_BIG = '-3.0e38';

/** Workgroup reductions over 256 threads (call in uniform control flow). */
export const WG_REDUCE = `
var<workgroup> red: array<f32, 256>;
fn wg_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wg_max(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/**
 * 16-bit float conversions with the CPU reference's exact rounding (nearest even,
 * subnormals, overflow to infinity, NaN kept), on raw bits so no float mode interferes.
 */
export const HALF_CONV = `
fn f16_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8;
    return select(v, -v, sign != 0u);
  }
  if (e == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
fn bf16_to_f32(h: u32) -> f32 {
  return bitcast<f32>(h << 16u);
}
fn f32_to_bf16(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) | 0x40u) & 0xffffu; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn f32_to_f16(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let ex = (bits >> 23u) & 0xffu;
  var mant = bits & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  var e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var m = mant >> shift;
    if (rest > half || (rest == half && (m & 1u) != 0u)) { m = m + 1u; }
    return sign | m;
  }
  let rest = mant & 0x1fffu;
  var m = mant >> 13u;
  if (rest > 0x1000u || (rest == 0x1000u && (m & 1u) != 0u)) {
    m = m + 1u;
    if (m == 0x400u) {
      m = 0u;
      e = e + 1;
      if (e >= 31) { return sign | 0x7c00u; }
    }
  }
  return sign | (u32(e) << 10u) | m;
}`;
