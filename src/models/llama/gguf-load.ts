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
import { ggmlTypeName, ggufMetadata, ggufRopeScaling, ggufTensorData, readGgufHeader, type GgufHeader } from '../../io/gguf-read.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { writeCheckpoint } from '../../io/checkpoint.js';
import type { TensorEntry } from '../../io/safetensors.js';
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import type { RopeScaling } from '../../nn/rope.js';
import { describeRopeScaling, yarnMscale } from '../../nn/rope-scaling.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { fromHost } from '../../tensor/tensor.js';
import { llamaConfigToHF, llamaTensorShapes, parseLlamaConfig, TORCH_DTYPE, type LlamaConfig } from './config.js';
import { HF_TOKENIZER_CONFIG_KEY, HF_TOKENIZER_KEY, ggufTensorName, ropeFreqFactors, rotaryHeads, unpermuteRotary } from './gguf.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import { ggufTokenizerFiles } from '../../tokenizer/gguf-tokenizer.js';
import { computeOf, type ParamDType } from './init.js';
import { checkF16Range } from './load.js';
import { LlamaForCausalLM } from './model.js';

/**
 * The shortest decimal that rounds to the same f32: GGUF stores floats in f32, so 1e-5
 * comes back as 9.99999975e-6; config.json had the decimal.
 */
function f32Decimal(v: unknown): unknown {
  if (typeof v !== 'number' || !Number.isFinite(v)) return v;
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === Math.fround(v)) return d;
  }
  return v;
}

/** The Llama config a GGUF file's metadata describes, and its header (`known` when the caller read it already). */
export async function readGgufModel(file: string, known?: GgufHeader): Promise<{ config: LlamaConfig; header: GgufHeader }> {
  if (!fs.existsSync(file)) throw new LongLoraError(`${file} does not exist; check the path`);
  const header = known ?? await readGgufHeader(file);
  const m = ggufMetadata(header);
  const arch = String(m['general.architecture'] ?? '');
  if (!['llama', 'qwen2', 'qwen3'].includes(arch)) {
    throw new LongLoraError(`${file}: GGUF architecture "${arch}" cannot be loaded here (llama, qwen2, qwen3 can); load the Hugging Face model folder instead`);
  }
  const names = new Set(header.tensorInfos.map((t) => t.name));
  const plain = (v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v); // u64 values come back as bigint
  const key = (k: string): unknown => plain(m[`${arch}.${k}`]);
  const scaling = key('rope.scaling.type') ?? 'none';
  if (scaling !== 'none' && scaling !== 'linear' && scaling !== 'yarn') {
    throw new LongLoraError(`${file}: its RoPE scaling (${String(scaling)}) is not read from GGUF here (none, linear, yarn and Llama 3's rope_freqs are); load the model folder it was exported from`);
  }
  const num = (k: string): number | undefined => { const v = f32Decimal(key(k)); return v === undefined ? undefined : Number(v); };
  const factor = scaling === 'none' ? 1 : num('rope.scaling.factor');
  if (factor === undefined || !(factor >= 1)) throw new LongLoraError(`${file}: ${scaling} RoPE scaling needs rope.scaling.factor ≥ 1, got ${String(factor)}; export the file again`);
  const context = Number(key('context_length'));
  const headDim = Number(key('attention.key_length') ?? Number(key('embedding_length')) / Number(key('attention.head_count')));
  const theta = Number(f32Decimal(key('rope.freq_base') ?? 10000));
  let ropeScaling: Record<string, unknown> | null = null;
  if (scaling === 'linear') ropeScaling = { type: 'linear', factor };
  // As llama.cpp runs these architectures: yarn with beta_fast 32 and beta_slow 1 (their
  // yarn_beta_* and yarn_attn_factor keys are not read), cos and sin multiplied by YaRN's
  // default attention factor times rope.scaling.attn_factor.
  const attn = num('rope.scaling.attn_factor') ?? 1;
  if (attn !== 1 && scaling !== 'yarn') {
    throw new LongLoraError(`${file}: rope.scaling.attn_factor ${attn} with ${scaling} RoPE scaling is not read here (only with yarn); load the model folder it was exported from`);
  }
  if (scaling === 'yarn') {
    ropeScaling = { rope_type: 'yarn', factor, original_max_position_embeddings: key('rope.scaling.original_context_length') ?? context };
    if (attn !== 1) ropeScaling.attention_factor = Number((attn * yarnMscale(factor)).toPrecision(7));
  }
  if (names.has('rope_freqs.weight')) {
    if (scaling !== 'none') throw new LongLoraError(`${file}: it has both ${scaling} RoPE scaling and rope_freqs frequency factors; export the file again`);
    ropeScaling = llama3FromRopeFreqs(ropeFreqsOf(file, header), headDim, theta, file);
  }
  const tokens = m['tokenizer.ggml.tokens'];
  const embd = header.tensorInfos.find((t) => t.name === 'token_embd.weight');
  const vocab = embd ? Number(embd.shape[1]) : key('vocab_size') ?? (Array.isArray(tokens) ? tokens.length : undefined); // the embedding's rows first
  const json = {
    model_type: arch,
    vocab_size: vocab,
    hidden_size: key('embedding_length'),
    intermediate_size: key('feed_forward_length'),
    num_hidden_layers: key('block_count'),
    num_attention_heads: key('attention.head_count'),
    num_key_value_heads: key('attention.head_count_kv'),
    head_dim: key('attention.key_length'),
    rms_norm_eps: f32Decimal(key('attention.layer_norm_rms_epsilon')),
    rope_theta: f32Decimal(key('rope.freq_base')),
    max_position_embeddings: Number.isFinite(context) ? (scaling === 'linear' ? Math.round(context / factor) : context) : undefined,
    rope_scaling: ropeScaling,
    tie_word_embeddings: !names.has('output.weight'),
    attention_bias: arch !== 'qwen2' && names.has('blk.0.attn_q.bias'),
    bos_token_id: plain(m['tokenizer.ggml.bos_token_id']),
    eos_token_id: plain(m['tokenizer.ggml.eos_token_id']),
  };
  return { config: parseLlamaConfig(json, `${file} (GGUF metadata)`), header };
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

type ByteReader = (start: number, length: number) => Uint8Array;

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

/** The f32 values of Hugging Face tensor `name` (of `shape`) in a GGUF file: dequantised, and q and k rows back in rotate-half order. */
function hfTensorValues(file: string, header: GgufHeader, config: LlamaConfig, read: ByteReader, name: string, shape: readonly number[]): Float32Array {
  const g = ggufTensorName(name);
  const t = ggufTensorData(header, g, read);
  if (t.shape.join(',') !== shape.join(',')) throw new LongLoraError(`${file}: tensor ${g} is [${t.shape.join(', ')}], the metadata implies [${shape.join(', ')}]`);
  const heads = rotaryHeads(config, name);
  return heads > 0 ? unpermuteRotary(t.data, shape[0]!, shape[1] ?? 1, heads) : t.data;
}

/** The f32 values of a file's `rope_freqs.weight` (a few dozen, read on their own). */
function ropeFreqsOf(file: string, header: GgufHeader): Float32Array {
  return withFile(file, (read) => ggufTensorData(header, 'rope_freqs.weight', read).data);
}

/**
 * The llama3 RoPE scaling (config.json spelling) whose frequency factors are `factors`, as
 * llama.cpp's converter writes them for Llama 3.1 and later: each factor divides one
 * frequency's angle, 1 for the fast ones, `factor` for the slow ones, and a blend between.
 * GGUF keeps only the factors, and any (original length, low, high) with the same band
 * edges gives the same ones, so low_freq_factor is taken as 1 (as every Llama 3 sets it);
 * the rest is fitted from the blended frequencies (or, with fewer than two of them, Llama
 * 3's high_freq_factor 4 is assumed) and accepted only when it recomputes every factor.
 * All factors 1 is plain RoPE (null).
 */
export function llama3FromRopeFreqs(factors: Float32Array, headDim: number, theta: number, file: string): Record<string, unknown> | null {
  const fail = (why: string): never => {
    throw new LongLoraError(`${file}: its rope_freqs frequency factors ${why}, so they are not Llama 3's RoPE scaling; load the model folder it was exported from`);
  };
  if (factors.length !== headDim / 2) fail(`are ${factors.length}, not one per frequency (${headDim / 2})`);
  const f = Math.max(...factors);
  if (!factors.every((v) => v >= 1 - 1e-6)) fail('include values below 1');
  if (f <= 1 + 1e-6) return null;
  const factor = Number(f32Decimal(f));
  const inv = Array.from({ length: headDim / 2 }, (_, i) => 1 / theta ** ((2 * i) / headDim));
  // blended frequencies: s = (1/factor_i − 1/f) / (1 − 1/f) is linear in 1/λ_i = inv_i / 2π: s = (orig/λ − low) / (high − low)
  const blended = [...factors.keys()].filter((i) => factors[i]! > 1 + 1e-5 && factors[i]! < factor * (1 - 1e-5))
    .map((i) => ({ u: inv[i]! / (2 * Math.PI), s: (1 / factors[i]! - 1 / factor) / (1 - 1 / factor) }));
  const candidates: Array<{ orig: number; high: number }> = [];
  if (blended.length >= 2) {
    const n = blended.length;
    const mu = blended.reduce((a, p) => a + p.u, 0) / n;
    const ms = blended.reduce((a, p) => a + p.s, 0) / n;
    const A = blended.reduce((a, p) => a + (p.u - mu) * (p.s - ms), 0) / blended.reduce((a, p) => a + (p.u - mu) ** 2, 0);
    const B = ms - A * mu; // with low = 1: B = −1 / (high − 1), A = orig / (high − 1)
    for (const digits of [3, 6]) candidates.push({ orig: Math.round(-A / B), high: Number((1 - 1 / B).toPrecision(digits)) });
  } else if (blended.length === 1) {
    candidates.push({ orig: Math.round((1 + 3 * blended[0]!.s) / blended[0]!.u), high: 4 });
  } else {
    for (let k = 2; k <= 24; k++) candidates.push({ orig: 2 ** k, high: 4 });
  }
  for (const { orig, high } of candidates) {
    if (!(orig > 0) || !(high > 1)) continue;
    const block = { rope_type: 'llama3', factor, low_freq_factor: 1, high_freq_factor: high, original_max_position_embeddings: orig };
    const ropeScaling: RopeScaling = { type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: high, originalMaxPositionEmbeddings: orig };
    const again = ropeFreqFactors({ headDim, ropeTheta: theta, ropeScaling, maxPositionEmbeddings: orig });
    if (again.every((v, i) => Math.abs(v - factors[i]!) <= 1e-6 * factors[i]!)) return block;
  }
  return fail('follow no band of fast, blended and slow frequencies');
}

/**
 * The Hugging Face tokenizer an export carries (exportGguf's embedTokenizer), with its chat
 * template from `tokenizer.chat_template`; else, unless `rebuild` is false, the one rebuilt
 * from the file's `tokenizer.ggml.*` vocabulary (as llama.cpp's converter writes it; a
 * vocabulary it cannot rebuild is refused, naming --tokenizer); null when there is neither.
 */
export function ggufTokenizer(header: GgufHeader, file: string, opts: { rebuild?: boolean } = {}): Tokenizer | null {
  const m = ggufMetadata(header);
  const json = m[HF_TOKENIZER_KEY];
  if (typeof json !== 'string') {
    if (opts.rebuild === false) return null;
    const source = `${file} (tokenizer.ggml vocabulary)`;
    const files = ggufTokenizerFiles(m, source); // as Node's Tokenizer (tokenizerFromGguf gives the core one)
    return files && Tokenizer.fromJson(files.json, files.config, source);
  }
  const parse = (text: unknown, key: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(String(text)) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      return v as Record<string, unknown>;
    } catch (e) {
      throw new LongLoraError(`${file}: metadata ${key} is not a JSON object (${(e as Error).message}); export the file again, or pass --tokenizer DIR`);
    }
  };
  const config = m[HF_TOKENIZER_CONFIG_KEY] === undefined ? {} : parse(m[HF_TOKENIZER_CONFIG_KEY], HF_TOKENIZER_CONFIG_KEY);
  if (typeof m['tokenizer.chat_template'] === 'string') config.chat_template = m['tokenizer.chat_template'];
  return Tokenizer.fromJson(parse(json, HF_TOKENIZER_KEY), config, `${file} (embedded tokenizer)`);
}

/** Loads a GGUF file (see the header) as a model in `dtype`; `known` is readGgufModel's result when the caller has it. */
export async function loadLlamaGguf(file: string, opts: { dtype?: ParamDType; backend?: Backend; ropeScaling?: RopeScaling } = {},
  known?: Awaited<ReturnType<typeof readGgufModel>>): Promise<LlamaForCausalLM> {
  const { config: parsed, header } = known ?? await readGgufModel(file);
  const config = opts.ropeScaling ? { ...parsed, ropeScaling: opts.ropeScaling } : parsed;
  const dtype = opts.dtype ?? 'f32';
  const backend = opts.backend ?? currentBackend();
  const created: Array<{ dispose(): void }> = [];
  try {
    return withFile(file, (read) => new LlamaForCausalLM(config, (name, shape) => {
      const f32 = hfTensorValues(file, header, config, read, name, shape);
      const data = dtype === 'f32' ? f32 : dtype === 'f64' ? Float64Array.from(f32) : fromFloatArray(f32, dtype);
      if (dtype === 'f16') checkF16Range(data as Uint16Array, name, file);
      const tensor = fromHost(data, shape, dtype, backend).keep();
      tensor.name = name;
      created.push(tensor);
      return tensor;
    }, computeOf(dtype)));
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
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
  if (fs.existsSync(outDir) && (!fs.statSync(outDir).isDirectory() || fs.readdirSync(outDir).length > 0)) {
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
