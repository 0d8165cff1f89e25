/**
 * Reference attention, forward and backward: one query row at a time, visiting only the
 * keys the mask allows (attention/mask.ts), so memory is O(Nk) per row, never N×N.
 * Layout: q [B, Nq, H, D], k and v [B, kvStride, Hkv, D] (keys are the first Nk rows),
 * out [B, Nq, H, D], lse [B, H, Nq].
 * Query head h reads kv head ⌊h / (H/Hkv)⌋ (grouped-query attention).
 */
import type { AttentionArgs } from '../backend.js';
import { keyRanges } from '../../attention/mask.js';
import type { F } from './elementwise.js';

function dot(a: F, ao: number, b: F, bo: number, D: number): number {
  let s = 0;
  for (let d = 0; d < D; d++) s += a[ao + d]! * b[bo + d]!;
  return s;
}

/** Visits every (b, h, i) with its kv head and allowed key ranges. */
function forEachRow(g: AttentionArgs, fn: (b: number, h: number, kvh: number, i: number, ranges: ReturnType<typeof keyRanges>) => void): void {
  const rep = g.H / g.Hkv;
  for (let b = 0; b < g.B; b++) {
    for (let h = 0; h < g.H; h++) {
      const kvh = Math.floor(h / rep);
      for (let i = 0; i < g.Nq; i++) fn(b, h, kvh, i, keyRanges(g.mask, g.H, h, g.qOffset + i, g.Nk));
    }
  }
}

export function attention(q: F, k: F, v: F, out: F, lse: F, g: AttentionArgs): void {
  const { Nq, Nk, H, Hkv, D, scale, kvStride: S } = g;
  const s = new Float64Array(Nk);
  const acc = new Float64Array(D);
  forEachRow(g, (b, h, kvh, i, ranges) => {
    const qo = ((b * Nq + i) * H + h) * D;
    let max = -Infinity;
    for (const [lo, hi] of ranges) {
      for (let j = lo; j < hi; j++) {
        s[j] = scale * dot(q, qo, k, ((b * S + j) * Hkv + kvh) * D, D);
        if (s[j]! > max) max = s[j]!;
      }
    }
    let sum = 0;
    acc.fill(0);
    for (const [lo, hi] of ranges) {
      for (let j = lo; j < hi; j++) {
        const p = Math.exp(s[j]! - max);
        sum += p;
        const vo = ((b * S + j) * Hkv + kvh) * D;
        for (let d = 0; d < D; d++) acc[d]! += p * v[vo + d]!;
      }
    }
    for (let d = 0; d < D; d++) out[qo + d] = acc[d]! / sum;
    lse[(b * H + h) * Nq + i] = max + Math.log(sum);
  });
}

/**
 * With p_j = exp(s_j − lse) and δ = dout·out: dv_j += p_j·dout, ds_j = p_j·(dout·v_j − δ),
 * dq += scale·ds_j·k_j, dk_j += scale·ds_j·q.
 */
export function attentionBackward(q: F, k: F, v: F, out: F, lse: F, dout: F, dq: F, dk: F, dv: F, g: AttentionArgs): void {
  const { Nq, H, Hkv, D, scale, kvStride: S } = g;
  dk.fill(0);
  dv.fill(0);
  const dqRow = new Float64Array(D);
  forEachRow(g, (b, h, kvh, i, ranges) => {
    const qo = ((b * Nq + i) * H + h) * D;
    const l = lse[(b * H + h) * Nq + i]!;
    const delta = dot(dout, qo, out, qo, D);
    dqRow.fill(0);
    for (const [lo, hi] of ranges) {
      for (let j = lo; j < hi; j++) {
        const ko = ((b * S + j) * Hkv + kvh) * D;
        const p = Math.exp(scale * dot(q, qo, k, ko, D) - l);
        const ds = p * (dot(dout, qo, v, ko, D) - delta);
        for (let d = 0; d < D; d++) {
          dv[ko + d] = dv[ko + d]! + p * dout[qo + d]!;
          dqRow[d]! += scale * ds * k[ko + d]!;
          dk[ko + d] = dk[ko + d]! + scale * ds * q[qo + d]!;
        }
      }
    }
    for (let d = 0; d < D; d++) dq[qo + d] = dqRow[d]!;
  });
}
