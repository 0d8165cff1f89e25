/**
 * Building a Llama without a file system: from random initialisation, or from a
 * config.json and safetensors files held in memory (fetched in a browser). Node's folder
 * loader (load.ts) shares the checks and messages.
 */
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import { LongLoraError } from '../../errors.js';
import { SafetensorsBytes, checkFloatTensor, missingTensorError, type SafetensorsReader } from '../../io/safetensors-format.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { Rng } from '../../tensor/random.js';
import { fromHost } from '../../tensor/tensor.js';
import type { RopeScaling } from '../../nn/rope.js';
import { parseLlamaConfig, type LlamaConfig } from './config.js';
import { LlamaForCausalLM } from './model.js';

export type ParamDType = 'f32' | 'f64' | 'bf16' | 'f16';

/** How parameters are stored and where (the options every way of building a model takes). */
export interface BuildOptions {
  /**
   * Storage dtype of the parameters: f32 (default); f64 for gradient checks; bf16/f16
   * keep frozen weights in 16 bits (they are cast per use; trainable ones must be f32).
   */
  dtype?: ParamDType;
  backend?: Backend;
  /** Receives non-fatal findings, such as tensors the model does not use. */
  onWarning?: (message: string) => void;
  /** RoPE scaling to use instead of config.json's (context extension, adapters trained with one). */
  ropeScaling?: RopeScaling;
}

/** Tensors some exporters add that carry nothing (recomputed at run time). */
const HARMLESS = /(^|\.)rotary_emb\.inv_freq$/;

/** Why a tensor has its shape, for mismatch messages. */
function shapeReason(name: string, c: LlamaConfig): string {
  if (name.endsWith('embed_tokens.weight') || name === 'lm_head.weight') return `vocab_size=${c.vocabSize}, hidden_size=${c.hiddenSize}`;
  if (/q_proj|o_proj/.test(name)) return `num_attention_heads=${c.numHeads}, head_dim=${c.headDim}, hidden_size=${c.hiddenSize}`;
  if (/k_proj|v_proj/.test(name)) return `num_key_value_heads=${c.numKvHeads}, head_dim=${c.headDim}, hidden_size=${c.hiddenSize}`;
  if (/mlp\./.test(name)) return `intermediate_size=${c.intermediateSize}, hidden_size=${c.hiddenSize}`;
  return `hidden_size=${c.hiddenSize}`;
}

/** Throws when a stored tensor's shape is not the one the config asks for. */
export function checkWeightShape(file: string, name: string, have: readonly number[], need: readonly number[], config: LlamaConfig, configPath: string): void {
  if (have.length !== need.length || have.some((s, i) => s !== need[i])) {
    throw new LongLoraError(
      `${file}: tensor "${name}" has shape [${have.join(', ')}] but ${configPath} ` +
      `(${shapeReason(name, config)}) needs [${need.join(', ')}]. ` +
      'The weights and config.json do not belong together; use the config.json that came with the weights.');
  }
}

/** Reports checkpoint tensors the model did not take (a warning, not an error). */
export function warnUnused(model: LlamaForCausalLM, names: readonly string[], where: string, onWarning?: (message: string) => void): void {
  const used = new Set([...model.namedParameters(), ...model.namedBuffers()].map(([n]) => n));
  const unexpected = names.filter((n) => !used.has(n) && !HARMLESS.test(n) && !(n === 'lm_head.weight' && model.config.tieWordEmbeddings));
  if (unexpected.length > 0) {
    onWarning?.(`${where}: ${unexpected.length} tensor(s) not used by the Llama model: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', ...' : ''}`);
  }
}

/** The dtypes a model's weights may be kept in. */
export const PARAM_DTYPES: readonly ParamDType[] = ['f32', 'f64', 'bf16', 'f16'];

/** Refuses a weight dtype that is none of PARAM_DTYPES (a value from a page's address or a config, say). */
export function checkParamDType(dtype: unknown, where: string): void {
  if (dtype !== undefined && !PARAM_DTYPES.includes(dtype as ParamDType)) {
    throw new LongLoraError(`${where}: dtype must be ${PARAM_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  }
}

export function computeOf(dtype: ParamDType): 'f32' | 'f64' {
  return dtype === 'f64' ? 'f64' : 'f32';
}

export interface RandomInitOptions {
  seed?: number;
  /** Standard deviation of linear and embedding weights (HF initializer_range). */
  std?: number;
  dtype?: ParamDType;
  backend?: Backend;
  /**
   * Benchmarks that build the same random model several times (other dtypes, other
   * devices): the weights drawn the first time are kept here as f32 by name, and later
   * calls with the same map take them instead of drawing again (a 1B model is a billion
   * normal draws). Values pass through f32 on the way to a 16-bit dtype.
   */
  hostCache?: Map<string, Float32Array>;
}

/** A freshly initialised model: normal(0, std) weights, norms at 1, biases at 0 (as Hugging Face). */
export function randomLlama(config: LlamaConfig, opts: RandomInitOptions = {}): LlamaForCausalLM {
  checkParamDType(opts.dtype, 'randomLlama');
  const rng = new Rng(opts.seed ?? 0);
  const std = opts.std ?? 0.02;
  const dtype = opts.dtype ?? 'f32';
  const backend = opts.backend ?? currentBackend();
  return new LlamaForCausalLM(config, (name, shape) => {
    let v: Float64Array | Float32Array | undefined = opts.hostCache?.get(name);
    if (!v) {
      const n = shape.reduce((a, s) => a * s, 1);
      const drawn = new Float64Array(n);
      if (name.endsWith('norm.weight')) drawn.fill(1);
      else if (name.endsWith('.bias')) drawn.fill(0);
      else for (let i = 0; i < n; i++) drawn[i] = rng.normal() * std;
      v = drawn;
      if (opts.hostCache) {
        v = Float32Array.from(drawn);
        opts.hostCache.set(name, v);
      }
    }
    const t = fromHost(fromFloatArray(v, dtype), shape, dtype, backend).keep();
    t.name = name;
    return t;
  }, computeOf(dtype));
}

/** A safetensors file given to `llamaFromSafetensors`: parsed already, or its bytes. */
export type SafetensorsSource = SafetensorsReader | Uint8Array | ArrayBuffer;

/**
 * Builds a Llama from a parsed config.json and its safetensors files held in memory
 * (one file, or every shard; a browser fetches them). The same checks as `loadLlama`:
 * every tensor present with the shape the config needs, unused tensors reported.
 */
export function llamaFromSafetensors(configJson: unknown, files: readonly SafetensorsSource[], opts: BuildOptions = {}): LlamaForCausalLM {
  const parsed = parseLlamaConfig(configJson, 'config.json');
  const config = opts.ropeScaling ? { ...parsed, ropeScaling: opts.ropeScaling } : parsed;
  const dtype = opts.dtype ?? 'f32';
  const backend = opts.backend ?? currentBackend();
  if (files.length === 0) throw new LongLoraError('llamaFromSafetensors: no safetensors files given; pass the model.safetensors bytes (or every shard)');
  const readers = files.map((f, i) => f instanceof Uint8Array || f instanceof ArrayBuffer ? SafetensorsBytes.parse(f, `safetensors file ${i + 1} of ${files.length}`) : f);
  const owner = new Map<string, SafetensorsReader>();
  for (const r of readers) {
    for (const n of r.names()) {
      const prev = owner.get(n);
      if (prev) throw new LongLoraError(`${r.path}: tensor "${n}" is also in ${prev.path}; pass each shard once`);
      owner.set(n, r);
    }
  }
  const names = [...owner.keys()];
  const created: Array<{ dispose(): void }> = [];
  try {
    const model = new LlamaForCausalLM(config, (name, shape) => {
      const r = owner.get(name);
      if (!r) throw missingTensorError(readers.length === 1 ? readers[0]!.path : 'the safetensors files', name, names);
      const info = r.info(name);
      checkFloatTensor(r.path, name, info.dtype);
      checkWeightShape(r.path, name, info.shape, shape, config, 'config.json');
      const t = fromHost(r.read(name, dtype).data, shape, dtype, backend).keep();
      t.name = name;
      created.push(t);
      return t;
    }, computeOf(dtype));
    warnUnused(model, names, 'the safetensors files', opts.onWarning);
    return model;
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
}

/**
 * An f16 copy of a weight that overflowed (a value beyond ±65504 became ±inf) is refused by
 * name; `what` says what to pick instead (loading: the dtype; export: --dtype).
 */
export function checkF16Range(bits: Uint16Array, name: string, file: string, what = 'load the model with dtype'): void {
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i]! & 0x7c00) === 0x7c00) {
      throw new LongLoraError(`${file}: tensor '${name}' has values beyond f16's range (±65504), or inf/NaN, so it cannot be stored in f16; ` +
        `${what} bf16 (same memory, f32's range) or f32`);
    }
  }
}
