/** Batched matrix multiply with transposes, and the linear layer's x·Wᵀ. */
import { LongLoraError } from '../../errors.js';
import { record } from '../autograd.js';
import { Tensor } from '../tensor.js';
import type { DType } from '../dtype.js';
import { reshape } from './shape.js';
import { backendOf, computeDType, fmt } from './util.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * op(a) · op(b) where op transposes the last two axes when asked. `a` is [..., m, k]
 * (or [..., k, m] with transA); `b` is [k, n] (shared by every batch entry) or has the
 * same leading batch axes as `a`.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.rank < 2 || b.rank < 2) throw new LongLoraError(`matmul: operands need rank ≥ 2, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  if (b.rank === 2 && a.rank > 2) {
    if (transA) throw new LongLoraError('matmul: transA with a shared 2-D right operand is not supported');
    const lead = a.shape.slice(0, -1);
    const out2 = matmulBatched(reshape(a, [-1, a.shape[a.rank - 1]!]), b, false, transB);
    return reshape(out2, [...lead, out2.shape[1]!]);
  }
  if (a.rank !== b.rank || a.shape.slice(0, -2).some((s, i) => s !== b.shape[i])) {
    throw new LongLoraError(`matmul: batch axes of ${fmt(a.shape)} and ${fmt(b.shape)} differ`);
  }
  return matmulBatched(a, b, transA, transB);
}

/** The output is stored in `outDtype` (default a's): a gradient takes its input's dtype. */
function matmulBatched(a: Tensor, b: Tensor, transA: boolean, transB: boolean, outDtype: DType = a.dtype): Tensor {
  const be = backendOf('matmul', a, b);
  computeDType('matmul', a, b);
  const r = a.rank;
  const [am, ak] = [a.shape[r - 2]!, a.shape[r - 1]!];
  const [bk, bn] = [b.shape[r - 2]!, b.shape[r - 1]!];
  const m = transA ? ak : am;
  const k = transA ? am : ak;
  const kb = transB ? bn : bk;
  const n = transB ? bk : bn;
  if (k !== kb) {
    throw new LongLoraError(`matmul: inner dims differ: ${fmt(a.shape)}${transA ? 'ᵀ' : ''} · ${fmt(b.shape)}${transB ? 'ᵀ' : ''} (${k} vs ${kb})`);
  }
  const lead = a.shape.slice(0, -2);
  const batch = lead.reduce((p, s) => p * s, 1);
  const out = Tensor.empty([...lead, m, n], outDtype, be);
  be.matmul(a.buffer, b.buffer, out.buffer, {
    batch, m, n, k, transA, transB, alpha: 1, beta: 0, strideA: m * k, strideB: k * n,
  });
  record('matmul', out, [a, b], [a, b], (g, [sa, sb], needs) => {
    // C = opA(A)·opB(B): d opA(A) = G·opB(B)ᵀ, d opB(B) = opA(A)ᵀ·G.
    const da = !needs[0] ? null : transA ? matmulBatched(sb!, g, transB, true, a.dtype) : matmulBatched(g, sb!, false, !transB, a.dtype);
    const db = !needs[1] ? null : transB ? matmulBatched(g, sa!, true, transA, b.dtype) : matmulBatched(sa!, g, !transA, false, b.dtype);
    return [da, db];
  });
  return out;
}

/** The linear layer: x [..., in] · w[out, in]ᵀ → [..., out]. */
export function linear(x: Tensor, w: Tensor): Tensor {
  if (w.rank !== 2 || x.shape[x.rank - 1] !== w.shape[1]) {
    throw new LongLoraError(`linear: input ${fmt(x.shape)} does not fit weight ${fmt(w.shape)} (expected [..., ${w.shape[1]}])`);
  }
  return matmul(x, w, { transB: true });
}
