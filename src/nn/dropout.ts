/**
 * Dropout with a seeded generator: the keep-mask is drawn on the host from `rng`, so runs
 * are reproducible and resumable, and activation checkpointing can replay it.
 */
import { fromHost } from '../tensor/tensor.js';
import { mul } from '../tensor/ops/elementwise.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';

/** x with each element zeroed with probability p and the rest scaled by 1/(1−p). */
export function dropout(x: Tensor, p: number, rng: Rng): Tensor {
  if (p <= 0) return x;
  const keep = 1 / (1 - p);
  const mask = x.dtype === 'f64' ? new Float64Array(x.size) : new Float32Array(x.size);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.uniform() < p ? 0 : keep;
  return mul(x, fromHost(mask, x.shape, x.dtype === 'f64' ? 'f64' : 'f32', x.backend));
}
