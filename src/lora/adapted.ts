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
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { readJsonFile } from '../io/checkpoint.js';
import { loadAdapter, readSidecar } from '../io/peft.js';
import { loadLlama, saveLlama, type LoadOptions } from '../models/llama/load.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { parseLlamaConfig } from '../models/llama/config.js';
import { ropeScalingFromHF } from '../nn/rope-scaling.js';
import type { RopeScaling } from '../nn/rope.js';
import { Rng } from '../tensor/random.js';
import { mergeLora } from './inject.js';
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
}

function dtypeOf(torchDtype: string | null): 'f32' | 'bf16' | 'f16' {
  return torchDtype === 'bfloat16' ? 'bf16' : torchDtype === 'float16' ? 'f16' : 'f32';
}

/**
 * Merges the adapter into the base weights (in f32) and writes a standalone checkpoint:
 * safetensors, config.json with rope_scaling, and the base folder's tokenizer files. An
 * adapter trained on a 4-bit base is merged into that base, dequantised.
 */
export async function mergeAdapter(baseDir: string, adapterDir: string, outDir: string, opts: MergeOptions = {}): Promise<{ merged: number; dtype: string }> {
  if (path.resolve(outDir) === path.resolve(baseDir)) throw new LongLoraError('merge: the output folder must differ from the base model folder');
  const model = await loadWithAdapter(baseDir, adapterDir, { dtype: 'f32' });
  try {
    const merged = mergeLora(model);
    dequantizeModel(model);
    model.quantization = null;
    const dtype = opts.dtype ?? dtypeOf(model.config.torchDtype);
    await saveLlama(model, outDir, { dtype, ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}) });
    for (const f of TOKENIZER_FILES) {
      const src = path.join(baseDir, f);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(outDir, f));
    }
    return { merged, dtype };
  } finally {
    model.dispose();
  }
}
