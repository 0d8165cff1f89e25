/**
 * Fused attention, forward and backward, on subgroup matrices (tensor cores), for f16 q,
 * k, v (and dO): the FlashAttention-2 loops of attention.ts with their products done by
 * the adapter's matrix units (f16 operands, f32 accumulation) and the softmax in f32 by
 * the threads. Every mask of attention.ts (dense causal, S² segmented / roll / short, GQA,
 * a KV cache's query offset): the same `keyRanges`, the same hull of the tile's rows, the
 * same exact per-pair check.
 *
 * A workgroup owns T query rows of one (b, h) and walks T keys at a time. It stages Q, K
 * and V as f16 rows in workgroup memory; its 4 subgroups each take blocks of S = Q·Kᵀ (K
 * loaded column-major, so no transpose is stored) and write them, f32, to workgroup
 * memory; each thread then takes rows: scale, mask, online max and sum, P = exp(S − max)
 * rounded to f16 (as FlashAttention multiplies P in 16 bits; the sum l uses the f32
 * values), and the rescaling of the row's running O. The subgroups then add P·V onto O,
 * which stays in workgroup memory (f32) between key tiles because each row's rescaling
 * touches it. Finally each thread writes its rows' O / l and lse = max + log l.
 *
 * The extra rounding against the f32 kernels is P's: each weight carries a relative error
 * of at most 2^-11, so |ΔO| ≤ 2^-11 · max|v| before O is rounded to its own dtype.
 *
 * Backward (δ = rowsum(dO ∘ O) from attention.ts's kernel): dQ walks key tiles like the
 * forward pass, with S = Q·Kᵀ and dP = dO·Vᵀ on the matrix units, dS = P ∘ (dP − δ) by the
 * threads, and dQ += dS·K held in registers; dK/dV owns a tile of keys and walks the query
 * tiles (every query head of its kv head) that see them, with Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ,
 * then dV += Pᵀ·dO and dK += dSᵀ·Q in registers. P and dS are multiplied in f16, so each
 * gradient is within 2^-11 of its sum of absolute terms.
 */
import type { AttentionArgs } from '../../backend.js';
import type { KernelSpec, Launch } from '../wgsl.js';
import { InternalError } from '../../../errors.js';
import { NEG_BIG } from '../wgsl.js';
import { spec } from './elementwise.js';
import { argValues, type AttnStores, FIELDS, header, HULL, IN, MASK_FNS, OUT, queryRowState, written } from './attention.js';
import type { SgmPlan } from './matmul-sgm.js';
import { sgmOps, type SgmOps } from './sgm-ops.js';

/** Subgroups per workgroup. */
const SUBGROUPS = 4;
/** Row padding (elements) of the f16 and f32 workgroup arrays: 16-byte aligned rows. */
const PAD16 = 8;
const PAD32 = 4;

/** The tile (T query rows, T keys) of the forward kernel, on the matmul's subgroup-matrix configuration. */
export interface AttnSgmPlan { T: number; sgm: SgmPlan }

/** Workgroup memory of the forward kernel: Q, K, V, P (f16), S, O (f32) and per-row state. */
export function attnSgmBytes(T: number, D: number, NT = 4 * 32): number {
  return 2 * (3 * T * (D + PAD16) + T * (T + PAD16)) + 4 * (T * (T + PAD32) + T * (D + PAD32) + NT) + T * (16 + 8) + 32;
}

/** Why head dim D does not suit the configuration's blocks (the contractions step by K, the products' columns by N), or ''. */
function headDimMisfit({ M, N, K }: SgmPlan, D: number): string {
  return D % K !== 0 || D % N !== 0 || D % 2 !== 0 ? `head dim ${D} is not a multiple of the ${M}×${N}×${K} blocks` : '';
}

/**
 * The largest tile whose blocks the configuration tiles and whose arrays fit `storage`, or
 * why there is none. The emulation (tests) takes 16-row tiles: lavapipe compiles them fast.
 */
export function attnSgmPlan(sgm: SgmPlan, D: number, storage: number): { plan: AttnSgmPlan | null; reason: string } {
  const { M, N, K } = sgm;
  const misfit = headDimMisfit(sgm, D);
  if (misfit) return { plan: null, reason: misfit };
  for (const T of sgm.emulate ? [16] : [64, 32, 16]) {
    if (T % M !== 0 || T % N !== 0 || T % K !== 0) continue;
    if (attnSgmBytes(T, D, SUBGROUPS * sgm.SG) > storage) continue;
    return { plan: { T, sgm }, reason: `${T}-row tiles` };
  }
  return { plan: null, reason: `no tile of 64, 32 or 16 rows fits head dim ${D} in ${storage} B of workgroup memory` };
}

/** Whether the forward kernel takes this call: f16 q, k and v, more than one query row. */
export function attentionSgmApplies(g: AttentionArgs, st: AttnStores): boolean {
  return st.qb === 'f16' && st.kb === 'f16' && st.vb === 'f16' && g.Nq > 1;
}

/** WGSL: the subgroups share out the rows × cols blocks of a product; `body` sees the block's row bi and column `col`. */
function blocks(rows: number, cols: number, col: string, body: string): string {
  return `    for (var blk = sg; blk < ${rows * cols}u; blk = blk + ${SUBGROUPS}u) {
      let bi = blk / ${cols}u;
      let ${col} = blk % ${cols}u;
${body}
    }`;
}

/**
 * WGSL: `count` rows of a [.., D] f16 operand (raw words; row r's index is `row(r)`) into
 * the workgroup array `arr` (rows `stride` apart), zeros where `ok(r)` is false.
 */
function stageRows(arr: string, src: string, count: number | string, stride: number, row: (r: string) => string, ok: (r: string) => string): string {
  return `  for (var e = li; e < ${count}u * DW; e = e + NT) {
    let rr = e / DW;
    let dw = e % DW;
    var v = vec2<f16>();
    if (${ok('rr')}) { v = h2(${src}[${row('rr')} * DW + dw]); }
    ${arr}[rr * ${stride}u + 2u * dw] = v.x;
    ${arr}[rr * ${stride}u + 2u * dw + 1u] = v.y;
  }`;
}

/**
 * WGSL from the constants to the first line of main, as every kernel here starts: the mask
 * functions, the hull, the workgroup arrays ([name, element type, length]), the
 * subgroup-matrix helpers (so call it after every other use of `x`), `h2`, which splits a
 * word into its two f16 elements (element 2i low, 2i + 1 high), and `widen`, the span of a
 * thread's ranges that `hull` takes.
 */
function kernelStart(D: number, NT: number, consts: Record<string, number>, arrays: Array<[string, string, number]>, x: SgmOps): string {
  return `${header(D, 1, { NT, DW: D / 2, ...consts })}
${MASK_FNS}
${HULL}
${arrays.map(([n, t, len]) => `var<workgroup> ${n}: array<${t}, ${len}>;`).join('\n')}
var<private> lane: u32;
${x.helpers()}
fn h2(w: u32) -> vec2<f16> { return vec2<f16>(unpack2x16float(w)); }
/** The span [x, y) widened by the non-empty ranges of r (start it at vec2u(0xffffffffu, 0u); for hull). */
fn widen(s: vec2u, r: vec4u) -> vec2u {
  var o = s;
  if (r.y > r.x) { o = vec2u(min(o.x, r.x), max(o.y, r.y)); }
  if (r.w > r.z) { o = vec2u(min(o.x, r.z), max(o.y, r.w)); }
  return o;
}
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) sl: u32) {
  lane = sl;`;
}

/**
 * WGSL for the subgroup's block (bi, bj) of one or two products over the head dim, each
 * [left array, right array read column-major (the transpose), f32 output array], with
 * the arrays' row strides: rows of left and right `SQ` apart, of the output `SS`.
 */
function headDimProducts(x: SgmOps, p: SgmPlan, SQ: number, SS: number, products: Array<[string, string, string]>): string {
  const { M, N, K } = p;
  const accs = products.map((_, n) => `c${n}`);
  return `${accs.map((c) => `      var ${c} = ${x.zero};`).join('\n')}
      for (var d0 = 0u; d0 < D; d0 = d0 + ${K}u) {
${products.map(([l, r], n) => `        ${accs[n]} = ${x.mma(x.left(l, `bi * ${M * SQ}u + d0`, SQ), x.right(r, `bj * ${N * SQ}u + d0`, SQ, true), accs[n]!)};`).join('\n')}
      }
${products.map(([, , o], n) => `      ${x.store(o, `bi * ${M * SS}u + bj * ${N}u`, accs[n]!, SS)}`).join('\n')}`;
}

function forwardSgmSpec(D: number, p: AttnSgmPlan, st: AttnStores): KernelSpec {
  const { T, sgm } = p;
  const { M, N, K, SG } = sgm;
  const NT = SUBGROUPS * SG;
  const o = written(1, D, st, 'ob');
  const [SQ, SS, SP, SO] = [D + PAD16, T + PAD32, T + PAD16, D + PAD32];
  // Threads per row in the softmax, and rows per pass of all the threads.
  const PARTS = Math.max(1, NT / T);
  const R = NT / PARTS;
  if (!Number.isInteger(PARTS) || T % R !== 0) throw new InternalError(`attentionSgm: ${NT} threads do not share ${T} rows evenly`);
  const key = `attnSgm:${D}:${T}:${M}x${N}x${K}/${SG}:${o.key}${sgm.emulate ? ':emu' : ''}`;
  return spec(key, () => {
    const x = sgmOps(sgm, ['Qs', 'Ks', 'Vs', 'Ss', 'Ps', 'Os']);
    const scores = headDimProducts(x, sgm, SQ, SS, [['Qs', 'Ks', 'Ss']]);
    const pv = `      var c = ${x.result('Os', `bi * ${M * SO}u + bd * ${N}u`, SO)};
      for (var k0 = 0u; k0 < T; k0 = k0 + ${K}u) {
        c = ${x.mma(x.left('Ps', `bi * ${M * SP}u + k0`, SP), x.right('Vs', `k0 * ${SQ}u + bd * ${N}u`, SQ), 'c')};
      }
      ${x.store('Os', `bi * ${M * SO}u + bd * ${N}u`, 'c', SO)}`;
    return {
      f16: true,
      header: x.header,
      buffers: [IN('qb', 'u32'), IN('kb', 'u32'), IN('vb', 'u32'), o.bind, OUT('lse')],
      fields: FIELDS,
      body: `${o.conv}
${kernelStart(D, NT, { T }, [['Qs', 'f16', T * SQ], ['Ks', 'f16', T * SQ], ['Vs', 'f16', T * SQ], ['Ps', 'f16', T * SP],
    ['Ss', 'f32', T * SS], ['Os', 'f32', T * SO], ['Rr', 'vec4u', T], ['Mr', 'f32', T], ['Lr', 'f32', T], ['Red', 'f32', NT]], x)}
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (a.H / a.Hkv);
  let i0 = wid.x * T;
  var span = vec2u(0xffffffffu, 0u);
  for (var rr = li; rr < T; rr = rr + NT) {
    var r = vec4u(0u);
    if (i0 + rr < a.Nq) { r = keyRanges(h, a.qOff + i0 + rr); }
    Rr[rr] = r;
    Mr[rr] = ${NEG_BIG};
    Lr[rr] = 0.0;
    span = widen(span, r);
    for (var d = 0u; d < D; d = d + 1u) { Os[rr * ${SO}u + d] = 0.0; }
  }
${stageRows('Qs', 'qb', T, SQ, (r) => `((b * a.Nq + i0 + ${r}) * a.H + h)`, (r) => `i0 + ${r} < a.Nq`)}
  let hv = hull(vec4u(span, 0u, 0u), li);
  for (var t0 = hv.x; t0 < hv.y; t0 = t0 + T) {
${stageRows('Ks', 'kb', T, SQ, (r) => `((b * a.S + t0 + ${r}) * a.Hkv + kvh)`, (r) => `t0 + ${r} < hv.y`)}
${stageRows('Vs', 'vb', T, SQ, (r) => `((b * a.S + t0 + ${r}) * a.Hkv + kvh)`, (r) => `t0 + ${r} < hv.y`)}
    workgroupBarrier();
    // S = Q · Kᵀ, block by block over the subgroups.
${blocks(T / M, T / N, 'bj', scores)}
    workgroupBarrier();
    // Online softmax, PARTS threads per row (columns part, part + PARTS, ...), partial maxima
    // and sums met in workgroup memory: P (f16) and the rescaled O rows.
    for (var r0 = 0u; r0 < T; r0 = r0 + ${R}u) {
      let rr = r0 + li / ${PARTS}u;
      let part = li % ${PARTS}u;
      let r = Rr[rr];
      let valid = i0 + rr < a.Nq;
      var mp = ${NEG_BIG};
      for (var jj = part; jj < T; jj = jj + ${PARTS}u) {
        let j = t0 + jj;
        var s = ${NEG_BIG};
        if (valid && j < hv.y && inRanges(j, r)) {
          s = Ss[rr * ${SS}u + jj] * a.scale;
          mp = max(mp, s);
        }
        Ss[rr * ${SS}u + jj] = s;
      }
      Red[li] = mp;
      workgroupBarrier();
      let m = Mr[rr];
      var mt = m;
      for (var q = 0u; q < ${PARTS}u; q = q + 1u) { mt = max(mt, Red[li - part + q]); }
      var corr = 1.0;
      if (mt > m) { corr = exp(m - mt); }
      var lp = 0.0;
      for (var jj = part; jj < T; jj = jj + ${PARTS}u) {
        let s = Ss[rr * ${SS}u + jj];
        var pj = 0.0;
        if (s > -1.0e38) { pj = exp(s - mt); }
        lp = lp + pj;
        Ps[rr * ${SP}u + jj] = f16(pj);
      }
      if (corr != 1.0) { for (var d = part; d < D; d = d + ${PARTS}u) { Os[rr * ${SO}u + d] = Os[rr * ${SO}u + d] * corr; } }
      workgroupBarrier();
      Red[li] = lp;
      workgroupBarrier();
      if (part == 0u) {
        var l = Lr[rr] * corr;
        for (var q = 0u; q < ${PARTS}u; q = q + 1u) { l = l + Red[li + q]; }
        Lr[rr] = l;
        Mr[rr] = mt;
      }
      workgroupBarrier();
    }
    // O += P · V.
${blocks(T / M, D / N, 'bd', pv)}
    workgroupBarrier();
  }
  for (var rr = li; rr < T; rr = rr + NT) {
    let i = i0 + rr;
    if (i >= a.Nq) { continue; }
    let l = Lr[rr];
    let inv = 1.0 / l;
    let qo = ((b * a.Nq + i) * a.H + h) * D;
    ${o.row('qo', (d) => `Os[rr * ${SO}u + ${d}] * inv`)}
    lse[(b * a.H + h) * a.Nq + i] = Mr[rr] + log(l);
  }
}`,
    };
  });
}

/** The forward pass on subgroup matrices (`attentionSgmApplies` must hold). */
export function attentionSgm(g: AttentionArgs, p: AttnSgmPlan, st: AttnStores): Launch {
  if (!attentionSgmApplies(g, st)) throw new InternalError('webgpu attentionSgm: needs f16 q, k, v and more than one query row');
  return { spec: forwardSgmSpec(g.D, p, st), args: argValues(g), grid: [Math.ceil(g.Nq / p.T), g.H, g.B] };
}

// ---- backward ---------------------------------------------------------------------------

/**
 * The backward kernels' tiles: TQ query rows and TK keys per step. dQ: a workgroup owns TQ
 * query rows and walks TK keys at a time; dK/dV: a workgroup owns TK keys and walks TQ
 * query rows at a time, for every query head of its kv head.
 */
export interface AttnSgmBwdPlan { TQ: number; TK: number; sgm: SgmPlan }

/** Workgroup memory of the dQ kernel and of the dK/dV kernel (the larger counts). */
export function attnSgmBwdBytes(TQ: number, TK: number, D: number): number {
  const SQ = D + PAD16;
  const rows = 24 * Math.max(TQ, TK) + 32;
  const dq = 2 * (2 * TQ * SQ + 2 * TK * SQ + TQ * (TK + PAD16)) + 4 * (TQ * Math.max(TK, D) + 2 * TQ * PAD32 + TQ * TK) + rows;
  const dkv = 2 * (2 * TK * SQ + 2 * TQ * SQ + 2 * TK * (TQ + PAD16)) + 4 * (TK * Math.max(TQ, D) + 2 * TK * PAD32 + TK * TQ) + rows;
  return Math.max(dq, dkv);
}

/** The largest backward tiles that the configuration's blocks tile and that fit `storage`, or why there are none. */
export function attnSgmBwdPlan(sgm: SgmPlan, D: number, storage: number): { plan: AttnSgmBwdPlan | null; reason: string } {
  const { M, N, K } = sgm;
  const misfit = headDimMisfit(sgm, D);
  if (misfit) return { plan: null, reason: misfit };
  const pairs: Array<[number, number]> = sgm.emulate ? [[8, 16]] : [[64, 64], [32, 64], [32, 32], [16, 64], [16, 32], [16, 16]];
  for (const [TQ, TK] of pairs) {
    if ([TQ, TK].some((x) => x % M !== 0 || x % N !== 0 || x % K !== 0)) continue;
    if (attnSgmBwdBytes(TQ, TK, D) > storage) continue;
    return { plan: { TQ, TK, sgm }, reason: `${TQ} query rows × ${TK} keys` };
  }
  return { plan: null, reason: `no backward tile fits head dim ${D} in ${storage} B of workgroup memory` };
}

/** Whether the backward kernels take this call: f16 q, k, v and dO, more than one query row. */
export function attentionBackwardSgmApplies(g: AttentionArgs, st: AttnStores): boolean {
  return attentionSgmApplies(g, st) && st.dob === 'f16';
}

/**
 * WGSL for a rows × cols block product held in registers: each subgroup keeps the result
 * matrices of its blocks blk = sg + 4n as acc0, acc1, ... (`decl` declares them zero);
 * `add` runs `step(acc)` for each, which sees the block's row bi and column bd; `store`
 * writes them all to the f32 array `arr` (rows `stride` apart). Blocks past the end are
 * skipped.
 */
function registerBlocks(x: SgmOps, p: SgmPlan, name: string, rows: number, cols: number, step: (acc: string) => string): { decl: string; add: string; store: (arr: string, stride: number) => string } {
  const accs = Array.from({ length: Math.ceil((rows * cols) / SUBGROUPS) }, (_, n) => `${name}${n}`);
  const each = (indent: string, body: (acc: string) => string): string => accs.map((a, n) => `${indent}{
${indent}  let blk = sg + ${n * SUBGROUPS}u;
${indent}  if (blk < ${rows * cols}u) {
${indent}    let bi = blk / ${cols}u;
${indent}    let bd = blk % ${cols}u;
${body(a)}
${indent}  }
${indent}}`).join('\n');
  return {
    decl: accs.map((a) => `  var ${a} = ${x.zero};`).join('\n'),
    add: each('    ', step),
    store: (arr, stride) => each('  ', (a) => `      ${x.store(arr, `bi * ${p.M * stride}u + bd * ${p.N}u`, a, stride)}`),
  };
}

/**
 * dQ = scale · Σ_keys dS · K with dS = P ∘ (dP − δ), P = exp(S·scale − lse), S = Q·Kᵀ,
 * dP = dO·Vᵀ: S and dP on the matrix units into workgroup memory, P and dS by the threads
 * (dS rounded to f16), dS·K on the matrix units into registers.
 */
function dqSgmSpec(D: number, p: AttnSgmBwdPlan, st: AttnStores): KernelSpec {
  const { TQ, TK, sgm } = p;
  const { M, N, K, SG } = sgm;
  const NT = SUBGROUPS * SG;
  const o = written(1, D, st, 'dqb');
  const [SQ, SS, SP, SO] = [D + PAD16, TK + PAD32, TK + PAD16, D + PAD32];
  return spec(`attnSgmDq:${D}:${TQ}x${TK}:${M}x${N}x${K}/${SG}:${o.key}${sgm.emulate ? ':emu' : ''}`, () => {
    const x = sgmOps(sgm, ['Qs', 'dOs', 'Ks', 'Vs', 'Ss', 'dPs', 'dSs']);
    const products = headDimProducts(x, sgm, SQ, SS, [['Qs', 'Ks', 'Ss'], ['dOs', 'Vs', 'dPs']]);
    const dq = registerBlocks(x, sgm, 'dq', TQ / M, D / N, (acc) => `        for (var k0 = 0u; k0 < ${TK}u; k0 = k0 + ${K}u) {
          ${acc} = ${x.mma(x.left('dSs', `bi * ${M * SP}u + k0`, SP), x.right('Ks', `k0 * ${SQ}u + bd * ${N}u`, SQ), acc)};
        }`);
    const stores = dq.store('Ss', SO);
    const body = `${o.conv}
${kernelStart(D, NT, {}, [['Qs', 'f16', TQ * SQ], ['dOs', 'f16', TQ * SQ], ['Ks', 'f16', TK * SQ], ['Vs', 'f16', TK * SQ], ['dSs', 'f16', TQ * SP],
    ['Ss', 'f32', TQ * Math.max(SS, SO)], ['dPs', 'f32', TQ * SS], ['Rr', 'vec4u', TQ], ['Lr', 'f32', TQ], ['Dr', 'f32', TQ]], x)}
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (a.H / a.Hkv);
  let i0 = wid.x * ${TQ}u;
  var span = vec2u(0xffffffffu, 0u);
  for (var rr = li; rr < ${TQ}u; rr = rr + NT) {
    var r = vec4u(0u);
    if (i0 + rr < a.Nq) {
      r = keyRanges(h, a.qOff + i0 + rr);
      Lr[rr] = lse[(b * a.H + h) * a.Nq + i0 + rr];
      Dr[rr] = delta[(b * a.H + h) * a.Nq + i0 + rr];
    }
    Rr[rr] = r;
    span = widen(span, r);
  }
${stageRows('Qs', 'qb', TQ, SQ, (r) => `((b * a.Nq + i0 + ${r}) * a.H + h)`, (r) => `i0 + ${r} < a.Nq`)}
${stageRows('dOs', 'dob', TQ, SQ, (r) => `((b * a.Nq + i0 + ${r}) * a.H + h)`, (r) => `i0 + ${r} < a.Nq`)}
  let hv = hull(vec4u(span, 0u, 0u), li);
${dq.decl}
  for (var t0 = hv.x; t0 < hv.y; t0 = t0 + ${TK}u) {
${stageRows('Ks', 'kb', TK, SQ, (r) => `((b * a.S + t0 + ${r}) * a.Hkv + kvh)`, (r) => `t0 + ${r} < hv.y`)}
${stageRows('Vs', 'vb', TK, SQ, (r) => `((b * a.S + t0 + ${r}) * a.Hkv + kvh)`, (r) => `t0 + ${r} < hv.y`)}
    workgroupBarrier();
${blocks(TQ / M, TK / N, 'bj', products)}
    workgroupBarrier();
    // dS, an element per thread at a time
    for (var e = li; e < ${TQ * TK}u; e = e + NT) {
      let rr = e / ${TK}u;
      let jj = e % ${TK}u;
      let j = t0 + jj;
      var ds = 0.0;
      if (i0 + rr < a.Nq && j < hv.y && inRanges(j, Rr[rr])) {
        let pj = exp(Ss[rr * ${SS}u + jj] * a.scale - Lr[rr]);
        ds = pj * (dPs[rr * ${SS}u + jj] - Dr[rr]);
      }
      dSs[rr * ${SP}u + jj] = f16(ds);
    }
    workgroupBarrier();
${dq.add}
    workgroupBarrier();
  }
${stores}
  workgroupBarrier();
  for (var rr = li; rr < ${TQ}u; rr = rr + NT) {
    let i = i0 + rr;
    if (i >= a.Nq) { continue; }
    let qo = ((b * a.Nq + i) * a.H + h) * D;
    ${o.row('qo', (d) => `Ss[rr * ${SO}u + ${d}] * a.scale`)}
  }
}`;
    return {
      f16: true,
      header: x.header,
      buffers: [IN('qb', 'u32'), IN('kb', 'u32'), IN('vb', 'u32'), IN('lse'), IN('delta'), IN('dob', 'u32'), o.bind],
      fields: FIELDS,
      body,
    };
  });
}

/**
 * dK = scale · Σ dSᵀ·Q and dV = Σ Pᵀ·dO over every query that sees the workgroup's keys,
 * for each query head of the kv head: Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ on the matrix units (Q and
 * dO loaded column-major), Pᵀ and dSᵀ by the threads (rounded to f16), and the two
 * products into registers.
 */
function dkvSgmSpec(D: number, p: AttnSgmBwdPlan, st: AttnStores): KernelSpec {
  const { TQ, TK, sgm } = p;
  const { M, N, K, SG } = sgm;
  const NT = SUBGROUPS * SG;
  const ok = written(1, D, st, 'dkb');
  const ov = written(1, D, st, 'dvb');
  const [SQ, SS, SP, SO] = [D + PAD16, TQ + PAD32, TQ + PAD16, D + PAD32];
  return spec(`attnSgmDkv:${D}:${TQ}x${TK}:${M}x${N}x${K}/${SG}:${ok.key},${ov.key}${sgm.emulate ? ':emu' : ''}`, () => {
    const x = sgmOps(sgm, ['Qs', 'dOs', 'Ks', 'Vs', 'St', 'dPt', 'Pt', 'dSt']);
    const products = headDimProducts(x, sgm, SQ, SS, [['Ks', 'Qs', 'St'], ['Vs', 'dOs', 'dPt']]);
    const step = (left: string, right: string) => (acc: string): string => `        for (var k0 = 0u; k0 < ${TQ}u; k0 = k0 + ${K}u) {
          ${acc} = ${x.mma(x.left(left, `bi * ${M * SP}u + k0`, SP), x.right(right, `k0 * ${SQ}u + bd * ${N}u`, SQ), acc)};
        }`;
    const dk = registerBlocks(x, sgm, 'dk', TK / M, D / N, step('dSt', 'Qs'));
    const dv = registerBlocks(x, sgm, 'dv', TK / M, D / N, step('Pt', 'dOs'));
    const qRows = (r: string): string => `((b * a.Nq + t0 + ${r}) * a.H + h)`;
    // dK (× scale), then dV: each staged through St and written a key row per thread.
    const outputs = ([[dk, ok, ' * a.scale'], [dv, ov, '']] as const).map(([acc, out, factor]) => `${acc.store('St', SO)}
  workgroupBarrier();
  for (var jr = li; jr < ${TK}u; jr = jr + NT) {
    let j = j0 + jr;
    if (j >= a.S) { continue; }
    let ko = ((b * a.S + j) * a.Hkv + kvh) * D;
    ${out.row('ko', (d) => `St[jr * ${SO}u + ${d}]${factor}`)}
  }`).join('\n  workgroupBarrier();\n');
    const body = `${ok.conv || ov.conv}
${kernelStart(D, NT, {}, [['Ks', 'f16', TK * SQ], ['Vs', 'f16', TK * SQ], ['Qs', 'f16', TQ * SQ], ['dOs', 'f16', TQ * SQ], ['Pt', 'f16', TK * SP], ['dSt', 'f16', TK * SP],
    ['St', 'f32', TK * Math.max(SS, SO)], ['dPt', 'f32', TK * SS], ['Rq', 'vec4u', TQ], ['Lq', 'f32', TQ], ['Dq', 'f32', TQ]], x)}
  let kvh = wid.y;
  let b = wid.z;
  let j0 = wid.x * ${TK}u;
${stageRows('Ks', 'kb', TK, SQ, (r) => `((b * a.S + j0 + ${r}) * a.Hkv + kvh)`, (r) => `j0 + ${r} < a.Nk`)}
${stageRows('Vs', 'vb', TK, SQ, (r) => `((b * a.S + j0 + ${r}) * a.Hkv + kvh)`, (r) => `j0 + ${r} < a.Nk`)}
${dk.decl}
${dv.decl}
  let rep = a.H / a.Hkv;
  let qend = a.qOff + a.Nq;
  for (var hh = 0u; hh < rep; hh = hh + 1u) {
    let h = kvh * rep + hh;
    var span = vec2u(0xffffffffu, 0u);
    for (var jr = li; jr < ${TK}u; jr = jr + NT) {
      if (j0 + jr < a.Nk) { span = widen(span, queryRanges(h, j0 + jr)); }
    }
    let hv = hull(vec4u(span, 0u, 0u), li);
    // positions → query rows
    let rlo = max(hv.x, a.qOff) - a.qOff;
    let rhi = max(min(hv.y, qend), a.qOff) - a.qOff;
    for (var t0 = rlo; t0 < rhi; t0 = t0 + ${TQ}u) {
${stageRows('Qs', 'qb', TQ, SQ, qRows, (r) => `t0 + ${r} < rhi`)}
${stageRows('dOs', 'dob', TQ, SQ, qRows, (r) => `t0 + ${r} < rhi`)}
${queryRowState(`${TQ}u`, 'NT', 'Lq', 'Dq', 'Rq')}
      workgroupBarrier();
${blocks(TK / M, TQ / N, 'bj', products)}
      workgroupBarrier();
      // Pᵀ and dSᵀ, an element per thread at a time
      for (var e = li; e < ${TK * TQ}u; e = e + NT) {
        let jr = e / ${TQ}u;
        let ii = e % ${TQ}u;
        let j = j0 + jr;
        var pj = 0.0;
        var ds = 0.0;
        if (j < a.Nk && inRanges(j, Rq[ii])) {
          pj = exp(St[jr * ${SS}u + ii] * a.scale - Lq[ii]);
          ds = pj * (dPt[jr * ${SS}u + ii] - Dq[ii]);
        }
        Pt[jr * ${SP}u + ii] = f16(pj);
        dSt[jr * ${SP}u + ii] = f16(ds);
      }
      workgroupBarrier();
${dk.add}
${dv.add}
      workgroupBarrier();
    }
  }
${outputs}
}`;
    return {
      f16: true,
      header: x.header,
      buffers: [IN('qb', 'u32'), IN('kb', 'u32'), IN('vb', 'u32'), IN('lse'), IN('delta'), IN('dob', 'u32'), ok.bind, ov.bind],
      fields: FIELDS,
      body,
    };
  });
}

/** The dQ and the dK/dV launches on subgroup matrices (`attentionBackwardSgmApplies` must hold; δ comes from `attentionDelta`). */
export function attentionBackwardSgm(g: AttentionArgs, p: AttnSgmBwdPlan, st: AttnStores): { dq: Launch; dkv: Launch } {
  if (!attentionBackwardSgmApplies(g, st)) throw new InternalError('webgpu attentionBackwardSgm: needs f16 q, k, v, dO and more than one query row');
  return {
    dq: { spec: dqSgmSpec(g.D, p, st), args: argValues(g), grid: [Math.ceil(g.Nq / p.TQ), g.H, g.B] },
    dkv: { spec: dkvSgmSpec(g.D, p, st), args: argValues(g), grid: [Math.ceil(g.kvStride / p.TK), g.Hkv, g.B] },
  };
}
