/**
 * Model shapes for the analysis commands: named presets (the Llama-2 family, with
 * grouped-query attention for 70B) or any Hugging Face config.json (a file or a model
 * folder), reduced to the dimensions that decide compute and memory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { parseKiloInt } from '../util/text.js';
import { readJsonFile } from '../io/checkpoint.js';
import { parseLlamaConfig, type LlamaConfig } from '../models/llama/config.js';

/** What FLOPs and memory depend on. */
export interface ModelShape {
  name: string;
  /** C */
  hidden: number;
  /** I */
  intermediate: number;
  /** L */
  layers: number;
  /** H */
  heads: number;
  /** Hkv */
  kvHeads: number;
  /** D */
  headDim: number;
  /** V */
  vocab: number;
}

const llama2 = (name: string, C: number, I: number, L: number, H: number, Hkv: number): ModelShape => ({
  name, hidden: C, intermediate: I, layers: L, heads: H, kvHeads: Hkv, headDim: C / H, vocab: 32000,
});

/** The Llama-2 sizes as their Hugging Face config.json files give them. */
export const PRESETS: Record<string, ModelShape> = {
  'llama-2-7b': llama2('Llama-2 7B', 4096, 11008, 32, 32, 32),
  'llama-2-13b': llama2('Llama-2 13B', 5120, 13824, 40, 40, 40),
  'llama-2-70b': llama2('Llama-2 70B', 8192, 28672, 80, 64, 8),
};

/** The shape of a parsed config. */
export function shapeOf(c: LlamaConfig, name: string): ModelShape {
  return { name, hidden: c.hiddenSize, intermediate: c.intermediateSize, layers: c.numLayers, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, vocab: c.vocabSize };
}

/** A preset name (also 7b, 13b, 70b), a config.json, or a folder that holds one. */
export function resolveShape(spec: string): ModelShape {
  const key = spec.toLowerCase().replace(/^llama-?2-?/, 'llama-2-').replace(/^(\d+b)$/, 'llama-2-$1');
  const preset = PRESETS[key];
  if (preset) return preset;
  const file = fs.existsSync(spec) && fs.statSync(spec).isDirectory() ? path.join(spec, 'config.json') : spec;
  if (!fs.existsSync(file)) {
    throw new LongLoraError(`${spec} is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a config.json or model folder`);
  }
  return shapeOf(parseLlamaConfig(readJsonFile(file), file), path.basename(path.dirname(path.resolve(file))));
}

/** A context length: an integer, or "Nk" for N × 1024 (8k = 8192, 64k = 65536). */
export function parseLength(s: string): number {
  const n = parseKiloInt(s);
  if (n === null) throw new LongLoraError(`a context length must be an integer or Nk (e.g. 8192 or 8k), got "${s}"`);
  if (n < 1) throw new LongLoraError(`a context length must be positive, got "${s}"`);
  return n;
}
