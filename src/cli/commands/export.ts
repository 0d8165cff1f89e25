/**
 * `longlora export`: a Llama checkpoint folder (a merged model) → one GGUF file for llama.cpp
 * and ollama; or, with --adapter, a plain LoRA adapter → a GGUF LoRA for llama.cpp --lora;
 * or a GGUF file → a Hugging Face model folder (to fine-tune a model one has only as GGUF).
 */
import fs from 'node:fs';
import { LongLoraError } from '../../errors.js';
import { repoGgufFile, resolveAdapter, resolveGgufFile, resolveModel } from '../../io/hub.js';
import { exportGguf, exportGgufAdapter, GGUF_DTYPES, isQuantisedMix, type GgufDType } from '../../models/llama/gguf.js';
import { ggufToFolder } from '../../models/llama/gguf-load.js';
import { importanceFromData } from '../../models/llama/importance.js';
import { autoBackend } from '../../backend/registry.js';
import { ProgressBar } from '../../train/progress.js';
import { parse } from '../args.js';
import { intFlag } from './load-model.js';

/** The flags of importanceFlags, for a command's options. */
export const IMATRIX_OPTIONS = {
  'imatrix-data': { type: 'string', help: 'calibration text (text or JSONL files, tokenized with the model\'s tokenizer, or a .bin token file): the quantised mixes then fit each block to the error of its layer\'s output, weighted by the activations the model has on it (an importance matrix, as llama-quantize --imatrix)' },
  'imatrix-tokens': { type: 'string', help: 'about how many tokens of --imatrix-data to run the model on (default 4096)' },
  'imatrix-seq-len': { type: 'string', help: 'tokens per forward pass for --imatrix-data (default 512)' },
} as const;

const OPTIONS = {
  model: { type: 'string', help: 'model folder (config.json, safetensors, tokenizer.json; e.g. a merged LongLoRA model), or a Hub repository as org/name; or a .gguf file (local, or on the Hub as org/name/file.gguf) to convert into a Hugging Face folder (--out DIR)' },
  revision: { type: 'string', help: 'Hub branch, tag or commit (default main)' },
  out: { type: 'string', help: 'the .gguf file to write (or, from a .gguf --model, the folder to write)' },
  dtype: { type: 'string', help: 'f32, f16, bf16, q8_0 (8-bit, about half of f16), or llama.cpp\'s mixes q6_k (6.6 bits per weight), q5_k_m (5.7), q5_k_s (5.5), q4_k_m (4.8), q4_k_s (4.6), q4_0 (4.5), iq4_xs (4.3), iq4_nl (4.6), q3_k_l (4.3), q3_k_m (3.9), q3_k_s (3.5), q2_k (3.0) for the weights (default: the checkpoint\'s own; norms are always f32); converting a .gguf --model into a folder: f32, f16 or bf16 (default: the file\'s, bf16 when quantised)' },
  name: { type: 'string', help: 'general.name in the file (default: the folder\'s name)' },
  tokenizer: { type: 'string', help: 'folder of tokenizer.json (default: the model folder)' },
  adapter: { type: 'string', help: 'write this plain LoRA adapter (a --mode lora run) as a GGUF LoRA for llama.cpp --lora, on the base --model, instead of the model' },
  ...IMATRIX_OPTIONS,
} as const;

/**
 * The importance matrix `--imatrix-data` asks for (undefined without it), for an export of
 * the model in `dir` in `dtype`; `command` names the command in errors.
 */
export async function importanceFlags(v: Record<string, string | boolean | undefined>, dir: string, dtype: GgufDType | undefined, command: string, tokenizerDir?: string): Promise<ReadonlyMap<string, Float32Array> | undefined> {
  const data = v['imatrix-data'];
  if (typeof data !== 'string') return undefined;
  checkImatrixDType(dtype, command);
  return importanceFor(dir, data, intFlag(v, 'imatrix-tokens', 2) ?? 4096, intFlag(v, 'imatrix-seq-len', 2) ?? 512, command, tokenizerDir);
}

/** Refuses --imatrix-data for a dtype that is not a quantised mix. */
export function checkImatrixDType(dtype: GgufDType | undefined, command: string): void {
  if (dtype === undefined || !isQuantisedMix(dtype)) {
    throw new LongLoraError(`${command}: --imatrix-data is for the quantised mixes (q6_k … q2_k); ${command === 'merge' ? '--gguf-dtype' : '--dtype'} ${dtype ?? 'is not set'}`);
  }
}

/** The importance matrix of the model in `dir` over calibration data, with its progress on stderr. */
async function importanceFor(dir: string, data: string, tokens: number, seqLen: number, command: string, tokenizerDir: string | undefined): Promise<ReadonlyMap<string, Float32Array>> {
  if (!fs.existsSync(data)) throw new LongLoraError(`${command}: --imatrix-data ${data} does not exist`);
  const { backend } = await autoBackend();
  process.stderr.write(`importance matrix: about ${tokens.toLocaleString('en-US')} tokens of ${data} in windows of ${seqLen}, on ${backend.name}\n`);
  const r = await importanceFromData(dir, data, { seqLen, tokens, out: process.stderr, ...(tokenizerDir !== undefined ? { tokenizerDir } : {}) });
  process.stderr.write(`importance matrix: ${r.weights.size} weights, measured on ${r.tokens.toLocaleString('en-US')} tokens\n`);
  return r.weights;
}

/** The --dtype value, checked. */
export function ggufDType(v: unknown, command: string, flag = '--dtype'): GgufDType | undefined {
  if (v === undefined) return undefined;
  if (!GGUF_DTYPES.includes(v as GgufDType)) throw new LongLoraError(`${command}: ${flag} must be one of ${GGUF_DTYPES.join(', ')}, got ${String(v)}`);
  return v as GgufDType;
}

/** Exports `dir` to `out` with a progress bar on stderr and a one-line summary. */
export function exportWithProgress(dir: string, out: string, opts: { dtype?: GgufDType; name?: string; tokenizerDir?: string; importance?: ReadonlyMap<string, Float32Array> }): void {
  let bar: ProgressBar | null = null;
  const r = exportGguf(dir, out, {
    ...opts,
    onTensor: (done, total) => {
      bar ??= new ProgressBar(total, 'tensors', 0, process.stderr, 2000);
      bar.update(done);
    },
  });
  const mb = (fs.statSync(out).size / 1e6).toFixed(1);
  console.log(`wrote ${out}: ${r.tensors} tensors, weights in ${r.dtype}, ${mb} MB, context ${r.contextLength} tokens ` +
    `(llama.cpp: llama-cli -m ${out} -c 0; ollama: ollama create NAME -f ${r.modelfile}, which sets num_ctx ${r.contextLength})`);
}

/** A GGUF file → a Hugging Face folder, with a progress bar on stderr and a one-line summary. */
async function ggufToFolderWithProgress(file: string, out: string, dtype: unknown, tokenizerDir: string | undefined): Promise<void> {
  if (out.endsWith('.gguf')) {
    throw new LongLoraError(`export: ${file} is already a GGUF file; to convert it into a Hugging Face model folder, give --out a folder (e.g. --out ${file.slice(0, -'.gguf'.length)}-hf)`);
  }
  if (dtype !== undefined && dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
    throw new LongLoraError(`export: converting ${file} into a folder, --dtype must be f32, f16 or bf16 (the safetensors weights), got ${String(dtype)}`);
  }
  let bar: ProgressBar | null = null;
  const r = await ggufToFolder(file, out, {
    ...(dtype ? { dtype } : {}),
    ...(tokenizerDir !== undefined ? { tokenizerDir } : {}),
    onTensor: (done, total) => {
      bar ??= new ProgressBar(total, 'tensors', 0, process.stderr, 2000);
      bar.update(done);
    },
  });
  console.log(`wrote ${out}: a Hugging Face model folder of ${r.tensors} tensors in ${r.dtype}, config.json, and the tokenizer from ${r.tokenizer} ` +
    `(fine-tune it: longlora train --model ${out} ...)`);
}

export async function exportCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora export --model DIR --out FILE.gguf [--dtype f16] [--name NAME]\n       longlora export --model BASE_DIR --adapter RUN_DIR --out LORA.gguf   (a plain LoRA for llama.cpp --lora)\n       longlora export --model FILE.gguf --out DIR [--dtype bf16]   (a GGUF file as a Hugging Face folder)', OPTIONS);
  if (!args) return;
  const { model, out, tokenizer, name } = args.values;
  if (typeof model !== 'string') throw new LongLoraError('export: --model is required (a model folder; merge an adapter first with `longlora merge`, or pass --gguf to it)');
  if (typeof out !== 'string') throw new LongLoraError('export: --out is required (the .gguf file to write)');
  const revision = args.values.revision;
  if (model.endsWith('.gguf')) {
    const file = repoGgufFile(model) ? await resolveGgufFile(model, { ...(typeof revision === 'string' ? { revision } : {}) }) : model; // org/name/file.gguf: from the Hub
    await ggufToFolderWithProgress(file, out, args.values.dtype, typeof tokenizer === 'string' ? tokenizer : undefined);
    return;
  }
  const dtype = ggufDType(args.values.dtype, 'export');
  const dir = await resolveModel(model, { ...(typeof revision === 'string' ? { revision } : {}) });
  // A Hub snapshot's folder is named by its commit: the repository's name reads better.
  const fallbackName = dir !== model ? model.split('/').pop()! : undefined;
  const modelName = typeof name === 'string' ? name : fallbackName;
  if (typeof args.values.adapter === 'string') {
    if (dtype !== undefined && dtype !== 'f32' && dtype !== 'f16') throw new LongLoraError(`export --adapter: --dtype must be f32 or f16 for a LoRA, got ${dtype}`);
    const r = exportGgufAdapter(dir, await resolveAdapter(args.values.adapter), out, { ...(dtype ? { dtype } : {}), ...(typeof name === 'string' ? { name } : {}) });
    console.log(`wrote ${out}: ${r.layers} LoRA layers of rank ${r.rank} for the base in ${model} ` +
      `(llama.cpp: llama-cli -m BASE.gguf --lora ${out}${r.ropeFlags ? ` ${r.ropeFlags}` : ''}${r.ropeFlags ? '; the adapter was trained with that position scaling, which a LoRA file cannot carry' : ''})`);
    return;
  }
  const importance = await importanceFlags(args.values, dir, dtype, 'export', typeof tokenizer === 'string' ? tokenizer : undefined);
  exportWithProgress(dir, out, {
    ...(importance ? { importance } : {}),
    ...(dtype ? { dtype } : {}),
    ...(modelName !== undefined ? { name: modelName } : {}),
    ...(typeof tokenizer === 'string' ? { tokenizerDir: tokenizer } : {}),
  });
}
