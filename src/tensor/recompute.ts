/**
 * Activation checkpointing: run a block without keeping its activations, and recompute
 * them during the backward pass. Only the block's input is saved, so a decoder layer's
 * memory drops from all its intermediates to one [B, N, C] tensor.
 *
 * The recomputation must see the same random numbers as the forward (dropout), so the
 * states of the given generators are saved before the forward and restored around the
 * recomputation.
 */
import { backwardOn, isGradEnabled, noGrad, record, Tape, withTape } from './autograd.js';
import type { Rng } from './random.js';
import type { Tensor } from './tensor.js';

/**
 * out = fn(x), recomputed in backward. `params` are the trainable tensors fn reads (they
 * receive their gradients during the recomputation); `rngs` the generators fn draws from.
 */
export function recompute(fn: (x: Tensor) => Tensor, x: Tensor, params: readonly Tensor[], rngs: readonly Rng[] = []): Tensor {
  if (!isGradEnabled()) return fn(x);
  const before = rngs.map((r) => r.state());
  const out = noGrad(() => fn(x));
  record('recompute', out, [x, ...params], [x], (g, [sx], needs) => {
    const now = rngs.map((r) => r.state());
    rngs.forEach((r, i) => r.setState(before[i]!));
    const xin = sx!.view(sx!.shape);
    xin.requiresGrad = needs[0]!;
    const inner = new Tape();
    try {
      const y = withTape(inner, () => fn(xin));
      backwardOn(inner, y, g);
    } finally {
      inner.clear();
      rngs.forEach((r, i) => r.setState(now[i]!));
    }
    const dx = xin.grad;
    xin.grad = null;
    return [dx, ...params.map(() => null)];
  });
  return out;
}
