/**
 * A GGUF file as a model: the inverse of exportGguf, for evaluating or running an export
 * (say a q4_k_m file's perplexity against the merged model it came from) or a file
 * llama.cpp made, and (ggufToFolder) as a Hugging Face folder to fine-tune. The config
 * comes from the file's metadata (llama, qwen2 and qwen3 architectures; RoPE scaling none,
 * linear, yarn, or Llama 3's frequency factors, which are read back as the llama3 scaling
 * that gives them); the weights are read tensor by tensor, dequantised (F32, F16, BF16,
 * Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) and, for the
 * llama architecture, q and k rows are put back in Hugging Face's rotate-half order. The
 * tokenizer is the Hugging Face one an export of this project embeds, else the one rebuilt
 * from the file's `tokenizer.ggml.*` vocabulary (ggufTokenizer, gguf-tokenizer.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { ggmlTypeName, ggufTensorData, type GgufHeader } from '../../io/gguf-parse.js';
import { ggufRopeScaling, readGgufHeader } from '../../io/gguf-read.js';
import { ggufLlamaConfig, ggufLora, hfTensorValues, llamaFromGgufReader, type ByteReader, type GgufLora, type GgufModelOptions } from './gguf-model.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { writeCheckpoint } from '../../io/checkpoint.js';
import type { TensorEntry } from '../../io/safetensors.js';
import { describeRopeScaling } from '../../nn/rope-scaling.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { llamaConfigToHF, llamaTensorShapes, TORCH_DTYPE, type LlamaConfig } from './config.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import { ggufTokenizerJson } from '../../tokenizer/gguf-tokenizer.js';
import { checkF16Range } from './init.js';
import type { LlamaForCausalLM } from './model.js';
import '../../quant/node-hash.js'; // the 4-bit fingerprints (quantize: 'nf4') with Node's native SHA-256

/** The Llama config a GGUF file's metadata describes, and its header (`known` when the caller read it already). */
export async function readGgufModel(file: string, known?: GgufHeader): Promise<{ config: LlamaConfig; header: GgufHeader }> {
  if (!fs.existsSync(file)) throw new LongLoraError(`${file} does not exist; check the path`);
  const header = known ?? await readGgufHeader(file);
  return { config: ggufLlamaConfig(header, file, () => withFile(file, (read) => ggufTensorData(header, 'rope_freqs.weight', read).data)), header };
}

/**
 * A GGUF file's RoPE scaling in words: as this loader reads it ("llama3 ×8 (original 8192)"
 * for Llama 3's frequency factors), else as its header names it; "none" without one.
 */
export async function describeGgufRopeScaling(file: string, header: GgufHeader): Promise<string> {
  try {
    return describeRopeScaling((await readGgufModel(file, header)).config.ropeScaling);
  } catch {
    return ggufRopeScaling(header) ?? 'none';
  }
}

/** Runs `fn` with a reader of `file`'s bytes, closing the file after; a file that ends early is named. */
function withFile<T>(file: string, fn: (read: ByteReader) => T): T {
  const fd = fs.openSync(file, 'r');
  try {
    return fn((start, length) => {
      const b = Buffer.alloc(length);
      if (fs.readSync(fd, b, 0, length, start) !== length) throw new LongLoraError(`${file} ends early (truncated?); export it again`);
      return new Uint8Array(b.buffer, b.byteOffset, length);
    });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The Hugging Face tokenizer an export carries (exportGguf's embedTokenizer), with its chat
 * template from `tokenizer.chat_template`; else, unless `rebuild` is false, the one rebuilt
 * from the file's `tokenizer.ggml.*` vocabulary (as llama.cpp's converter writes it; a
 * vocabulary it cannot rebuild is refused, naming --tokenizer); null when there is neither.
 * (tokenizerOfGguf gives the same as the browser's Tokenizer.)
 */
export function ggufTokenizer(header: GgufHeader, file: string, opts: { rebuild?: boolean } = {}): Tokenizer | null {
  const t = ggufTokenizerJson(header.metadata, file, opts);
  return t && Tokenizer.fromJson(t.json, t.config, t.source);
}

/**
 * Loads a GGUF file (see the header) as a model in `dtype`, with the GGUF LoRA adapter in
 * file `adapter` added to its weights when given; `known` is readGgufModel's result when the
 * caller has it.
 */
export async function loadLlamaGguf(file: string, opts: GgufModelOptions & { adapter?: string } = {}, known?: Awaited<ReturnType<typeof readGgufModel>>): Promise<LlamaForCausalLM> {
  const { config: parsed, header } = known ?? await readGgufModel(file);
  const config = opts.ropeScaling ? { ...parsed, ropeScaling: opts.ropeScaling } : parsed;
  const lora = opts.adapter !== undefined ? await readGgufLora(opts.adapter, config) : opts.lora;
  return withFile(file, (read) => llamaFromGgufReader(file, header, config, read, { ...opts, ...(lora ? { lora } : {}) }));
}

/** The GGUF LoRA adapter in `file` (ggufLora), for a base with config `config`. */
export async function readGgufLora(file: string, config: LlamaConfig): Promise<GgufLora> {
  if (!fs.existsSync(file)) throw new LongLoraError(`${file} does not exist; check the path`);
  const header = await readGgufHeader(file);
  return withFile(file, (read) => ggufLora(header, file, config, read));
}

/** What ggufToFolder wrote. */
export interface GgufFolderResult {
  dir: string;
  tensors: number;
  dtype: 'f32' | 'f16' | 'bf16';
  /** Where the tokenizer came from (the file's own, rebuilt, or --tokenizer's folder). */
  tokenizer: string;
}

/**
 * A GGUF file as a Hugging Face model folder (config.json, safetensors, tokenizer.json and
 * tokenizer_config.json), so that a model someone has only as GGUF can be fine-tuned,
 * merged and exported like any other: the tensors are read, dequantised and put back in
 * Hugging Face's order one at a time (the memory of the largest, not of the model), in
 * `dtype` (default: the file's f32, f16 or bf16, and bf16 for a quantised file). The
 * tokenizer is `tokenizerDir`'s, else the file's (ggufTokenizer). Nothing is written until
 * the file's config and tokenizer are read; the weights are staged and renamed, and
 * config.json comes last, so a failure leaves no folder that looks complete. `outDir` must
 * be new or empty.
 */
export async function ggufToFolder(file: string, outDir: string, opts: { dtype?: 'f32' | 'f16' | 'bf16'; tokenizerDir?: string; onTensor?: (done: number, total: number) => void } = {}): Promise<GgufFolderResult> {
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory()) throw new LongLoraError(`${outDir} is a file; pass a new folder for the converted model`);
  if (fs.existsSync(outDir) && fs.readdirSync(outDir).length > 0) {
    throw new LongLoraError(`${outDir} already exists and is not an empty folder; pass a new folder for the converted model`);
  }
  const { config, header } = await readGgufModel(file);
  const tokenizer = opts.tokenizerDir !== undefined ? Tokenizer.load(opts.tokenizerDir) : ggufTokenizer(header, file);
  if (!tokenizer) throw new LongLoraError(`${file} carries no tokenizer; pass --tokenizer DIR (the folder of the model the file was converted from)`);
  tokenizer.checkModel(config.vocabSize, file);
  const types = new Set(header.tensorInfos.filter((t) => t.shape.length > 1).map((t) => ggmlTypeName(t.dtype)));
  const plain = types.size === 1 ? ({ F32: 'f32', F16: 'f16', BF16: 'bf16' } as const)[[...types][0] as 'F32' | 'F16' | 'BF16'] : undefined;
  const dtype = opts.dtype ?? plain ?? 'bf16';
  const shapes = [...llamaTensorShapes(config)];
  let done = 0;
  withFile(file, (read) => writeCheckpoint(outDir, shapes.map(([name, shape]): TensorEntry => ({
    name,
    dtype,
    shape,
    data: () => {
      const f32 = hfTensorValues(file, header, config, read, name, shape);
      const data = dtype === 'f32' ? f32 : fromFloatArray(f32, dtype);
      if (dtype === 'f16') checkF16Range(data as Uint16Array, name, file);
      opts.onTensor?.(++done, shapes.length);
      return data;
    },
  })), { metadata: { source: path.basename(file) } }));
  tokenizer.save(outDir);
  writeJsonAtomic(path.join(outDir, 'config.json'), { ...llamaConfigToHF(config), torch_dtype: TORCH_DTYPE[dtype] });
  return { dir: outDir, tensors: shapes.length, dtype, tokenizer: tokenizer.source };
}
