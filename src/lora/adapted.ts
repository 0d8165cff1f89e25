/**
 * A base model with an adapter: loading the pair directly (evaluation, generation), and
 * merging it into a standalone Hugging Face checkpoint. The RoPE scaling the adapter was
 * trained with comes from its longlora.json and is written into the merged config.json
 * (the official merge script leaves it out, so its users must re-apply it by hand).
 *
 * An adapter trained on a 4-bit base (QLoRA, `--quantize nf4`) records the base's
 * fingerprint in longlora.json. By default it is loaded on the same 4-bit base, and a base
 * whose fingerprint differs is an error; merging dequantises the base and writes a normal
 * checkpoint of dequantised weights plus the LoRA updates (exactly the model that trained).
 * Any other adapter is merged one tensor at a time, so merging a model takes the memory of
 * its largest tensor, not of the model in f32.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { cardFacts, mergedCard, writeCard } from '../io/model-card.js';
import { openCheckpoint, readJsonFile, writeCheckpoint } from '../io/checkpoint.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, PREFIX, checkAdapterTensors, loadAdapter, readAdapterConfig, readSidecar } from '../io/peft.js';
import { SafetensorsFile } from '../io/safetensors.js';
import type { TensorEntry } from '../io/safetensors-format.js';
import { checkCheckpointTensor, loadLlama, saveLlama, type LoadOptions } from '../models/llama/load.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { linearLayerPaths, llamaConfigToHF, llamaTensorShapes, parseLlamaConfig, storageDType, TORCH_DTYPE } from '../models/llama/config.js';
import { fromFloatArray, type HostArray } from '../tensor/dtype.js';
import { loraScaling } from './lora.js';
import { addLoraDelta } from './delta.js';
import { ropeScalingFromHF } from '../nn/rope-scaling.js';
import type { RopeScaling } from '../nn/rope.js';
import { Rng } from '../tensor/random.js';
import { matchTargets, mergeLora } from './inject.js';
import { checkBaseFingerprint, readQuantizationRecord } from '../quant/fingerprint.js';
import { dequantizeModel } from '../quant/quantize-model.js';

/** Files besides the weights that a model folder carries and a merged model needs. */
export const TOKENIZER_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model',
  'added_tokens.json', 'chat_template.jinja', 'generation_config.json',
];

/** The RoPE scaling an adapter was trained with (from longlora.json), if it says. */
export function adapterRopeScaling(adapterDir: string, baseDir: string): RopeScaling | undefined {
  const side = readSidecar(adapterDir);
  if (!side || side.rope_scaling === undefined) return undefined;
  const cfgPath = path.join(baseDir, 'config.json');
  const cfg = parseLlamaConfig(readJsonFile(cfgPath), cfgPath);
  if (side.rope_scaling === null) return { type: 'none' };
  return ropeScalingFromHF(side.rope_scaling as Record<string, unknown>, 'rope_scaling', path.join(adapterDir, 'longlora.json'), cfg.maxPositionEmbeddings);
}

/**
 * Loads `baseDir` with the adapter in `adapterDir` applied (LoRA layers unmerged). An
 * adapter trained on a 4-bit base loads on the 4-bit base unless `opts.quantize` says
 * otherwise ('none': the unquantised base, whose fingerprint cannot be checked).
 */
export async function loadWithAdapter(baseDir: string, adapterDir: string, opts: LoadOptions = {}): Promise<LlamaForCausalLM> {
  if (!fs.existsSync(adapterDir)) throw new LongLoraError(`adapter folder ${adapterDir} does not exist`);
  const ropeScaling = opts.ropeScaling ?? adapterRopeScaling(adapterDir, baseDir);
  const record = readQuantizationRecord(readSidecar(adapterDir), path.join(adapterDir, 'longlora.json'));
  const quantize = opts.quantize ?? record?.format ?? 'none';
  const model = await loadLlama(baseDir, { ...opts, quantize, ...(ropeScaling ? { ropeScaling } : {}) });
  try {
    if (record && quantize === record.format) checkBaseFingerprint(record.base_fingerprint, model.quantization, baseDir, `the adapter in ${adapterDir}`);
    loadAdapter(model, adapterDir, { training: false, rng: new Rng(0) });
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

export interface MergeOptions {
  /** dtype of the merged weights (default: the base config's torch_dtype, else f32). */
  dtype?: 'f32' | 'bf16' | 'f16';
  maxShardBytes?: number;
  /**
   * Build the whole adapted model in memory (f32) and merge it there, as an adapter on a
   * 4-bit base always is; otherwise the checkpoint is merged one tensor at a time. The two
   * give the same tensors (up to f32 rounding of B·A). Default false.
   */
  inMemory?: boolean;
}

/**
 * Merges the adapter into the base weights (in f32) and writes a standalone checkpoint:
 * safetensors, config.json with rope_scaling, and the base folder's tokenizer files. An
 * adapter trained on a 4-bit base is merged into that base, dequantised.
 */
export async function mergeAdapter(baseDir: string, adapterDir: string, outDir: string, opts: MergeOptions = {}): Promise<{ merged: number; dtype: string }> {
  if (path.resolve(outDir) === path.resolve(baseDir)) throw new LongLoraError('merge: the output folder must differ from the base model folder');
  if (!fs.existsSync(adapterDir)) throw new LongLoraError(`adapter folder ${adapterDir} does not exist`);
  if (path.resolve(outDir) === path.resolve(adapterDir) || fs.existsSync(path.join(outDir, ADAPTER_CONFIG))) {
    throw new LongLoraError(`merge: the output folder ${outDir} holds an adapter; write the merged model to a folder of its own (e.g. ${path.join(adapterDir, 'merged')})`);
  }
  const quantized = readQuantizationRecord(readSidecar(adapterDir), path.join(adapterDir, 'longlora.json')) !== null;
  const r = opts.inMemory || quantized ? await mergeInMemory(baseDir, adapterDir, outDir, opts) : mergeStreaming(baseDir, adapterDir, outDir, opts);
  for (const f of TOKENIZER_FILES) {
    const src = path.join(baseDir, f);
    if (fs.existsSync(src)) fs.copyFileSync(src, path.join(outDir, f));
  }
  const original = (readJsonFile(path.join(baseDir, 'config.json')) as { max_position_embeddings?: unknown }).max_position_embeddings;
  writeCard(outDir, mergedCard(cardFacts(adapterDir, { self: path.basename(path.resolve(outDir)), ...(typeof original === 'number' ? { originalContext: original } : {}) })));
  return r;
}


/**
 * The merge one tensor at a time: each base tensor is read, a LoRA target gets W + s·B·A
 * (on the host, addLoraDelta), a trained
 * module (embeddings, norms) the adapter's copy, and it is written out before the next is
 * read — the memory of the largest tensor, not of the model. The adapter is checked
 * against the base first (as loading it is), so a mismatch writes nothing.
 */
function mergeStreaming(baseDir: string, adapterDir: string, outDir: string, opts: MergeOptions): { merged: number; dtype: string } {
  const configPath = path.join(baseDir, 'config.json');
  const base = parseLlamaConfig(readJsonFile(configPath), configPath);
  const ropeScaling = adapterRopeScaling(adapterDir, baseDir);
  const config = ropeScaling ? { ...base, ropeScaling } : base;
  const adapter = readAdapterConfig(adapterDir);
  const dtype = opts.dtype ?? storageDType(base.torchDtype);
  const shapes = llamaTensorShapes(config);
  const f = SafetensorsFile.open(path.join(adapterDir, ADAPTER_WEIGHTS));
  const ck = openCheckpoint(baseDir);
  try {
    const { r } = adapter.lora;
    const lora = new Set(matchTargets(linearLayerPaths(config), adapter.targetModules));
    const saved = new Set(checkAdapterTensors(f, adapter, [...lora].map((p) => [p, shapes.get(`${p}.weight`)!] as const), shapes));
    for (const [n, shape] of shapes) checkCheckpointTensor(ck, n, shape, config, configPath);
    const scaling = loraScaling(adapter.lora);
    const entries: TensorEntry[] = [...shapes].map(([n, shape]) => ({
      name: n,
      dtype,
      shape,
      data: (): HostArray => {
        let values: Float32Array;
        if (saved.has(n)) {
          values = f.read(PREFIX + n, 'f32').data as Float32Array;
        } else if (lora.has(n.slice(0, -'.weight'.length))) {
          const p = n.slice(0, -'.weight'.length);
          values = addLoraDelta(ck.read(n, 'f32').data as Float32Array, f.read(`${PREFIX}${p}.lora_B.weight`, 'f32').data as Float32Array,
            f.read(`${PREFIX}${p}.lora_A.weight`, 'f32').data as Float32Array, shape[0]!, shape[1]!, r, scaling);
        } else {
          return ck.read(n, dtype).data;
        }
        return dtype === 'f32' ? values : fromFloatArray(values, dtype);
      },
    }));
    writeCheckpoint(outDir, entries, opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {});
    writeJsonAtomic(path.join(outDir, 'config.json'), { ...llamaConfigToHF(config), torch_dtype: TORCH_DTYPE[dtype] });
    return { merged: lora.size, dtype };
  } finally {
    ck.close();
    f.close();
  }
}

/** The merge of the whole adapted model in memory (needed for a 4-bit base, which is dequantised). */
async function mergeInMemory(baseDir: string, adapterDir: string, outDir: string, opts: MergeOptions): Promise<{ merged: number; dtype: string }> {
  const model = await loadWithAdapter(baseDir, adapterDir, { dtype: 'f32' });
  try {
    const merged = mergeLora(model);
    dequantizeModel(model);
    model.quantization = null;
    const dtype = opts.dtype ?? storageDType(model.config.torchDtype);
    await saveLlama(model, outDir, { dtype, ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}) });
    return { merged, dtype };
  } finally {
    model.dispose();
  }
}
