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
import { checkFloatTensor, missingTensorError, type TensorEntry } from '../../io/safetensors.js';
import type { HostArray } from '../../tensor/dtype.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { fromHost, type Tensor } from '../../tensor/tensor.js';
import { Nf4Quantizer, isQuantizedWeight, type QuantizeMode } from '../../quant/quantize-model.js';
import '../../quant/node-hash.js'; // the 4-bit fingerprints with Node's native SHA-256
import { llamaConfigToHF, parseLlamaConfig, TORCH_DTYPE, type LlamaConfig, type StorageDType } from './config.js';
import { LlamaForCausalLM, type WeightSource } from './model.js';
import { checkF16Range, checkWeightShape, computeOf, warnUnused, type BuildOptions, type ParamDType } from './init.js';

export { randomLlama, llamaFromSafetensors, type ParamDType, type RandomInitOptions, type BuildOptions } from './init.js';

export interface LoadOptions extends BuildOptions {
  /**
   * 'nf4' stores the decoder's linear layers (q, k, v, o, gate, up, down) in 4-bit NF4 with
   * double quantisation, quantised here on the host as each tensor is read (QLoRA; the
   * output head, embeddings and norms stay in `dtype`). The model's `quantization` then
   * records the base's fingerprint. Default 'none'.
   */
  quantize?: QuantizeMode;
}

/** Throws when the checkpoint lacks tensor `name` or holds it in another shape than `shape`. */
export function checkCheckpointTensor(ck: Checkpoint, name: string, shape: readonly number[], config: LlamaConfig, configPath: string): void {
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
  checkFloatTensor(info.file, name, info.dtype);
  checkWeightShape(info.file, name, info.shape, shape, config, configPath);
}

/**
 * A weight source that reads each tensor from an opened checkpoint. With a quantizer, the
 * layers it quantises come back as 4-bit projections, and every tensor is fingerprinted
 * from its float32 values as stored (so the fingerprint does not depend on `dtype`).
 */
function checkpointSource(ck: Checkpoint, config: LlamaConfig, dtype: ParamDType, backend: Backend, configPath: string,
  quant?: Nf4Quantizer, created: Array<{ dispose(): void }> = []): WeightSource {
  const check = (name: string, shape: number[]): void => checkCheckpointTensor(ck, name, shape, config, configPath);
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
    if (dtype === 'f16') checkF16Range(data as Uint16Array, name, ck.info(name).file);
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
  if (opts.quantize !== undefined && opts.quantize !== 'none' && opts.quantize !== 'nf4') {
    throw new LongLoraError(`loadLlama: unknown quantize '${String(opts.quantize)}'; use 'nf4' (4-bit NF4, QLoRA) or 'none'`);
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
    warnUnused(model, ck.names(), dir, opts.onWarning);
    return model;
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  } finally {
    quantizer?.dispose();
    ck.close();
  }
}

const SAVE_DTYPES: ReadonlyArray<NonNullable<SaveOptions['dtype']>> = ['f32', 'bf16', 'f16'];

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
  if (opts.dtype !== undefined && !SAVE_DTYPES.includes(opts.dtype)) {
    throw new LongLoraError(`saveLlama: unknown dtype '${String(opts.dtype)}'; use one of ${SAVE_DTYPES.join(', ')}`);
  }
  const lora = model.namedParameters().filter(([n]) => /\.lora_[AB]\.weight$/.test(n));
  if (lora.length > 0) {
    throw new LongLoraError(`saveLlama: the model has LoRA adapters (e.g. ${lora[0]![0]}), which a Hugging Face model folder cannot hold; ` +
      'merge them first (mergeLora(model)) to save the adapted model, or save the adapter alone with saveAdapter');
  }
  const packed = model.namedBuffers();
  if (packed.length > 0) {
    throw new LongLoraError(`saveLlama: ${packed.length} layers (e.g. ${packed[0]![0]}) are stored in ${packed[0]![1].format}; ` +
      'dequantise them first (dequantizeModel, or `longlora merge`, which writes a normal checkpoint)');
  }
  fs.mkdirSync(dir, { recursive: true });
  const entries = await parameterEntries(model.namedParameters(), opts.dtype);
  const torchDtype = TORCH_DTYPE[entries[0]?.dtype as StorageDType] ?? 'float32';
  writeCheckpoint(dir, entries, opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {});
  writeJsonAtomic(path.join(dir, 'config.json'), { ...llamaConfigToHF(model.config), torch_dtype: torchDtype });
}
