/**
 * One optimizer step of causal-LM training: forward and backward over the micro-batches
 * of a gradient-accumulation group (each loss divided by their number, as Hugging Face's
 * Trainer does), global gradient clipping, an AdamW update, and zeroed gradients.
 */
import type { AttentionMask } from '../backend/backend.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { backward, zeroGrad } from '../tensor/autograd.js';
import { ids as idsTensor, scale } from '../tensor/ops/index.js';
import type { Rng } from '../tensor/random.js';
import { tidy } from '../tensor/scope.js';
import { clipGradNorm, type AdamW } from './optim.js';

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
}

export interface StepResult {
  /** Unscaled loss of each micro-batch. */
  losses: number[];
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

/** Forward + backward of one micro-batch with its loss scaled by `weight`; returns the loss. */
export async function accumulate(model: LlamaForCausalLM, mb: MicroBatch, weight: number, opts: Omit<StepOptions, 'maxGradNorm'>): Promise<number> {
  const loss = tidy(() => {
    const r = model.loss(idsTensor(mb.ids, [mb.B, mb.N]), mb.labels ?? mb.ids, {
      mask: opts.mask, checkpointing: opts.checkpointing, ...(opts.rngs ? { rngs: opts.rngs } : {}),
    });
    backward(scale(r.loss, weight));
    return r.loss;
  });
  const v = await loss.item();
  loss.dispose();
  return v;
}

export async function trainStep(model: LlamaForCausalLM, optimizer: AdamW, batches: readonly MicroBatch[], lr: number, opts: StepOptions): Promise<StepResult> {
  const losses: number[] = [];
  for (const mb of batches) losses.push(await accumulate(model, mb, 1 / batches.length, opts));
  const params = model.trainableParameters();
  const gradNorm = await clipGradNorm(params, opts.maxGradNorm);
  optimizer.update(lr);
  zeroGrad(params);
  return { losses, gradNorm };
}
