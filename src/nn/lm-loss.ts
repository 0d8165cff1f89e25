/**
 * The language-model head and its loss without the [T, V] logits: mean cross-entropy of
 * h·Wᵀ computed a chunk of rows at a time, in the forward and again in the backward pass, so
 * only [chunk, V] logits exist at once (for a 32k-token sequence and a 32k vocabulary the
 * full logits would be 4 GiB in f32; a chunk is about 64 MiB).
 */
import type { Backend, DeviceBuffer } from '../backend/backend.js';
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { ids as idsTensor, zeros } from '../tensor/ops/create.js';
import { backendOf, computeDType, fmt, rowsWithin } from '../tensor/ops/util.js';
import { tidy } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';
import { IGNORE_INDEX } from './loss.js';

/** Copies rows [r0, r0 + n) of a row-major [*, C] buffer into (or out of) a [n, C] one. */
function rowCopy(be: Backend, src: DeviceBuffer, dst: DeviceBuffer, r0: number, n: number, C: number, into: boolean): void {
  be.copy(src, dst, {
    shape: [n * C], srcOffset: into ? 0 : r0 * C, srcStrides: [1], dstOffset: into ? r0 * C : 0, dstStrides: [1], accumulate: false,
  });
}

/** Bytes of one chunk's [rows, V] f32 logits that the default chunk aims at (the backward pass holds two such buffers). */
export const LOSS_CHUNK_BYTES = 64 * 2 ** 20;

/**
 * Rows of the loss head computed at once by default: as many as keep a chunk's f32 logits
 * within LOSS_CHUNK_BYTES, a multiple of 64 between 64 and 1024 (a 32k vocabulary: 512
 * rows; Llama 3's 128k: 128; small vocabularies: 1024).
 */
export function lossChunkRows(V: number): number {
  return rowsWithin(LOSS_CHUNK_BYTES, 4 * V, 64, 64, 1024);
}

/**
 * Mean cross-entropy of logits h·Wᵀ (h [T, C], W [V, C]) against `targets` [T], ignoring
 * `ignoreIndex`; 0 when every target is ignored. `chunk` rows at a time (default
 * `lossChunkRows(V)`). Differentiable in h and W. h and W may be
 * stored in 16 bits (mixed precision, a frozen 16-bit head): the logits, the loss and dW
 * are f32 (or f64), dh takes h's dtype.
 */
export function linearCrossEntropy(h: Tensor, W: Tensor, targets: Int32Array, chunk?: number, ignoreIndex = IGNORE_INDEX): Tensor {
  if (h.rank !== 2 || W.rank !== 2 || h.shape[1] !== W.shape[1]) {
    throw new LongLoraError(`linearCrossEntropy: h ${fmt(h.shape)} and W ${fmt(W.shape)} must be [T, C] and [V, C]`);
  }
  const [T, C] = h.shape as [number, number];
  const V = W.shape[0]!;
  if (targets.length !== T) throw new LongLoraError(`linearCrossEntropy: ${targets.length} targets for ${T} rows`);
  const rows = chunk ?? lossChunkRows(V);
  if (!Number.isInteger(rows) || rows < 1) throw new LongLoraError(`linearCrossEntropy: chunk must be a whole number of rows ≥ 1, got ${rows}`);
  const be = backendOf('linearCrossEntropy', h, W);
  const dt = computeDType('linearCrossEntropy', h, W);
  let count = 0;
  for (const t of targets) if (t !== ignoreIndex) count++;
  const inv = 1 / Math.max(count, 1);
  const tt = idsTensor(targets, [T], be);
  const lse = Tensor.empty([T], dt, be);
  const total = zeros([1], dt, be);
  const matmulArgs = (n: number) => ({ batch: 1, m: n, n: V, k: C, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 });
  for (let r0 = 0; r0 < T; r0 += rows) {
    tidy(() => { // one scope per chunk: only one chunk's [n, V] logits exist at a time
      const n = Math.min(rows, T - r0);
      const hc = Tensor.empty([n, C], h.dtype, be);
      rowCopy(be, h.buffer, hc.buffer, r0, n, C, false);
      const logits = Tensor.empty([n, V], dt, be); // (n, V)
      be.matmul(hc.buffer, W.buffer, logits.buffer, matmulArgs(n));
      const tc = Tensor.empty([n], 'i32', be);
      rowCopy(be, tt.buffer, tc.buffer, r0, n, 1, false);
      const losses = Tensor.empty([n], dt, be);
      const lc = Tensor.empty([n], dt, be);
      be.crossEntropy(logits.buffer, tc.buffer, losses.buffer, lc.buffer, n, V, ignoreIndex);
      rowCopy(be, lc.buffer, lse.buffer, r0, n, 1, true);
      const part = Tensor.empty([1], dt, be);
      be.reduceSum(losses.buffer, part.buffer, 1, n, 1);
      be.binary('add', total.buffer, part.buffer, total.buffer);
    });
  }
  const out = Tensor.empty([], dt, be);
  be.affine(total.buffer, inv, 0, out.buffer);
  total.dispose();
  record('linearCrossEntropy', out, [h, W], [h, W, tt, lse], (g, [sh, sw, st, sl], needs) => {
    const dh = needs[0] ? Tensor.empty([T, C], h.dtype, be) : null;
    const dW = needs[1] ? zeros([V, C], dt, be) : null;
    for (let r0 = 0; r0 < T; r0 += rows) {
      tidy(() => {
        const n = Math.min(rows, T - r0);
        const hc = Tensor.empty([n, C], h.dtype, be);
        rowCopy(be, sh!.buffer, hc.buffer, r0, n, C, false);
        const logits = Tensor.empty([n, V], dt, be);
        be.matmul(hc.buffer, sw!.buffer, logits.buffer, matmulArgs(n));
        const tc = Tensor.empty([n], 'i32', be);
        rowCopy(be, st!.buffer, tc.buffer, r0, n, 1, false);
        const lc = Tensor.empty([n], dt, be);
        rowCopy(be, sl!.buffer, lc.buffer, r0, n, 1, false);
        // d loss_t = g / count for every row: the mean's gradient, broadcast from the scalar g.
        const dl = Tensor.empty([n], dt, be);
        be.fill(dl.buffer, 0);
        be.binary('add', dl.buffer, g.buffer, dl.buffer);
        be.affine(dl.buffer, inv, 0, dl.buffer);
        const dlogits = Tensor.empty([n, V], dt, be);
        be.crossEntropyBackward(logits.buffer, tc.buffer, lc.buffer, dl.buffer, dlogits.buffer, n, V, ignoreIndex);
        if (dh) {
          const dhc = Tensor.empty([n, C], h.dtype, be); // (n, C) = dlogits · W
          be.matmul(dlogits.buffer, sw!.buffer, dhc.buffer, { batch: 1, m: n, n: C, k: V, transA: false, transB: false, alpha: 1, beta: 0, strideA: 0, strideB: 0 });
          rowCopy(be, dhc.buffer, dh.buffer, r0, n, C, true);
        }
        // dW += dlogitsᵀ · h_c  (V, C)
        if (dW) be.matmul(dlogits.buffer, hc.buffer, dW.buffer, { batch: 1, m: V, n: C, k: n, transA: true, transB: false, alpha: 1, beta: 1, strideA: 0, strideB: 0 });
      });
    }
    return [dh, dW];
  });
  tt.dispose();
  lse.dispose();
  return out;
}
