/**
 * Building a Llama from a Hugging Face checkpoint folder (config.json + safetensors,
 * single or sharded), from random initialisation, and saving one back.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import { LongLoraError } from '../../errors.js';
import { openCheckpoint, readJsonFile, writeCheckpoint, type Checkpoint } from '../../io/checkpoint.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { missingTensorError, type TensorEntry } from '../../io/safetensors.js';
import type { HostArray } from '../../tensor/dtype.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { Rng } from '../../tensor/random.js';
import { fromHost, type Tensor } from '../../tensor/tensor.js';
import type { RopeScaling } from '../../nn/rope.js';
import { Nf4Quantizer, isQuantizedWeight, type QuantizeMode } from '../../quant/quantize-model.js';
import { llamaConfigToHF, parseLlamaConfig, type LlamaConfig } from './config.js';
import { LlamaForCausalLM, type WeightSource } from './model.js';

export type ParamDType = 'f32' | 'f64' | 'bf16' | 'f16';

export interface LoadOptions {
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
  /**
   * 'nf4' stores the decoder's linear layers (q, k, v, o, gate, up, down) in 4-bit NF4 with
   * double quantisation, quantised here on the host as each tensor is read (QLoRA; the
   * output head, embeddings and norms stay in `dtype`). The model's `quantization` then
   * records the base's fingerprint. Default 'none'.
   */
  quantize?: QuantizeMode;
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

function computeOf(dtype: ParamDType): 'f32' | 'f64' {
  return dtype === 'f64' ? 'f64' : 'f32';
}

/**
 * A weight source that reads each tensor from an opened checkpoint. With a quantizer, the
 * layers it quantises come back as 4-bit projections, and every tensor is fingerprinted
 * from its float32 values as stored (so the fingerprint does not depend on `dtype`).
 */
function checkpointSource(ck: Checkpoint, config: LlamaConfig, dtype: ParamDType, backend: Backend, configPath: string,
  quant?: Nf4Quantizer, created: Array<{ dispose(): void }> = []): WeightSource {
  const check = (name: string, shape: number[]): void => {
    if (!ck.has(name)) {
      const where = ck.files.length === 1 ? ck.files[0]! : ck.index ?? ck.dir;
      const err = missingTensorError(where, name, ck.names());
      if (name === 'lm_head.weight') {
        err.message += ' (tie_word_embeddings is false in config.json, so the checkpoint must hold the output head; ' +
          'if the model ties its embeddings, set "tie_word_embeddings": true)';
      }
      throw err;
    }
    const info = ck.info(name);
    if (info.shape.length !== shape.length || info.shape.some((s, i) => s !== shape[i])) {
      throw new LongLoraError(
        `${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}] but ${configPath} ` +
        `(${shapeReason(name, config)}) needs [${shape.join(', ')}]. ` +
        'The weights and config.json do not belong together; use the config.json that came with the weights.');
    }
  };
  const source: WeightSource = (name, shape) => {
    check(name, shape);
    let data: HostArray;
    if (quant && dtype === 'f64') {
      data = ck.read(name, 'f64').data;
      quant.plain(name, Float32Array.from(data as Float64Array), shape);
    } else if (quant) {
      const f32 = ck.read(name, 'f32').data as Float32Array;
      quant.plain(name, f32, shape);
      data = dtype === 'f32' ? f32 : fromFloatArray(f32, dtype);
    } else {
      data = ck.read(name, dtype).data;
    }
    const tensor = fromHost(data, shape, dtype, backend).keep();
    tensor.name = name;
    created.push(tensor);
    return tensor;
  };
  if (quant) {
    source.projection = (name, shape) => {
      if (!isQuantizedWeight(name)) return undefined;
      check(name, shape);
      const layer = quant.linear(name, ck.read(name, 'f32').data as Float32Array, shape);
      created.push(layer.weight);
      return layer;
    };
  }
  return source;
}

/** Loads a Llama checkpoint folder. */
export async function loadLlama(dir: string, opts: LoadOptions = {}): Promise<LlamaForCausalLM> {
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(dir)) {
    throw new LongLoraError(`${dir} does not exist; pass the folder that holds config.json and the safetensors files`);
  }
  if (!fs.statSync(dir).isDirectory()) {
    throw new LongLoraError(`${dir} is not a folder; pass the folder that holds config.json and the safetensors files`);
  }
  const parsed = parseLlamaConfig(readJsonFile(configPath), configPath);
  const config = opts.ropeScaling ? { ...parsed, ropeScaling: opts.ropeScaling } : parsed;
  const dtype = opts.dtype ?? 'f32';
  const backend = opts.backend ?? currentBackend();
  const ck = openCheckpoint(dir);
  const created: Array<{ dispose(): void }> = [];
  const quantizer = opts.quantize === 'nf4' ? new Nf4Quantizer(backend) : undefined;
  try {
    const source = checkpointSource(ck, config, dtype, backend, configPath, quantizer, created);
    const model = new LlamaForCausalLM(config, source, computeOf(dtype));
    if (quantizer) model.quantization = quantizer.info();
    const used = new Set([...model.namedParameters(), ...model.namedBuffers()].map(([n]) => n));
    const unexpected = ck.names().filter((n) => !used.has(n) && !HARMLESS.test(n) && !(n === 'lm_head.weight' && config.tieWordEmbeddings));
    if (unexpected.length > 0) {
      opts.onWarning?.(`${dir}: ${unexpected.length} tensor(s) not used by the Llama model: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', ...' : ''}`);
    }
    return model;
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  } finally {
    quantizer?.dispose();
    ck.close();
  }
}

export interface RandomInitOptions {
  seed?: number;
  /** Standard deviation of linear and embedding weights (HF initializer_range). */
  std?: number;
  dtype?: ParamDType;
  backend?: Backend;
}

/** A freshly initialised model: normal(0, std) weights, norms at 1 (as Hugging Face). */
export function randomLlama(config: LlamaConfig, opts: RandomInitOptions = {}): LlamaForCausalLM {
  const rng = new Rng(opts.seed ?? 0);
  const std = opts.std ?? 0.02;
  const dtype = opts.dtype ?? 'f32';
  const backend = opts.backend ?? currentBackend();
  return new LlamaForCausalLM(config, (name, shape) => {
    const n = shape.reduce((a, s) => a * s, 1);
    const v = new Float64Array(n);
    if (name.endsWith('norm.weight')) v.fill(1);
    else for (let i = 0; i < n; i++) v[i] = rng.normal() * std;
    const t = fromHost(fromFloatArray(v, dtype), shape, dtype, backend).keep();
    t.name = name;
    return t;
  }, computeOf(dtype));
}

export interface SaveOptions {
  /** dtype written to disk (default: each tensor's own, f64 written as f32). */
  dtype?: 'f32' | 'bf16' | 'f16';
  maxShardBytes?: number;
}

/** Host copies of the parameters, converted to the dtype to save. */
export async function parameterEntries(named: Array<[string, Tensor]>, dtype?: 'f32' | 'bf16' | 'f16'): Promise<TensorEntry[]> {
  const entries: TensorEntry[] = [];
  for (const [name, t] of named) {
    const target = dtype ?? (t.dtype === 'f64' ? 'f32' : t.dtype);
    let data: HostArray = await t.data();
    if (target !== t.dtype) data = fromFloatArray(await t.floats(), target);
    entries.push({ name, dtype: target, shape: t.shape, data });
  }
  return entries;
}

/** Writes config.json (rope_scaling included) and the weights as a Hugging Face folder. */
export async function saveLlama(model: LlamaForCausalLM, dir: string, opts: SaveOptions = {}): Promise<void> {
  const packed = model.namedBuffers();
  if (packed.length > 0) {
    throw new LongLoraError(`saveLlama: ${packed.length} layers (e.g. ${packed[0]![0]}) are stored in ${packed[0]![1].format}; ` +
      'dequantise them first (dequantizeModel, or `longlora merge`, which writes a normal checkpoint)');
  }
  fs.mkdirSync(dir, { recursive: true });
  const entries = await parameterEntries(model.namedParameters(), opts.dtype);
  const torchDtype = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' }[entries[0]?.dtype as 'f32' | 'bf16' | 'f16'] ?? 'float32';
  writeCheckpoint(dir, entries, opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {});
  writeJsonAtomic(path.join(dir, 'config.json'), { ...llamaConfigToHF(model.config), torch_dtype: torchDtype });
}
