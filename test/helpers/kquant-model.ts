/**
 * The model of the k-quant GGUF golden test (scripts/gguf-golden/make.mjs writes the
 * llama.cpp side): a random Llama whose rows are whole 256-value k-quant blocks except
 * down_proj's (800 long: Q4_K falls back to Q5_0 there, Q6_K to Q8_0), with
 * grouped-query attention and enough layers for llama.cpp's Q4_K_M mix to vary by layer,
 * and the shipped model's tokenizer. Deterministic: the same seed gives the same bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { llamaTensorShapes, parseLlamaConfig } from '../../src/models/llama/config.js';
import { randomLlama, saveLlama } from '../../src/models/llama/load.js';
import { Rng } from '../../src/tensor/random.js';
import { ROOT } from './fixtures.js';

export const KQUANT_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 2048, hidden_size: 256, intermediate_size: 800,
  num_hidden_layers: 8, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64, hidden_act: 'silu', rms_norm_eps: 1e-5,
  rope_theta: 10000, max_position_embeddings: 512, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32',
};

/** Prompts (token ids) whose next-token distribution the golden records. */
export const KQUANT_PROMPTS: number[][] = [
  [1, 569, 318, 441, 505, 335, 1016, 13, 700, 42, 99, 1500],
  [1, 17, 2000, 3, 64, 128, 256, 512, 1024, 77, 5, 900, 901, 902, 31, 8],
];

/**
 * The RoPE scalings the golden also exports the model with (in f32): each an original
 * context of 16 tokens, which the prompts pass, extended 4 times.
 */
export const KQUANT_ROPE_SCALINGS: Array<Record<string, unknown>> = [
  { rope_type: 'linear', factor: 4 },
  { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16 },
  { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16, attention_factor: 1 },
];

/** A copy of the model folder `dir` with `rope_scaling` in its config (the folder beside it, `dir`-rope-N); returns its path. */
export async function withRopeScaling(dir: string, ropeScaling: Record<string, unknown>): Promise<string> {
  const out = `${dir}-rope-${KQUANT_ROPE_SCALINGS.indexOf(ropeScaling)}`;
  fs.cpSync(dir, out, { recursive: true });
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...KQUANT_CONFIG, rope_scaling: ropeScaling }, null, 2));
  return out;
}

/**
 * The other architectures the golden also exports the model as (in f32): Qwen 2 (llama.cpp's
 * qwen2: rotate-half RoPE, biases on q, k and v) and Qwen 3 (qwen3: RMSNorm over each q and k
 * head), their biases and head norms drawn at random so that they matter.
 */
export const KQUANT_ARCHITECTURES: Record<string, Record<string, unknown>> = {
  qwen2: { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], rope_theta: 1000000 },
  qwen3: { model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], rope_theta: 1000000 },
};

/** Writes the model to `dir` (created); `arch` names one of KQUANT_ARCHITECTURES (default: the Llama). */
export async function writeKquantModel(dir: string, arch?: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const json = arch ? { ...KQUANT_CONFIG, ...KQUANT_ARCHITECTURES[arch] } : KQUANT_CONFIG;
  const config = parseLlamaConfig(json);
  const rng = new Rng(7);
  const hostCache = new Map<string, Float32Array>();
  for (const [name, shape] of llamaTensorShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('.bias')) hostCache.set(name, Float32Array.from({ length: n }, () => 0.5 * rng.normal()));
    if (/\.[qk]_norm\.weight$/.test(name)) hostCache.set(name, Float32Array.from({ length: n }, () => 1 + 0.2 * rng.normal()));
  }
  const model = randomLlama(config, { seed: 2026, std: 0.02, hostCache });
  try {
    await saveLlama(model, dir, { dtype: 'f32' });
  } finally {
    model.dispose();
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(json, null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(ROOT, 'models', 'tiny-longlora', f), path.join(dir, f));
}

/** The block types of llama.cpp's lower-bit mixes, with their ggml type ids, whose bytes as llama.cpp writes them are a golden (scripts/gguf-golden/make-llama-cpp-bytes.mjs). */
export const LOW_BIT_TYPE_IDS = { Q4_0: 2, Q4_1: 3, Q2_K: 10, Q3_K: 11, IQ4_NL: 20, IQ4_XS: 23 } as const;

/**
 * The values llama.cpp quantised to each of those types for that golden: two rows of 256,
 * weight-like (Gaussian, σ 0.02) with one value in fifty ten times larger, and an all-zero
 * 32-value stretch.
 */
export function lowBitValues(): Float32Array {
  const rng = new Rng(77);
  return Float32Array.from({ length: 512 }, (_, i) => (i >= 300 && i < 332 ? 0 : rng.normal() * 0.02 * (rng.uniform() < 0.02 ? 10 : 1)));
}
