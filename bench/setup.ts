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
import { trainStep, type StepOptions } from '../src/train/step.js';

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

/** What a timed step measured: the median step, and the backend's memory high-water mark during the steps. */
export interface MeasuredSteps { seconds: number; loss: number; peakBytes: number; aboveWeights: number }

/**
 * Runs `steps` training steps of `model` over one sequence and returns the median time and
 * the last loss, with the peak of live bytes over them (and that peak minus what was live
 * before: weights, optimizer state). The caller warms up first.
 */
export async function measureSteps(be: Backend, model: LlamaForCausalLM, opt: AdamW, ids: Int32Array, opts: StepOptions, steps = 1): Promise<MeasuredSteps> {
  const base = be.memory().bytes;
  be.resetPeak();
  const times: number[] = [];
  let loss = NaN;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    loss = (await trainStep(model, opt, [{ ids, B: 1, N: ids.length }], 2e-5, opts)).losses[0]!;
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  const peakBytes = be.memory().peakBytes;
  return { seconds: times[Math.floor(times.length / 2)]!, loss, peakBytes, aboveWeights: peakBytes - base };
}

export interface TimedStep { seconds: number; tokensPerSecond: number; loss: number; peakMiB: number; aboveWeightsMiB: number }

/**
 * One timed LongLoRA training step of `config` on `be` over `ids` (one sequence), after a
 * short warm-up step, with activation checkpointing; the model is freed afterwards.
 */
export async function timedTrainingStep(be: Backend, config: LlamaConfig, ids: Int32Array, mask: AttentionMask, precision: Precision = 'f32',
  lossChunkRows?: number): Promise<TimedStep> {
  const N = ids.length;
  const { model, runtime } = longloraBenchModel(config, { backend: be });
  const opt = benchOptimizer(model);
  const opts = { mask, maxGradNorm: 1, checkpointing: true, rngs: [runtime.rng], precision, ...(lossChunkRows ? { lossChunkRows } : {}) };
  const warmN = Math.min(N, 256);
  const warmMask: AttentionMask = mask.kind === 'causal' ? mask : { ...mask, group: warmN / 4 };
  try {
    await trainStep(model, opt, [{ ids: ids.subarray(0, warmN), B: 1, N: warmN }], 2e-5, { ...opts, mask: warmMask });
    const m = await measureSteps(be, model, opt, ids, opts);
    return { seconds: m.seconds, tokensPerSecond: N / m.seconds, loss: m.loss, peakMiB: m.peakBytes / 2 ** 20, aboveWeightsMiB: m.aboveWeights / 2 ** 20 };
  } finally {
    clearTape(); // a step that failed (out of memory) leaves its tape behind
    zeroGrad(model.parameters());
    opt.dispose();
    model.dispose();
  }
}
