/**
 * Matmul on subgroup matrices (tensor cores): out[b] = alpha · op(A[b]) · op(B[b]) + beta · out[b]
 * for f16 operands, with f32 accumulation, through Dawn's experimental WGSL extension
 * `chromium_experimental_subgroup_matrix` (Vulkan cooperative matrices, Metal simdgroup
 * matrices). Opt-in (the `subgroupMatrix` option) while the extension is experimental.
 *
 * A workgroup computes a BM×BN tile of out with 2×2 subgroups, each owning a
 * (BM/2)×(BN/2) block as a grid of M×N result matrices of one adapter configuration
 * (M×K · K×N). Per step of BK along k, the workgroup loads op(A) and op(B) tiles into
 * workgroup memory as f16 (row-major, every transpose handled by the load, which reads
 * along the contiguous axis), then each subgroup multiplies its blocks K at a time. The
 * results go through workgroup memory to the usual epilogue (alpha, beta, bounds, 16-bit
 * pairs), so any m, n, k and every output dtype work.
 *
 * The same kernel can be generated with the subgroup-matrix operations written out in plain
 * WGSL (`emulate`): every invocation holds whole left and right matrices and computes the
 * result elements it owns (element e of a result belongs to subgroup lane e mod S). Tests
 * run that form on adapters without the extension (lavapipe), so the tiling, offsets,
 * strides and epilogue are checked against the CPU everywhere; only the extension's own
 * builtins need a GPU that has them.
 */
import type { MatmulArgs } from '../../backend.js';
import type { DType } from '../../../tensor/dtype.js';
import { InternalError } from '../../../errors.js';
import type { Launch } from '../wgsl.js';
import { spec } from './elementwise.js';
import { accessors, fstore } from './operand.js';
import { loadTiles, MATMUL_FIELDS, matmulBuffers, storeOut, tileLaunches } from './matmul.js';
import { sgmOps } from './sgm-ops.js';

/** One of the adapter's `subgroupMatrixConfigs` (GPUSubgroupMatrixConfig). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** How the kernel is built: a configuration, the subgroup size and the tile. */
export interface SgmPlan {
  M: number;
  N: number;
  K: number;
  /** Subgroup size (the adapter's only one: min = max). */
  SG: number;
  BM: number;
  BN: number;
  BK: number;
  /** Plain WGSL in place of the extension's builtins (tests). */
  emulate: boolean;
}

/** Subgroups per workgroup along m and along n. */
const SUB_M = 2;
const SUB_N = 2;
/** Padding of the workgroup-memory rows (elements): keeps every row 16-byte aligned, spreads banks. */
const PAD16 = 8;
const PAD32 = 4;

/** Workgroup memory the kernel needs for a plan (A and B tiles in f16, the result tile in f32). */
export function sgmStorageBytes(p: Pick<SgmPlan, 'BM' | 'BN' | 'BK'>): number {
  return 2 * (p.BM * (p.BK + PAD16) + p.BK * (p.BN + PAD16)) + 4 * p.BM * (p.BN + PAD32);
}

/**
 * The plan for an adapter, or why there is none: an f16 → f32 configuration whose blocks
 * tile a 64×64 (or 128×128) workgroup tile, one subgroup size, and the workgroup memory.
 */
export function sgmPlan(configs: readonly SubgroupMatrixConfig[], sgMin: number, sgMax: number, storage: number, maxThreads: number, emulate = false):
  { plan: SgmPlan | null; reason: string } {
  if (configs.length === 0) return { plan: null, reason: 'the adapter lists no subgroup-matrix configurations' };
  if (!(sgMin > 0) || sgMin !== sgMax) return { plan: null, reason: `the adapter's subgroup size varies (${sgMin}–${sgMax}); the kernel needs one size` };
  const SG = sgMax;
  if (SUB_M * SUB_N * SG > maxThreads) return { plan: null, reason: `${SUB_M * SUB_N} subgroups of ${SG} exceed ${maxThreads} invocations per workgroup` };
  const usable = configs.filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32');
  if (usable.length === 0) {
    return { plan: null, reason: `no f16 → f32 configuration (the adapter has ${configs.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(', ')})` };
  }
  // Largest blocks first (fewer loads per multiply); the adapter's order breaks ties.
  const ranked = [...usable].sort((x, y) => y.M * y.N * y.K - x.M * x.N * x.K);
  // The emulation (tests) takes small tiles: lavapipe compiles each variant in seconds, not tens of seconds.
  for (const tile of emulate ? [32] : [128, 64]) {
    for (const c of ranked) {
      const BK = Math.max(32, c.K);
      const p: SgmPlan = { M: c.M, N: c.N, K: c.K, SG, BM: tile, BN: tile, BK, emulate };
      if ((tile / SUB_M) % c.M !== 0 || (tile / SUB_N) % c.N !== 0 || BK % c.K !== 0) continue;
      if (emulate && (c.M * c.N) % SG !== 0) continue; // the emulation spreads a result evenly over the lanes
      if (sgmStorageBytes(p) > storage) continue;
      // At most 16 result matrices per subgroup (they live in registers).
      if ((tile / SUB_M / c.M) * (tile / SUB_N / c.N) > 16) continue;
      return { plan: p, reason: `${c.M}×${c.N}×${c.K} f16 → f32 blocks, ${tile}×${tile} tiles, subgroups of ${SG}${emulate ? ' (emulated)' : ''}` };
    }
  }
  return { plan: null, reason: `no f16 → f32 configuration tiles the kernel's 128×128 or 64×64 tiles in ${storage} B of workgroup memory` };
}

/** The launches of one matmul with f16 operands on subgroup matrices; out may be f32, f16 or bf16. */
export function matmulSgm(g: MatmulArgs, p: SgmPlan, oType: DType): Launch[] {
  const so = fstore(oType, 'matmulSgm');
  const pairs = so !== 'f32';
  if (pairs && g.n % 2 !== 0) throw new InternalError(`webgpu.matmulSgm: a 16-bit output needs an even n, got ${g.n}`);
  const { M, N, K, SG, BM, BN, BK } = p;
  const [SA, SB, SC] = [BK + PAD16, BN + PAD16, BN + PAD32];
  const [WM, WN] = [BM / SUB_M, BN / SUB_N];
  const [TI, TJ] = [WM / M, WN / N];
  const NT = SUB_M * SUB_N * SG;
  const key = `matmul-sgm:${g.transA}:${g.transB}:${oType}:${M}x${N}x${K}/${SG}:${BM}x${BN}x${BK}${p.emulate ? ':emu' : ''}`;
  const s = spec(key, () => {
    const o = sgmOps(p, ['As', 'Bs', 'Cs']);
    const acc = (i: number, j: number): string => `c${i}_${j}`;
    const lines: string[] = [];
    for (let i = 0; i < TI; i++) for (let j = 0; j < TJ; j++) lines.push(`  var ${acc(i, j)} = ${o.zero};`);
    const decls = lines.join('\n');
    const step: string[] = [];
    for (let i = 0; i < TI; i++) step.push(`      let l${i} = ${o.left('As', `(wm0 + ${i * M}u) * ${SA}u + kk`, SA)};`);
    for (let j = 0; j < TJ; j++) {
      step.push(`      let r${j} = ${o.right('Bs', `kk * ${SB}u + wn0 + ${j * N}u`, SB)};`);
      for (let i = 0; i < TI; i++) step.push(`      ${acc(i, j)} = ${o.mma(`l${i}`, `r${j}`, acc(i, j))};`);
    }
    const stores: string[] = [];
    for (let i = 0; i < TI; i++) for (let j = 0; j < TJ; j++) stores.push(`  ${o.store('Cs', `(wm0 + ${i * M}u) * ${SC}u + wn0 + ${j * N}u`, acc(i, j), SC)}`);
    // Epilogue: each thread writes elements (or adjacent pairs) of the result tile.
    const per = pairs ? BN / 2 : BN;
    return {
      f16: true,
      header: o.header,
      buffers: matmulBuffers('f16', 'f16'),
      fields: MATMUL_FIELDS,
      body: `const BM = ${BM}u;
const BN = ${BN}u;
const BK = ${BK}u;
const NT = ${NT}u;
var<workgroup> As: array<f16, ${BM * SA}>;
var<workgroup> Bs: array<f16, ${BK * SB}>;
var<workgroup> Cs: array<f32, ${BM * SC}>;
var<private> lane: u32;
${accessors({ o: so }, ['o'])}
${o.helpers()}
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) sl: u32) {
  lane = sl;
  let bt = wid.z + a.b0;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let oa = bt * a.sa;
  let ob = bt * a.sb;
  let oc = bt * a.m * a.n;
  let wm0 = (sg / ${SUB_N}u) * ${WM}u;
  let wn0 = (sg % ${SUB_N}u) * ${WN}u;
${decls}
  for (var k0 = 0u; k0 < a.k; k0 = k0 + BK) {
${loadTiles(g, 'f16', 'A[gi]', 'B[gi]', `r * ${SA}u + kk`, `kk * ${SB}u + c`)}
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk = kk + ${K}u) {
${step.join('\n')}
    }
    workgroupBarrier();
  }
${stores.join('\n')}
  workgroupBarrier();
  for (var e = li; e < BM * ${per}u; e = e + NT) {
    let r = e / ${per}u;
    let c = ${pairs ? '2u * (e % ' + per + 'u)' : `e % ${per}u`};
    if (m0 + r >= a.m || n0 + c >= a.n) { continue; }
    let idx = oc + (m0 + r) * a.n + n0 + c;
    ${storeOut(pairs, `Cs[r * ${SC}u + c]`, `Cs[r * ${SC}u + c + 1u]`)}
  }
}`,
    };
  });
  return tileLaunches(g, s, BM, BN);
}
