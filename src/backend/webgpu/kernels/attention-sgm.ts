/**
 * Fused attention forward on subgroup matrices (tensor cores), for f16 q, k and v: the
 * FlashAttention-2 loop of attention.ts with its two products, S = Q·Kᵀ and O += P·V, done
 * by the adapter's matrix units (f16 operands, f32 accumulation) and the softmax in f32 by
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
 */
import type { AttentionArgs } from '../../backend.js';
import type { KernelSpec, Launch } from '../wgsl.js';
import { InternalError } from '../../../errors.js';
import { NEG_BIG } from '../wgsl.js';
import { spec } from './elementwise.js';
import { argValues, type AttnStores, FIELDS, header, HULL, IN, MASK_FNS, OUT, written } from './attention.js';
import type { SgmPlan } from './matmul-sgm.js';
import { sgmOps } from './sgm-ops.js';

/** Subgroups per workgroup. */
const SUBGROUPS = 4;
/** Row padding (elements) of the f16 and f32 workgroup arrays: 16-byte aligned rows. */
const PAD16 = 8;
const PAD32 = 4;

/** The tile (T query rows, T keys) of the forward kernel, on the matmul's subgroup-matrix configuration. */
export interface AttnSgmPlan { T: number; sgm: SgmPlan }

/** Workgroup memory of the forward kernel: Q, K, V, P (f16), S, O (f32) and per-row state. */
export function attnSgmBytes(T: number, D: number): number {
  return 2 * (3 * T * (D + PAD16) + T * (T + PAD16)) + 4 * (T * (T + PAD32) + T * (D + PAD32)) + T * (16 + 8) + 32;
}

/**
 * The largest tile whose blocks the configuration tiles and whose arrays fit `storage`, or
 * why there is none. The emulation (tests) takes 16-row tiles: lavapipe compiles them fast.
 */
export function attnSgmPlan(sgm: SgmPlan, D: number, storage: number): { plan: AttnSgmPlan | null; reason: string } {
  const { M, N, K } = sgm;
  if (D % K !== 0 || D % N !== 0 || D % 2 !== 0) return { plan: null, reason: `head dim ${D} is not a multiple of the ${M}×${N}×${K} blocks` };
  for (const T of sgm.emulate ? [16] : [64, 32, 16]) {
    if (T % M !== 0 || T % N !== 0 || T % K !== 0) continue;
    if (attnSgmBytes(T, D) > storage) continue;
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

function forwardSgmSpec(D: number, p: AttnSgmPlan, st: AttnStores): KernelSpec {
  const { T, sgm } = p;
  const { M, N, K, SG } = sgm;
  const NT = SUBGROUPS * SG;
  const o = written(1, D, st, 'ob');
  const [SQ, SS, SP, SO] = [D + PAD16, T + PAD32, T + PAD16, D + PAD32];
  const key = `attnSgm:${D}:${T}:${M}x${N}x${K}/${SG}:${o.key}${sgm.emulate ? ':emu' : ''}`;
  return spec(key, () => {
    const x = sgmOps(sgm, ['Qs', 'Ks', 'Vs', 'Ss', 'Ps', 'Os']);
    const scores = `      var c = ${x.zero};
      for (var d0 = 0u; d0 < D; d0 = d0 + ${K}u) {
        c = ${x.mma(x.left('Qs', `bi * ${M * SQ}u + d0`, SQ), x.right('Ks', `bj * ${N * SQ}u + d0`, SQ, true), 'c')};
      }
      ${x.store('Ss', `bi * ${M * SS}u + bj * ${N}u`, 'c', SS)}`;
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
${header(D, 1, { T, NT, DW: D / 2 })}
${MASK_FNS}
${HULL}
var<workgroup> Qs: array<f16, ${T * SQ}>;
var<workgroup> Ks: array<f16, ${T * SQ}>;
var<workgroup> Vs: array<f16, ${T * SQ}>;
var<workgroup> Ps: array<f16, ${T * SP}>;
var<workgroup> Ss: array<f32, ${T * SS}>;
var<workgroup> Os: array<f32, ${T * SO}>;
var<workgroup> Rr: array<vec4u, ${T}>;
var<workgroup> Mr: array<f32, ${T}>;
var<workgroup> Lr: array<f32, ${T}>;
var<private> lane: u32;
${x.helpers()}
/** Two f16 elements of a word (element 2i low, 2i + 1 high). */
fn h2(w: u32) -> vec2<f16> { return vec2<f16>(unpack2x16float(w)); }
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) sl: u32) {
  lane = sl;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (a.H / a.Hkv);
  let i0 = wid.x * T;
  var lo = 0xffffffffu;
  var hi = 0u;
  for (var rr = li; rr < T; rr = rr + NT) {
    var r = vec4u(0u);
    if (i0 + rr < a.Nq) { r = keyRanges(h, a.qOff + i0 + rr); }
    Rr[rr] = r;
    Mr[rr] = ${NEG_BIG};
    Lr[rr] = 0.0;
    if (r.y > r.x) { lo = min(lo, r.x); hi = max(hi, r.y); }
    if (r.w > r.z) { lo = min(lo, r.z); hi = max(hi, r.w); }
    for (var d = 0u; d < D; d = d + 1u) { Os[rr * ${SO}u + d] = 0.0; }
  }
  for (var e = li; e < T * DW; e = e + NT) {
    let rr = e / DW;
    let dw = e % DW;
    var v = vec2<f16>();
    if (i0 + rr < a.Nq) { v = h2(qb[((b * a.Nq + i0 + rr) * a.H + h) * DW + dw]); }
    Qs[rr * ${SQ}u + 2u * dw] = v.x;
    Qs[rr * ${SQ}u + 2u * dw + 1u] = v.y;
  }
  let hv = hull(vec4u(lo, hi, 0u, 0u), li);
  for (var t0 = hv.x; t0 < hv.y; t0 = t0 + T) {
    for (var e = li; e < T * DW; e = e + NT) {
      let jj = e / DW;
      let dw = e % DW;
      var kv = vec2<f16>();
      var vv = vec2<f16>();
      if (t0 + jj < hv.y) {
        let ko = ((b * a.S + t0 + jj) * a.Hkv + kvh) * DW + dw;
        kv = h2(kb[ko]);
        vv = h2(vb[ko]);
      }
      Ks[jj * ${SQ}u + 2u * dw] = kv.x;
      Ks[jj * ${SQ}u + 2u * dw + 1u] = kv.y;
      Vs[jj * ${SQ}u + 2u * dw] = vv.x;
      Vs[jj * ${SQ}u + 2u * dw + 1u] = vv.y;
    }
    workgroupBarrier();
    // S = Q · Kᵀ, block by block over the subgroups.
${blocks(T / M, T / N, 'bj', scores)}
    workgroupBarrier();
    // Online softmax, a row per thread: P (f16) and the rescaled O rows.
    for (var rr = li; rr < T; rr = rr + NT) {
      let r = Rr[rr];
      let valid = i0 + rr < a.Nq;
      let m = Mr[rr];
      var mt = m;
      for (var jj = 0u; jj < T; jj = jj + 1u) {
        let j = t0 + jj;
        var s = ${NEG_BIG};
        if (valid && j < hv.y && inRanges(j, r)) {
          s = Ss[rr * ${SS}u + jj] * a.scale;
          mt = max(mt, s);
        }
        Ss[rr * ${SS}u + jj] = s;
      }
      var corr = 1.0;
      if (mt > m) { corr = exp(m - mt); }
      var l = Lr[rr] * corr;
      for (var jj = 0u; jj < T; jj = jj + 1u) {
        let s = Ss[rr * ${SS}u + jj];
        var pj = 0.0;
        if (s > -1.0e38) { pj = exp(s - mt); }
        l = l + pj;
        Ps[rr * ${SP}u + jj] = f16(pj);
      }
      Mr[rr] = mt;
      Lr[rr] = l;
      if (corr != 1.0) { for (var d = 0u; d < D; d = d + 1u) { Os[rr * ${SO}u + d] = Os[rr * ${SO}u + d] * corr; } }
    }
    workgroupBarrier();
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
