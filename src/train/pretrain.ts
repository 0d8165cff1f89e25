/**
 * Pretraining a small Llama from random initialisation: full training of every weight
 * with dense attention at a short context, through the same Trainer as fine-tuning (so
 * progress, held-out loss, metrics, checkpoints and resume all work the same). The
 * architecture comes from a few numbers plus the tokenizer's vocabulary; the initial
 * weights (seeded, normal(0, initStd), norms at 1) are written to `<output>/init`, the
 * trained model to `<output>/model` (f32, by the trainer) and the release — weights in
 * `saveDtype` with the tokenizer files beside them — to `modelOut`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { TOKENIZER_FILES } from '../lora/adapted.js';
import { parseLlamaConfig, TORCH_DTYPE, type LlamaConfig } from '../models/llama/config.js';
import { randomLlama, saveLlama } from '../models/llama/load.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { cpuBackend } from '../backend/registry.js';
import { defaultTrainConfig, type TrainConfig } from './config.js';
import type { ProgressStream } from './progress.js';
import { Trainer, type TrainResult } from './trainer.js';

/** The shape of the model to pretrain. */
export interface Architecture {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  /** max_position_embeddings: the context the model is pretrained for. */
  context: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  rmsNormEps: number;
}

export const DEFAULT_ARCHITECTURE: Architecture = {
  hiddenSize: 128, numLayers: 4, numHeads: 4, numKvHeads: 4, intermediateSize: 384,
  context: 256, ropeTheta: 10000, tieWordEmbeddings: false, rmsNormEps: 1e-5,
};

/** Training values that differ from the fine-tuning defaults (full, dense, a higher LR with cosine decay). */
export const PRETRAIN_DEFAULTS: Partial<TrainConfig> = {
  mode: 'full', attention: 'dense', lr: 3e-3, schedule: 'cosine', warmupSteps: 100, steps: 2000,
  batchSize: 16, gradAccum: 1, weightDecay: 0.1, beta2: 0.95, maxGradNorm: 1, valFraction: 0.01,
  evalEvery: 250, saveEvery: 250, checkpointing: false, output: 'runs/pretrain',
};

export interface PretrainOptions {
  arch: Architecture;
  /** Tokenizer folder (tokenizer.json); its vocabulary sizes the model and its files ship with it. */
  tokenizer: string;
  /** Training config; `seqLen` defaults to the architecture's context, `model` is set here. */
  train: TrainConfig;
  /** Where the released model goes (config.json, model.safetensors, tokenizer files). */
  modelOut: string;
  saveDtype: 'f32' | 'bf16' | 'f16';
  /** std of the initial weights (Hugging Face initializer_range). */
  initStd?: number;
  resume?: string | boolean;
  out?: ProgressStream;
  /** The trainer, once created (Ctrl-C handling). */
  onTrainer?: (t: Trainer) => void;
}

/** The Llama config of an architecture with a tokenizer's vocabulary and special ids. */
export function pretrainConfig(arch: Architecture, tok: Tokenizer, dtype: string): LlamaConfig {
  const a = arch;
  if (a.hiddenSize % a.numHeads !== 0) throw new LongLoraError(`pretrain: --hidden-size ${a.hiddenSize} is not a multiple of --heads ${a.numHeads}`);
  return parseLlamaConfig({
    model_type: 'llama', vocab_size: tok.vocabSize, hidden_size: a.hiddenSize, intermediate_size: a.intermediateSize,
    num_hidden_layers: a.numLayers, num_attention_heads: a.numHeads, num_key_value_heads: a.numKvHeads,
    max_position_embeddings: a.context, rope_theta: a.ropeTheta, rms_norm_eps: a.rmsNormEps, tie_word_embeddings: a.tieWordEmbeddings,
    bos_token_id: tok.bosId, eos_token_id: tok.eosId, torch_dtype: dtype,
  }, 'pretrain architecture');
}

/** The number of parameters of a config. */
export function parameterCount(c: LlamaConfig): number {
  const C = c.hiddenSize;
  const attn = C * c.numHeads * c.headDim * 2 + C * c.numKvHeads * c.headDim * 2;
  const layer = attn + 3 * C * c.intermediateSize + 2 * C;
  return c.vocabSize * C * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * layer + C;
}

/** Writes the seeded initial model (f32, with the tokenizer files) unless it is there already. */
async function writeInit(dir: string, cfg: LlamaConfig, tokDir: string, seed: number, std: number): Promise<void> {
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    // Initialised on the CPU reference backend: the values depend on the seed only.
    const model = randomLlama(cfg, { seed, std, backend: cpuBackend() });
    try {
      await saveLlama(model, dir, { dtype: 'f32' });
    } finally {
      model.dispose();
    }
  }
  copyTokenizerFiles(tokDir, dir);
}

/** Copies the tokenizer files that exist in `from` into `to`. */
export function copyTokenizerFiles(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const f of TOKENIZER_FILES) {
    const src = path.join(from, f);
    if (fs.existsSync(src) && path.resolve(src) !== path.resolve(to, f)) fs.copyFileSync(src, path.join(to, f));
  }
}

/** A training config for pretraining: the pretraining defaults under the given values. */
export function pretrainTrainConfig(values: Partial<TrainConfig> = {}): TrainConfig {
  return { ...defaultTrainConfig(), ...PRETRAIN_DEFAULTS, ...values };
}

/** Pretrains; returns the trainer's result and the released model folder. */
export async function pretrain(o: PretrainOptions): Promise<TrainResult & { modelOut: string; parameters: number }> {
  const say = (s: string): void => { (o.out ?? process.stderr).write(`${s}\n`); };
  if (o.train.mode !== 'full') throw new LongLoraError(`pretrain trains every weight; --mode ${o.train.mode} does not apply`);
  const tok = Tokenizer.load(o.tokenizer);
  const torchDtype = TORCH_DTYPE[o.saveDtype];
  const cfg = pretrainConfig(o.arch, tok, torchDtype);
  const initDir = path.join(o.train.output, 'init');
  const params = parameterCount(cfg);
  say(`pretrain: Llama with ${params.toLocaleString('en-US')} parameters (hidden ${cfg.hiddenSize}, ${cfg.numLayers} layers, ${cfg.numHeads} heads, ` +
    `MLP ${cfg.intermediateSize}, vocabulary ${cfg.vocabSize}, context ${cfg.maxPositionEmbeddings}); initial weights in ${initDir}`);
  if (o.train.seqLen > cfg.maxPositionEmbeddings) {
    throw new LongLoraError(`pretrain: --seq-len ${o.train.seqLen} is longer than the model's context ${cfg.maxPositionEmbeddings}; raise --context`);
  }
  await writeInit(initDir, cfg, o.tokenizer, o.train.seed, o.initStd ?? 0.02);
  const c: TrainConfig = { ...o.train, model: initDir, tokenizer: o.train.tokenizer ?? o.tokenizer };
  const trainer = await Trainer.create(c, { ...(o.resume ? { resume: o.resume } : {}), ...(o.out ? { out: o.out } : {}) });
  o.onTrainer?.(trainer);
  try {
    const r = await trainer.run();
    if (!r.stopped) {
      await saveLlama(trainer.model, o.modelOut, { dtype: o.saveDtype });
      copyTokenizerFiles(o.tokenizer, o.modelOut);
      say(`saved the pretrained model (${o.saveDtype}) with its tokenizer to ${o.modelOut}`);
    }
    return { ...r, modelOut: o.modelOut, parameters: params };
  } finally {
    trainer.dispose();
  }
}
