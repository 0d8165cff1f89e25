/**
 * AdamW over named trainable parameters (torch.optim.AdamW semantics), global gradient
 * norm clipping (torch.nn.utils.clip_grad_norm_), and the optimizer state as tensors
 * for checkpoints.
 */
import { LongLoraError } from '../errors.js';
import { full, zeros } from '../tensor/ops/create.js';
import { add, addScalar, affine, div, mulInPlace, relu, sqrt, square } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { HostArray } from '../tensor/dtype.js';

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** A learning rate an update can use: finite and ≥ 0 (a NaN one would turn every weight into NaN). */
export function checkLearningRate(lr: number): void {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
    throw new LongLoraError(`learning rate must be a finite number ≥ 0, got ${String(lr)} (lrAt(schedule, step) gives the scheduled one)`);
  }
}

/** Hugging Face's Trainer does not decay norm weights or biases. */
export function decays(name: string): boolean {
  return !(name.includes('norm') || name.endsWith('bias'));
}

interface Slot {
  name: string;
  param: Tensor;
  m: Tensor;
  v: Tensor;
}

export class AdamW {
  /** Optimizer steps taken (the bias-correction count). */
  step = 0;
  private slots: Slot[];

  constructor(params: ReadonlyArray<readonly [string, Tensor]>, readonly options: AdamWOptions) {
    const [b1, b2] = options.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new LongLoraError(`AdamW betas must be in [0, 1), got [${b1}, ${b2}]`);
    if (!(options.eps > 0)) throw new LongLoraError(`AdamW eps must be positive, got ${options.eps}`);
    if (!(options.weightDecay >= 0)) throw new LongLoraError(`weight decay must be ≥ 0, got ${options.weightDecay}`);
    this.slots = params.map(([name, param]) => ({
      name, param,
      m: zeros(param.shape, param.dtype, param.backend).keep(),
      v: zeros(param.shape, param.dtype, param.backend).keep(),
    }));
  }

  /** Applies one update with learning rate `lr` to every parameter that has a gradient. */
  update(lr: number): void {
    checkLearningRate(lr);
    this.step++;
    const [beta1, beta2] = this.options.betas;
    for (const s of this.slots) {
      if (!s.param.grad) continue;
      const wd = decays(s.name) ? this.options.weightDecay : 0;
      s.param.backend.adamw(s.param.buffer, s.param.grad.buffer, s.m.buffer, s.v.buffer,
        { lr, beta1, beta2, eps: this.options.eps, weightDecay: wd, step: this.step });
    }
  }

  /** The moments as named tensors (`<name>.exp_avg`, `<name>.exp_avg_sq`), for checkpoints. */
  stateTensors(): Array<[string, Tensor]> {
    return this.slots.flatMap((s) => [[`${s.name}.exp_avg`, s.m], [`${s.name}.exp_avg_sq`, s.v]] as Array<[string, Tensor]>);
  }

  /** Restores moments and the step count saved with `stateTensors` (a resumed run). */
  restore(step: number, read: (name: string, shape: readonly number[]) => HostArray): void {
    this.step = step;
    for (const s of this.slots) {
      s.m.backend.upload(s.m.buffer, read(`${s.name}.exp_avg`, s.m.shape));
      s.v.backend.upload(s.v.buffer, read(`${s.name}.exp_avg_sq`, s.v.shape));
    }
  }

  /** Parameter names in order (a checkpoint must match them). */
  names(): string[] {
    return this.slots.map((s) => s.name);
  }

  dispose(): void {
    for (const s of this.slots) { s.m.dispose(); s.v.dispose(); }
  }
}

/**
 * Scales all gradients so their global L2 norm is at most `maxNorm` (no-op for 0), as
 * torch.nn.utils.clip_grad_norm_ does: g ← g · min(1, maxNorm / (‖g‖ + 1e-6)). Everything
 * happens on the device, with no readback: returns the squared norm before clipping (a
 * scalar tensor the caller reads, when it needs the number, and disposes), or null when
 * no parameter has a gradient.
 */
export function clipGradNormOnDevice(params: readonly Tensor[], maxNorm: number): Tensor | null {
  const withGrad = params.filter((p) => p.grad);
  if (withGrad.length === 0) return null;
  return noGrad(() => {
    const total = tidy(() => withGrad.map((p) => sum(square(p.grad!))).reduce((x, y) => add(x, y)));
    if (maxNorm > 0) {
      tidy(() => {
        const coef = div(full([1], maxNorm, total.dtype, total.backend), addScalar(sqrt(total), 1e-6));
        const clamped = affine(relu(affine(coef, -1, 1)), -1, 1); // min(1, coef): 1 exactly when not clipping
        for (const p of withGrad) mulInPlace(p.grad!, clamped);
      });
    }
    return total;
  });
}

/** `clipGradNormOnDevice`, with the norm read back (one host read). */
export async function clipGradNorm(params: readonly Tensor[], maxNorm: number): Promise<number> {
  const total = clipGradNormOnDevice(params, maxNorm);
  if (!total) return 0;
  try {
    return Math.sqrt(await total.item());
  } finally {
    total.dispose();
  }
}
