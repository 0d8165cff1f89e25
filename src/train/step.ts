/**
 * One optimizer step of causal-LM training: forward and backward over the micro-batches
 * of a gradient-accumulation group (each loss divided by their number, as Hugging Face's
 * Trainer does), global gradient clipping, an AdamW update, and zeroed gradients.
 */
import type { AttentionMask } from '../backend/backend.js';
import type { LlamaForCausalLM, Precision } from '../models/llama/model.js';
import { backward, zeroGrad } from '../tensor/autograd.js';
import { ids as idsTensor, scale, scaleInPlace } from '../tensor/ops/index.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { tidy } from '../tensor/scope.js';
import { checkLearningRate, clipGradNorm, clipGradNormOnDevice, type AdamW } from './optim.js';
import type { LossScaler } from './loss-scale.js';

/** B sequences of N tokens, row-major; labels default to the inputs. */
export interface MicroBatch {
  ids: Int32Array;
  labels?: Int32Array;
  B: number;
  N: number;
}

export interface StepOptions {
  mask: AttentionMask;
  maxGradNorm: number;
  checkpointing: boolean;
  rngs?: readonly Rng[];
  /** Activation storage (mixed precision); default f32. */
  precision?: Precision;
  /** Dynamic loss scaling (f16): scales the backward pass; a step with non-finite gradients is skipped. */
  scaler?: LossScaler;
  /** Rows of the loss head computed at once (default: about 64 MiB of logits; see `lossChunkRows`). */
  lossChunkRows?: number;
}

export interface StepResult {
  /** Unscaled loss of each micro-batch. */
  losses: number[];
  /** Global gradient norm before clipping (after unscaling). */
  gradNorm: number;
  /** The gradients overflowed under loss scaling, so no update was made. */
  skipped: boolean;
}

/**
 * Forward + backward of one micro-batch with its loss scaled by `weight`; returns the loss
 * tensor (a scalar the caller disposes), not yet read back, so a GPU backend keeps going.
 */
export function accumulateLoss(model: LlamaForCausalLM, mb: MicroBatch, weight: number, opts: Omit<StepOptions, 'maxGradNorm'>): Tensor {
  return tidy(() => {
    const r = model.loss(idsTensor(mb.ids, [mb.B, mb.N]), mb.labels ?? mb.ids, {
      mask: opts.mask, checkpointing: opts.checkpointing, ...(opts.rngs ? { rngs: opts.rngs } : {}),
      ...(opts.precision ? { precision: opts.precision } : {}), ...(opts.lossChunkRows ? { lossChunkRows: opts.lossChunkRows } : {}),
    });
    backward(scale(r.loss, weight * (opts.scaler?.scale ?? 1)));
    return r.loss;
  });
}

/** `accumulateLoss`, with the loss read back. */
export async function accumulate(model: LlamaForCausalLM, mb: MicroBatch, weight: number, opts: Omit<StepOptions, 'maxGradNorm'>): Promise<number> {
  const loss = accumulateLoss(model, mb, weight, opts);
  try {
    return await loss.item();
  } finally {
    loss.dispose();
  }
}

/**
 * The whole step is recorded before anything is read back: the micro-batches back to back,
 * clipping on the device, the AdamW update; then the losses and the gradient norm are read
 * (on a GPU, one wait per step). With loss scaling the norm is read before the update,
 * which is skipped when it is not finite.
 */
export async function trainStep(model: LlamaForCausalLM, optimizer: AdamW, batches: readonly MicroBatch[], lr: number, opts: StepOptions): Promise<StepResult> {
  checkLearningRate(lr); // before the backward passes, which would leave their gradients behind
  const lossTensors: Tensor[] = [];
  let sumSq: Tensor | null = null;
  try {
    for (const mb of batches) lossTensors.push(accumulateLoss(model, mb, 1 / batches.length, opts));
    const params = model.trainableParameters();
    const scaler = opts.scaler;
    let gradNorm = 0;
    let skipped = false;
    if (scaler) {
      for (const p of params) if (p.grad) scaleInPlace(p.grad, 1 / scaler.scale);
      gradNorm = await clipGradNorm(params, opts.maxGradNorm);
      skipped = !Number.isFinite(gradNorm);
      scaler.update(!skipped);
      if (!skipped) optimizer.update(lr);
    } else {
      sumSq = clipGradNormOnDevice(params, opts.maxGradNorm);
      optimizer.update(lr);
    }
    zeroGrad(params);
    if (sumSq) gradNorm = Math.sqrt(await sumSq.item());
    const losses: number[] = [];
    for (const t of lossTensors) losses.push(await t.item());
    return { losses, gradNorm, skipped };
  } finally {
    for (const t of lossTensors) t.dispose();
    sumSq?.dispose();
  }
}
