/**
 * The model every training benchmark measures: a random Llama (seed 1) set up for
 * LongLoRA as the paper does it — LoRA r=8, α=16 on q, k, v, o (seed 3) and trainable
 * embeddings and norms — so the figures of different scripts describe the same step.
 */
import type { LlamaConfig } from '../src/models/llama/config.js';
import { randomLlama, type RandomInitOptions } from '../src/models/llama/load.js';
import type { LlamaForCausalLM } from '../src/models/llama/model.js';
import { applyLora, setTrainable } from '../src/lora/inject.js';
import { Rng } from '../src/tensor/random.js';
import { AdamW } from '../src/train/optim.js';

export interface BenchModel {
  model: LlamaForCausalLM;
  /** Training mode and the generator dropout draws from (seed 2). */
  runtime: { training: boolean; rng: Rng };
}

export function longloraBenchModel(config: LlamaConfig, init: Omit<RandomInitOptions, 'seed'> = {}): BenchModel {
  const model = randomLlama(config, { ...init, seed: 1 });
  const runtime = { training: true, rng: new Rng(2) };
  applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 8, alpha: 16, dropout: 0, rslora: false }, new Rng(3), runtime);
  setTrainable(model, 'longlora', ['embed', 'norm']);
  return { model, runtime };
}

/** AdamW over the trainable parameters (β = 0.9, 0.95, no weight decay). */
export function benchOptimizer(model: LlamaForCausalLM): AdamW {
  return new AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
}
