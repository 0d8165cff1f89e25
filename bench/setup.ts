/**
 * The model every training benchmark measures: a random Llama (seed 1) set up for
 * LongLoRA as the paper does it — LoRA r=8, α=16 on q, k, v, o (seed 3) and trainable
 * embeddings and norms — so the figures of different scripts describe the same step.
 * Nothing here uses Node (the browser benchmark runs it in a page).
 */
import type { AttentionMask, Backend } from '../src/backend/backend.js';
import { parseLlamaConfig, type LlamaConfig } from '../src/models/llama/config.js';
import { randomLlama, type RandomInitOptions } from '../src/models/llama/init.js';
import type { LlamaForCausalLM, Precision } from '../src/models/llama/model.js';
import { applyLora, setTrainable } from '../src/lora/inject.js';
import { clearTape, zeroGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/tensor/random.js';
import { AdamW } from '../src/train/optim.js';
import { trainStep } from '../src/train/step.js';

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

/** The fixed small Llama of the CPU benchmarks (Wasm, and the browser against Node). */
export const SMALL_LLAMA = { layers: 8, hidden: 512, intermediate: 1536, heads: 8, vocab: 32000 };

export function smallLlamaConfig(N: number): LlamaConfig {
  const m = SMALL_LLAMA;
  return parseLlamaConfig({
    model_type: 'llama', vocab_size: m.vocab, hidden_size: m.hidden, intermediate_size: m.intermediate,
    num_hidden_layers: m.layers, num_attention_heads: m.heads, num_key_value_heads: m.heads,
    max_position_embeddings: N, rms_norm_eps: 1e-5,
  }, 'bench');
}

export interface TimedStep { seconds: number; tokensPerSecond: number; loss: number; peakMiB: number; aboveWeightsMiB: number }

/**
 * One timed LongLoRA training step of `config` on `be` over `ids` (one sequence), after a
 * short warm-up step, with activation checkpointing; the model is freed afterwards.
 */
export async function timedTrainingStep(be: Backend, config: LlamaConfig, ids: Int32Array, mask: AttentionMask, precision: Precision = 'f32'): Promise<TimedStep> {
  const N = ids.length;
  const { model, runtime } = longloraBenchModel(config, { backend: be });
  const opt = benchOptimizer(model);
  const opts = { mask, maxGradNorm: 1, checkpointing: true, rngs: [runtime.rng], precision };
  const warmN = Math.min(N, 256);
  const warmMask: AttentionMask = mask.kind === 'causal' ? mask : { ...mask, group: warmN / 4 };
  try {
    await trainStep(model, opt, [{ ids: ids.subarray(0, warmN), B: 1, N: warmN }], 2e-5, { ...opts, mask: warmMask });
    const base = be.memory().bytes;
    be.resetPeak();
    const t0 = performance.now();
    const r = await trainStep(model, opt, [{ ids, B: 1, N }], 2e-5, opts);
    const seconds = (performance.now() - t0) / 1000;
    const peak = be.memory().peakBytes;
    return { seconds, tokensPerSecond: N / seconds, loss: r.losses[0]!, peakMiB: peak / 2 ** 20, aboveWeightsMiB: (peak - base) / 2 ** 20 };
  } finally {
    clearTape(); // a step that failed (out of memory) leaves its tape behind
    zeroGrad(model.parameters());
    opt.dispose();
    model.dispose();
  }
}
