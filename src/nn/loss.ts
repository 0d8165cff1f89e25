/** Cross-entropy with an ignore index, as Hugging Face causal LMs compute it. */
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { ids as idsTensor } from '../tensor/ops/create.js';
import { scale } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { computeDType, fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';

export const IGNORE_INDEX = -100;

/** Per-row losses [T] of logits [T, V]; 0 where the target is ignored. */
export function crossEntropyPerToken(logits: Tensor, targets: Tensor, ignoreIndex = IGNORE_INDEX): Tensor {
  if (logits.rank !== 2) throw new LongLoraError(`crossEntropy: logits must be [T, V], got ${fmt(logits.shape)}`);
  const [T, V] = logits.shape as [number, number];
  if (targets.dtype !== 'i32' || targets.size !== T) {
    throw new LongLoraError(`crossEntropy: targets must be ${T} i32 values, got ${targets.dtype} ${fmt(targets.shape)}`);
  }
  const dt = computeDType('crossEntropy', logits);
  const be = logits.backend;
  const losses = Tensor.empty([T], dt, be);
  const lse = Tensor.empty([T], dt, be);
  be.crossEntropy(logits.buffer, targets.buffer, losses.buffer, lse.buffer, T, V, ignoreIndex);
  record('crossEntropy', losses, [logits], [logits, targets, lse], (g, [sl, st, slse]) => {
    const d = Tensor.empty(logits.shape, logits.dtype, be);
    be.crossEntropyBackward(sl!.buffer, st!.buffer, slse!.buffer, g.buffer, d.buffer, T, V, ignoreIndex);
    return [d];
  });
  lse.dispose();
  return losses;
}

/**
 * Mean cross-entropy over the targets that are not `ignoreIndex`. logits [T, V],
 * targets [T] (host ids). When every target is ignored the loss is 0 (and so are its
 * gradients), rather than NaN.
 */
export function crossEntropy(logits: Tensor, targets: Int32Array, ignoreIndex = IGNORE_INDEX): Tensor {
  let count = 0;
  for (const t of targets) if (t !== ignoreIndex) count++;
  const tt = idsTensor(targets, [targets.length], logits.backend);
  return scale(sum(crossEntropyPerToken(logits, tt, ignoreIndex)), 1 / Math.max(count, 1));
}

/**
 * The causal-LM shift: the target of position t is labels[t+1] within each sequence,
 * and the last position of every sequence is ignored. labels [B·N] row-major.
 */
export function shiftLabels(labels: ArrayLike<number>, B: number, N: number, ignoreIndex = IGNORE_INDEX): Int32Array {
  if (labels.length !== B * N) throw new LongLoraError(`labels: ${labels.length} values for B=${B}, N=${N}`);
  const out = new Int32Array(B * N);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < N; t++) out[b * N + t] = t + 1 < N ? labels[b * N + t + 1]! : ignoreIndex;
  }
  return out;
}
