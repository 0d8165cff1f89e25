/**
 * Dynamic loss scaling for f16 mixed precision (as torch.cuda.amp.GradScaler does it).
 *
 * f16 keeps only 5 exponent bits: gradients below 2^-24 become 0. The loss is multiplied
 * by `scale` before the backward pass, so the 16-bit activation gradients stay in range,
 * and the f32 parameter gradients are divided by it again before clipping and the
 * optimizer step. A step whose gradients overflowed (inf or NaN) is skipped and the scale
 * halved; after `growthInterval` good steps in a row it doubles. bf16 has f32's exponent
 * range and needs none of this.
 */
import { LongLoraError } from '../errors.js';

export interface LossScaleState {
  scale: number;
  /** Good steps since the scale last changed. */
  good: number;
}

export class LossScaler {
  scale: number;
  private good = 0;

  constructor(init = 2 ** 16, readonly growthInterval = 2000, readonly minScale = 2 ** -24) {
    if (!(init > 0) || !Number.isFinite(init)) throw new LongLoraError(`loss scale must be a positive number, got ${init}`);
    this.scale = init;
  }

  /** Records a step: `finite` says whether its gradients were finite (false: it was skipped). */
  update(finite: boolean): void {
    if (!finite) {
      this.good = 0;
      this.scale /= 2;
      if (this.scale < this.minScale) {
        throw new LongLoraError(`the f16 loss scale fell below ${this.minScale}: the gradients are not finite at any scale (the forward pass overflows f16?). ` +
          'Use --precision bf16 or f32, or lower --lr');
      }
      return;
    }
    if (++this.good >= this.growthInterval) {
      this.good = 0;
      this.scale *= 2;
    }
  }

  state(): LossScaleState { return { scale: this.scale, good: this.good }; }

  restore(s: LossScaleState): void {
    this.scale = s.scale;
    this.good = s.good;
  }
}
