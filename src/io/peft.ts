/**
 * Hugging Face PEFT LoRA adapter folders on disk: `adapter_config.json`,
 * `adapter_model.safetensors`, `trainable_params.safetensors` and `longlora.json`. The
 * format itself (names, config checks, collecting and applying an adapter), shared with
 * the browser build, is in peft-format.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import type { LoraRuntime } from '../lora/lora.js';
import type { Module } from '../nn/module.js';
import { writeJsonAtomic } from './atomic.js';
import { readJsonFile } from './checkpoint.js';
import { SafetensorsFile, writeSafetensors } from './safetensors.js';
import {
  ADAPTER_CONFIG, ADAPTER_WEIGHTS, LONGLORA_JSON, TRAINABLE_PARAMS, adapterWeights, applyAdapter, collectAdapter,
  parseAdapterConfig, type AdapterConfig, type AdapterFiles, type SaveAdapterOptions,
} from './peft-format.js';

export * from './peft-format.js';

/** Reads and checks `adapter_config.json`; refuses LoRA variants this code does not compute. */
export function readAdapterConfig(dir: string): AdapterConfig {
  const file = path.join(dir, ADAPTER_CONFIG);
  if (fs.existsSync(dir) && fs.statSync(dir).isFile()) {
    throw new LongLoraError(/\.gguf$/i.test(dir)
      ? `${dir} is a GGUF file: a GGUF LoRA applies to a GGUF base (--model FILE.gguf); with a model folder, pass the adapter's folder (adapter_config.json and adapter_model.safetensors)`
      : `${dir} is a file; an adapter is a folder with ${ADAPTER_CONFIG} (a \`longlora train\` output folder)`);
  }
  if (fs.existsSync(dir) && !fs.existsSync(file)) {
    const model = fs.existsSync(path.join(dir, 'config.json'));
    throw new LongLoraError(`${dir} has no ${ADAPTER_CONFIG}, so it is not an adapter (a \`longlora train\` output folder)${model ? '; it holds a model (config.json): pass it as the base model instead' : ''}`);
  }
  return parseAdapterConfig(readJsonFile(file), file);
}

/** Writes collected adapter files into `dir` (each file atomically). */
export function writeAdapter(dir: string, files: AdapterFiles): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), adapterWeights(files), { format: 'pt' });
  if (files.extras.length > 0) writeSafetensors(path.join(dir, TRAINABLE_PARAMS), files.extras, { format: 'pt' });
  writeJsonAtomic(path.join(dir, ADAPTER_CONFIG), files.config);
  writeJsonAtomic(path.join(dir, LONGLORA_JSON), files.sidecar);
}

/**
 * Writes a PEFT adapter folder for a model with LoRA layers: adapter_config.json,
 * adapter_model.safetensors, trainable_params.safetensors (when there are extras) and
 * longlora.json. Files are written under temporary names and renamed.
 */
export async function saveAdapter(model: Module, dir: string, opts: SaveAdapterOptions): Promise<void> {
  writeAdapter(dir, await collectAdapter(model, opts));
}

/** Reads longlora.json of an adapter folder, or null when it has none (a plain PEFT adapter). */
export function readSidecar(dir: string): Record<string, unknown> | null {
  const file = path.join(dir, LONGLORA_JSON);
  return fs.existsSync(file) ? (readJsonFile(file) as Record<string, unknown>) : null;
}

/**
 * Puts a PEFT adapter folder into a model (see `applyAdapter`): everything is checked
 * before the model is touched, so a bad adapter leaves it as it was.
 */
export function loadAdapter(model: Module, dir: string, runtime: LoraRuntime): { config: AdapterConfig; replaced: string[] } {
  const config = readAdapterConfig(dir);
  const file = path.join(dir, ADAPTER_WEIGHTS);
  if (!fs.existsSync(file)) throw new LongLoraError(`${dir}: no ${ADAPTER_WEIGHTS}; this does not look like a PEFT adapter folder`);
  const f = SafetensorsFile.open(file);
  try {
    return applyAdapter(model, config, f, runtime, dir);
  } finally {
    f.close();
  }
}
