/**
 * The subgroup-matrix operations the tensor-core kernels (matmul-sgm.ts, attention-sgm.ts)
 * are written in: Dawn's `chromium_experimental_subgroup_matrix` builtins, or the same
 * operations written out in plain WGSL (`emulate`) so that the kernels' tiling, offsets and
 * strides run, and are tested against the CPU, on adapters without the extension.
 *
 * Every operand lives in a workgroup array: left matrices (M×K) and right matrices (K×N)
 * of f16, result matrices (M×N) of f32. `off` is the element offset of the matrix's first
 * element and `stride` the elements between rows (or, column-major, between columns), as
 * the builtins take them.
 *
 * Emulation: every invocation holds whole left and right matrices; a result's element
 * e = row·N + col lives in lane e mod SG, slot ⌊e / SG⌋. The helper functions are made per
 * workgroup array (WGSL cannot take a pointer to arrays of different lengths in one
 * function), as the kernel asks for them; `helpers()` returns them afterwards. The kernel
 * declares `var<private> lane: u32;` and sets it to its subgroup_invocation_id.
 */
import { InternalError } from '../../../errors.js';
import type { SgmPlan } from './matmul-sgm.js';

export interface SgmOps {
  /** Directives the kernel needs (enable lines, diagnostics). */
  header: string;
  /** Private declarations and functions of the emulation (empty for the builtins); call after writing the body. */
  helpers(): string;
  /** WGSL types of the three matrices. */
  types: { left: string; right: string; result: string };
  /** A zero result matrix. */
  zero: string;
  left(arr: string, off: string, stride: number): string;
  right(arr: string, off: string, stride: number, colMajor?: boolean): string;
  /** A result matrix loaded from an f32 array (to accumulate onto). */
  result(arr: string, off: string, stride: number): string;
  mma(l: string, r: string, c: string): string;
  /** A statement storing result c into an f32 array. */
  store(arr: string, off: string, c: string, stride: number): string;
}

export function sgmOps(p: Pick<SgmPlan, 'M' | 'N' | 'K' | 'SG' | 'emulate'>, arrays: readonly string[]): SgmOps {
  const { M, N, K, SG } = p;
  const types = { left: `subgroup_matrix_left<f16, ${K}, ${M}>`, right: `subgroup_matrix_right<f16, ${N}, ${K}>`, result: `subgroup_matrix_result<f32, ${N}, ${M}>` };
  if (!p.emulate) {
    return {
      header: 'enable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);',
      helpers: () => '',
      types,
      zero: `${types.result}()`,
      left: (arr, off, stride) => `subgroupMatrixLoad<${types.left}>(&${arr}, ${off}, false, ${stride}u)`,
      right: (arr, off, stride, colMajor = false) => `subgroupMatrixLoad<${types.right}>(&${arr}, ${off}, ${colMajor}, ${stride}u)`,
      result: (arr, off, stride) => `subgroupMatrixLoad<${types.result}>(&${arr}, ${off}, false, ${stride}u)`,
      mma: (l, r, c) => `subgroupMatrixMultiplyAccumulate(${l}, ${r}, ${c})`,
      store: (arr, off, c, stride) => `subgroupMatrixStore(&${arr}, ${off}, ${c}, false, ${stride}u);`,
    };
  }
  const owned = (M * N) / SG;
  const L = `array<f32, ${M * K}>`;
  const R = `array<f32, ${K * N}>`;
  const C = `array<f32, ${owned}>`;
  const made = new Map<string, string>();
  const need = (arr: string, kind: string, make: () => string): string => {
    if (!arrays.includes(arr)) throw new InternalError(`sgmOps: ${arr} is not one of the kernel's workgroup arrays (${arrays.join(', ')})`);
    const name = `sm_${kind}_${arr}`;
    if (!made.has(name)) made.set(name, make());
    return name;
  };
  /** Element e of a result, in this lane's slot s. */
  const slot = 'let e = lane + s * ' + SG + 'u;';
  return {
    header: 'enable subgroups;',
    helpers: () => [
      `fn sm_mma(l: ${L}, r: ${R}, c: ${C}) -> ${C} {
  var o = c;
  for (var s = 0u; s < ${owned}u; s = s + 1u) {
    ${slot}
    for (var k = 0u; k < ${K}u; k = k + 1u) { o[s] = fma(l[(e / ${N}u) * ${K}u + k], r[k * ${N}u + e % ${N}u], o[s]); }
  }
  return o;
}`,
      ...made.values(),
    ].join('\n'),
    types: { left: L, right: R, result: C },
    zero: `${C}()`,
    left: (arr, off, stride) => `${need(arr, 'left', () => `fn sm_left_${arr}(off: u32, st: u32) -> ${L} {
  var v: ${L};
  for (var e = 0u; e < ${M * K}u; e = e + 1u) { v[e] = f32(${arr}[off + (e / ${K}u) * st + e % ${K}u]); }
  return v;
}`)}(${off}, ${stride}u)`,
    right: (arr, off, stride, colMajor = false) => `${need(arr, 'right', () => `fn sm_right_${arr}(off: u32, cm: bool, st: u32) -> ${R} {
  var v: ${R};
  for (var e = 0u; e < ${K * N}u; e = e + 1u) {
    let r = e / ${N}u;
    let c = e % ${N}u;
    v[e] = f32(${arr}[select(off + r * st + c, off + c * st + r, cm)]);
  }
  return v;
}`)}(${off}, ${colMajor}, ${stride}u)`,
    result: (arr, off, stride) => `${need(arr, 'result', () => `fn sm_result_${arr}(off: u32, st: u32) -> ${C} {
  var v: ${C};
  for (var s = 0u; s < ${owned}u; s = s + 1u) {
    ${slot}
    v[s] = ${arr}[off + (e / ${N}u) * st + e % ${N}u];
  }
  return v;
}`)}(${off}, ${stride}u)`,
    mma: (l, r, c) => `sm_mma(${l}, ${r}, ${c})`,
    store: (arr, off, c, stride) => `${need(arr, 'store', () => `fn sm_store_${arr}(off: u32, c: ${C}, st: u32) {
  for (var s = 0u; s < ${owned}u; s = s + 1u) {
    ${slot}
    ${arr}[off + (e / ${N}u) * st + e % ${N}u] = c[s];
  }
}`)}(${off}, ${c}, ${stride}u);`,
  };
}
