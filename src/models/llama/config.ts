/**
 * Llama model configuration, parsed from a Hugging Face `config.json`. Unknown keys are
 * ignored there (HF configs carry many); known keys are type-checked, and features this
 * implementation does not have are refused with a message instead of computed wrongly.
 *
 * Mistral (`model_type: "mistral"`) is the Llama architecture with an optional sliding
 * attention window: up to `sliding_window` tokens its attention is exactly Llama's causal
 * attention, so it runs here up to that length (and without limit when the window is null,
 * as in Mistral v0.2 and later); longer inputs are refused naming the fix. Qwen 2 and 2.5
 * (`"qwen2"`) are the Llama architecture with biases on q, k and v (sliding-window
 * attention, off in every released config, is refused when on). Llama's own
 * `attention_bias: true` puts biases on q, k, v and o. Qwen 3 (`"qwen3"`) is the Llama
 * architecture with an RMSNorm over each head of q and k before RoPE (`q_norm`, `k_norm`),
 * biases when `attention_bias` says so, and usually a head_dim of its own.
 */
import { LongLoraError } from '../../errors.js';
import { ropeScalingFromHF, ropeScalingToHF, type RopeScaling } from '../../nn/rope-scaling.js';

export interface LlamaConfig {
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  /** dtype of the checkpoint as the config states it (float32, bfloat16, float16). */
  torchDtype: string | null;
  /** Mistral: each token attends to at most this many (itself included); null: no window. */
  slidingWindow: number | null;
  /** Biases on the q, k and v projections (Qwen 2; Llama with attention_bias). */
  qkvBias: boolean;
  /** A bias on the o projection (Llama with attention_bias). */
  oBias: boolean;
  /** RMSNorm of each q and k head before RoPE (Qwen 3's q_norm, k_norm). */
  qkNorm: boolean;
}

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
export type ModelType = typeof SUPPORTED_MODEL_TYPES[number];

/** Hugging Face class names, by model type. */
const ARCHITECTURES: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM',
};
/** transformers' MistralConfig default when config.json has no sliding_window key. */
const MISTRAL_DEFAULT_WINDOW = 4096;

type Json = Record<string, unknown>;

function fail(source: string, msg: string): never {
  throw new LongLoraError(`${source}: ${msg}`);
}

function int(j: Json, key: string, source: string, dflt?: number): number {
  const v = j[key];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    fail(source, `missing "${key}" (a positive integer); this does not look like a complete Llama config.json`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(source, `"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function num(j: Json, key: string, source: string, dflt: number): number {
  const v = j[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(source, `"${key}" must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function optId(j: Json, key: string, source: string): number | null {
  const v = j[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(source, `"${key}" must be an integer, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * RoPE scaling from `rope_scaling` (keys `type` or `rope_type`) or the newer
 * `rope_parameters` block, with Hugging Face's defaults (see ropeScalingFromHF). As in
 * transformers 5, a non-empty `rope_scaling` wins over `rope_parameters`. Returns the
 * scaling and, when the block carries it, rope_theta.
 */
export function parseRopeScaling(j: Json, source: string): { scaling: RopeScaling; theta?: number } {
  const present = (k: string): boolean => j[k] !== undefined && j[k] !== null &&
    !(typeof j[k] === 'object' && !Array.isArray(j[k]) && Object.keys(j[k] as object).length === 0);
  const key = present('rope_scaling') || !present('rope_parameters') ? 'rope_scaling' : 'rope_parameters';
  const block = j[key] as Json | null | undefined;
  const partial = (block !== null && typeof block === 'object' && !Array.isArray(block) ? block.partial_rotary_factor : undefined) ?? j.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    fail(source, `partial_rotary_factor ${JSON.stringify(partial)} is not supported (Llama rotates the whole head; expected 1 or absent)`);
  }
  if (block === undefined || block === null) return { scaling: { type: 'none' } };
  if (typeof block !== 'object' || Array.isArray(block)) fail(source, `"${key}" must be an object or null, got ${JSON.stringify(block)}`);
  const maxPos = int(j, 'max_position_embeddings', source, 2048);
  const scaling = ropeScalingFromHF(block, key, source, maxPos);
  const t = block.rope_theta;
  if (t === undefined || t === null) return { scaling };
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) fail(source, `"${key}.rope_theta" must be a positive number, got ${JSON.stringify(t)}`);
  return { scaling, theta: t };
}

/** Parses and validates a Hugging Face Llama config. `source` names the file in errors. */
export function parseLlamaConfig(json: unknown, source = 'config.json'): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(source, 'must be a JSON object');
  const j = json as Json;
  const modelType = j.model_type as ModelType;
  if (!SUPPORTED_MODEL_TYPES.includes(modelType)) {
    fail(source, `model_type ${JSON.stringify(modelType)} is not supported; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  let slidingWindow: number | null = null;
  if (modelType === 'mistral') {
    slidingWindow = j.sliding_window === undefined ? MISTRAL_DEFAULT_WINDOW : j.sliding_window === null ? null : int(j, 'sliding_window', source);
  }
  const q = j.quantization_config;
  if (q !== undefined && q !== null && !(typeof q === 'object' && Object.keys(q).length === 0)) {
    const method = typeof q === 'object' && typeof (q as Json).quant_method === 'string' ? ` (quant_method "${String((q as Json).quant_method)}")` : '';
    fail(source, `"quantization_config"${method} says the weights are stored quantized, which is not read here; ` +
      'use the unquantized release of the model (float16 or bfloat16 safetensors); longlora quantizes the base itself with --quantize nf4 (QLoRA)');
  }
  const act = j.hidden_act ?? 'silu';
  if (act !== 'silu') fail(source, `hidden_act "${String(act)}" is not supported (Llama uses silu)`);
  if (j.mlp_bias === true) fail(source, '"mlp_bias": true is not supported (Llama\'s MLP projections have no bias)');
  if ((modelType === 'qwen2' || modelType === 'qwen3') && j.use_sliding_window === true) {
    fail(source, '"use_sliding_window": true is not supported (sliding-window attention is not implemented); released Qwen configs set it false');
  }
  const attentionBias = (modelType === 'llama' || modelType === 'qwen3') && j.attention_bias === true;
  const hiddenSize = int(j, 'hidden_size', source);
  const numHeads = int(j, 'num_attention_heads', source);
  const numKvHeads = int(j, 'num_key_value_heads', source, numHeads);
  if (numHeads % numKvHeads !== 0) {
    fail(source, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  if ((j.head_dim === undefined || j.head_dim === null) && hiddenSize % numHeads !== 0) {
    fail(source, `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}); set "head_dim"`);
  }
  const headDim = int(j, 'head_dim', source, hiddenSize / numHeads);
  if (headDim % 2 !== 0) fail(source, `head_dim (${headDim}) must be even for rotary embeddings`);
  const rope = parseRopeScaling(j, source);
  const eos = j.eos_token_id;
  const eosTokenId = Array.isArray(eos)
    ? eos.map((v, i) => (typeof v === 'number' && Number.isInteger(v) ? v : fail(source, `eos_token_id[${i}] must be an integer`)))
    : optId(j, 'eos_token_id', source);
  const dt = j.torch_dtype ?? j.dtype ?? null;
  return {
    modelType,
    vocabSize: int(j, 'vocab_size', source),
    hiddenSize,
    intermediateSize: int(j, 'intermediate_size', source),
    numLayers: int(j, 'num_hidden_layers', source),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(j, 'rms_norm_eps', source, 1e-6),
    ropeTheta: rope.theta ?? num(j, 'rope_theta', source, 10000),
    ropeScaling: rope.scaling,
    maxPositionEmbeddings: int(j, 'max_position_embeddings', source, 2048),
    tieWordEmbeddings: j.tie_word_embeddings === true,
    bosTokenId: optId(j, 'bos_token_id', source),
    eosTokenId,
    torchDtype: typeof dt === 'string' ? dt : null,
    slidingWindow,
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: attentionBias,
    qkNorm: modelType === 'qwen3',
  };
}

/**
 * The longest input (cached tokens included) the config runs exactly: a Mistral sliding
 * window, or unlimited. `what` names the caller in the error for a longer one.
 */
export function checkAttentionSpan(c: LlamaConfig, tokens: number, what: string): void {
  if (c.slidingWindow === null || tokens <= c.slidingWindow) return;
  throw new LongLoraError(`${what}: ${tokens} tokens exceed the model's sliding_window (${c.slidingWindow}). Up to the window, Mistral's ` +
    'sliding-window attention equals the full causal attention computed here; beyond it they differ, and sliding windows are not implemented. ' +
    'To train or run this model at longer contexts with full attention (as LongLoRA does, and as Mistral v0.2 and later are configured), ' +
    'set "sliding_window": null in its config.json');
}

/** The config as Hugging Face `config.json` JSON (rope_scaling always written when set). */
export function llamaConfigToHF(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: [ARCHITECTURES[c.modelType]],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScalingToHF(c.ropeScaling, c.maxPositionEmbeddings),
    max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    ...{
      llama: { attention_bias: c.oBias, mlp_bias: false },
      mistral: { sliding_window: c.slidingWindow },
      qwen2: { use_sliding_window: false },
      qwen3: { attention_bias: c.oBias, use_sliding_window: false },
    }[c.modelType],
    torch_dtype: c.torchDtype ?? 'float32',
  };
}

/** config.json's torch_dtype of each storage dtype. */
export const TORCH_DTYPE = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' } as const;
export type StorageDType = keyof typeof TORCH_DTYPE;

/** The storage dtype a torch_dtype names (f32 for any other or none). */
export function storageDType(torchDtype: string | null): StorageDType {
  return torchDtype === 'bfloat16' ? 'bf16' : torchDtype === 'float16' ? 'f16' : 'f32';
}

/** Module paths of the linear layers LoRA can target (the output head included, the embeddings not). */
export function linearLayerPaths(c: LlamaConfig): string[] {
  return [...llamaTensorShapes(c).entries()].filter(([n, s]) => s.length === 2 && !n.includes('embed_tokens')).map(([n]) => n.slice(0, -'.weight'.length));
}

/** Every tensor a Llama checkpoint must hold, with its shape. */
export function llamaTensorShapes(c: LlamaConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const C = c.hiddenSize;
  const qOut = c.numHeads * c.headDim;
  const kvOut = c.numKvHeads * c.headDim;
  m.set('model.embed_tokens.weight', [c.vocabSize, C]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    m.set(`${p}.input_layernorm.weight`, [C]);
    m.set(`${p}.self_attn.q_proj.weight`, [qOut, C]);
    m.set(`${p}.self_attn.k_proj.weight`, [kvOut, C]);
    m.set(`${p}.self_attn.v_proj.weight`, [kvOut, C]);
    m.set(`${p}.self_attn.o_proj.weight`, [C, qOut]);
    if (c.qkvBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [qOut]);
      m.set(`${p}.self_attn.k_proj.bias`, [kvOut]);
      m.set(`${p}.self_attn.v_proj.bias`, [kvOut]);
    }
    if (c.oBias) m.set(`${p}.self_attn.o_proj.bias`, [C]);
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      m.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    m.set(`${p}.post_attention_layernorm.weight`, [C]);
    m.set(`${p}.mlp.gate_proj.weight`, [c.intermediateSize, C]);
    m.set(`${p}.mlp.up_proj.weight`, [c.intermediateSize, C]);
    m.set(`${p}.mlp.down_proj.weight`, [C, c.intermediateSize]);
  }
  m.set('model.norm.weight', [C]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, C]);
  return m;
}
