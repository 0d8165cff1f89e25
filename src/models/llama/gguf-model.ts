/**
 * A GGUF file's model without Node (the browser entry loads GGUF files with it; gguf-load.ts
 * reads files in Node through it): the Llama config a header's metadata describes (llama,
 * qwen2 and qwen3 architectures; RoPE scaling none, linear, yarn, or Llama 3's frequency
 * factors, read back as the llama3 scaling that gives them), each weight's values
 * (dequantised; for the llama architecture q and k rows back in Hugging Face's rotate-half
 * order), and the model built from them (optionally with its linear layers in 4-bit NF4):
 * from a reader of the file's bytes (Node), or from the bytes, a Blob or an http(s) address
 * (llamaFromGguf).
 */
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import { LongLoraError } from '../../errors.js';
import { ggufTensorData, ggufTensorRange, parseGguf, type GgufBytes, type GgufHeader, type GgufReadOptions } from '../../io/gguf-parse.js';
import type { RopeScaling } from '../../nn/rope.js';
import { yarnMscale } from '../../nn/rope-scaling.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { fromHost, type Tensor } from '../../tensor/tensor.js';
import { llamaTensorShapes, parseLlamaConfig, type LlamaConfig } from './config.js';
import { ggufArchitecture, ggufTensorName, ropeFreqFactors, rotaryHeads, unpermuteRotary } from './gguf-layout.js';
import { checkF16Range, checkParamDType, computeOf, type ParamDType } from './init.js';
import { LlamaForCausalLM, type WeightSource } from './model.js';
import type { PackedLinear } from '../../nn/linear.js';
import { addLoraDelta } from '../../lora/delta.js';
import { Nf4Quantizer, isQuantizedWeight, type QuantizeMode } from '../../quant/quantize-model.js';

/** Reads bytes start … start + length − 1 of a GGUF file. */
export type ByteReader = (start: number, length: number) => Uint8Array;

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

/**
 * The Llama config a GGUF header's metadata describes (`file` names it in errors;
 * `ropeFreqs` reads its rope_freqs.weight, asked for only when it has one).
 */
export function ggufLlamaConfig(header: GgufHeader, file: string, ropeFreqs: () => Float32Array): LlamaConfig {
  const m = header.metadata;
  const arch = String(m['general.architecture'] ?? '');
  if (!['llama', 'qwen2', 'qwen3'].includes(arch)) {
    throw new LongLoraError(`${file}: GGUF architecture "${arch}" cannot be loaded here (llama, qwen2, qwen3 can); use the model's Hugging Face checkpoint (config.json and safetensors) instead`);
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
    ropeScaling = llama3FromRopeFreqs(ropeFreqs(), headDim, theta, file);
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
  return parseLlamaConfig(json, `${file} (GGUF metadata)`);
}

/** The f32 values of Hugging Face tensor `name` (of `shape`) in a GGUF file: dequantised, and q and k rows back in rotate-half order. */
export function hfTensorValues(file: string, header: GgufHeader, config: LlamaConfig, read: ByteReader, name: string, shape: readonly number[]): Float32Array {
  const g = ggufTensorName(name);
  const t = ggufTensorData(header, g, read);
  if (t.shape.join(',') !== shape.join(',')) throw new LongLoraError(`${file}: tensor ${g} is [${t.shape.join(', ')}], the metadata implies [${shape.join(', ')}]`);
  const heads = rotaryHeads(config, name);
  return heads > 0 ? unpermuteRotary(t.data, shape[0]!, shape[1] ?? 1, heads) : t.data;
}

/** A weight's values (hfTensorValues) with the options' LoRA adapter added, where it adapts this weight. */
function weightValues(file: string, header: GgufHeader, config: LlamaConfig, read: ByteReader, name: string, shape: readonly number[], opts: GgufModelOptions): Float32Array {
  const w = hfTensorValues(file, header, config, read, name, shape);
  const l = opts.lora?.layers.get(name);
  return l ? addLoraDelta(w, l.B, l.A, shape[0]!, shape[1]!, l.r, l.scale) : w;
}

/** A LoRA adapter in llama.cpp's GGUF format: per adapted weight (Hugging Face name), A [r, in], B [out, r] and the scale. */
export interface GgufLora {
  source: string;
  layers: Map<string, { A: Float32Array; B: Float32Array; r: number; scale: number }>;
}

/**
 * The LoRA adapter a GGUF file holds (llama.cpp's format, as exportGgufAdapter writes it and
 * llama.cpp's converter makes from PEFT adapters: `general.type` "adapter", `adapter.type`
 * "lora", `<weight>.lora_a` [r, in] and `.lora_b` [out, r] with the base's q and k row order,
 * scale `adapter.lora.alpha` / r, or 1 without an alpha, as llama.cpp applies it), for a
 * base with config `config`. What does not fit the base is refused by name.
 */
export function ggufLora(header: GgufHeader, source: string, config: LlamaConfig, read: ByteReader): GgufLora {
  const m = header.metadata;
  if (m['general.type'] !== 'adapter' || m['adapter.type'] !== 'lora') {
    throw new LongLoraError(`${source} is not a GGUF LoRA adapter (general.type ${JSON.stringify(m['general.type'] ?? null)}, adapter.type ${JSON.stringify(m['adapter.type'] ?? null)}); ` +
      'pass a LoRA adapter exported to GGUF (longlora export --adapter RUN --out lora.gguf), or a PEFT adapter folder with a model folder');
  }
  const { arch } = ggufArchitecture(config);
  if (m['general.architecture'] !== arch) throw new LongLoraError(`${source} adapts a ${String(m['general.architecture'])} model, and the base is ${arch}; pass the adapter of this base`);
  const alpha = Number(m['adapter.lora.alpha'] ?? 0);
  const shapes = llamaTensorShapes(config);
  const byGguf = new Map([...shapes.keys()].map((n) => [ggufTensorName(n), n] as const));
  const names = new Set(header.tensorInfos.map((t) => t.name));
  const layers: GgufLora['layers'] = new Map();
  for (const t of names) {
    const mm = /^(.+)\.lora_([ab])$/.exec(t);
    if (!mm) throw new LongLoraError(`${source}: tensor ${t} is no lora_a / lora_b tensor; this is no LoRA adapter llama.cpp would load`);
    if (mm[2] === 'b') continue;
    const hf = byGguf.get(mm[1]!);
    const shape = hf ? shapes.get(hf)! : undefined;
    if (!hf || shape!.length !== 2) throw new LongLoraError(`${source}: ${mm[1]} is not a linear weight of this base (its LoRA cannot be applied here); pass the adapter of this base`);
    if (!names.has(`${mm[1]}.lora_b`)) throw new LongLoraError(`${source}: ${t} has no ${mm[1]}.lora_b; export the adapter again`);
    const A = ggufTensorData(header, t, read);
    const B = ggufTensorData(header, `${mm[1]}.lora_b`, read);
    const r = A.shape[0]!;
    const [out, inn] = shape as [number, number];
    if (A.shape.join(',') !== `${r},${inn}` || B.shape.join(',') !== `${out},${r}`) {
      throw new LongLoraError(`${source}: ${mm[1]}'s lora_a is [${A.shape.join(', ')}] and lora_b [${B.shape.join(', ')}], the base's weight [${out}, ${inn}]; pass the adapter of this base`);
    }
    const heads = rotaryHeads(config, hf);
    layers.set(hf, { A: A.data, B: heads > 0 ? unpermuteRotary(B.data, out, r, heads) : B.data, r, scale: alpha ? alpha / r : 1 });
  }
  if (layers.size === 0) throw new LongLoraError(`${source} holds no LoRA tensors; export the adapter again`);
  return { source, layers };
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

/** How a GGUF model is built (loadLlamaGguf, llamaFromGguf). */
export interface GgufModelOptions {
  /** The weights' dtype (default f32; a quantised file is dequantised). */
  dtype?: ParamDType;
  backend?: Backend;
  /** Another RoPE scaling than the file's (for running it past its context). */
  ropeScaling?: RopeScaling;
  /**
   * 'nf4': the decoder's linear layers in 4-bit NF4 (QLoRA's base; each quantised as it is
   * read, from its dequantised values), the embeddings, norms and head in `dtype`; the
   * model's `quantization` then says so. Default 'none'.
   */
  quantize?: QuantizeMode;
  /** A GGUF LoRA adapter (ggufLora) added to the weights it adapts as they are read: W + scale·B·A. */
  lora?: GgufLora;
}

/** The model of a GGUF file with header `header` and config `config`, its tensors read with `read`. */
export function llamaFromGgufReader(file: string, header: GgufHeader, config: LlamaConfig, read: ByteReader, opts: GgufModelOptions = {}): LlamaForCausalLM {
  const weights = new GgufWeights(file, header, config, opts);
  try {
    for (const [name, shape] of llamaTensorShapes(config)) weights.read(name, shape, read);
    return weights.model();
  } finally {
    weights.dispose();
  }
}

/**
 * A GGUF file's weights as the model's tensors, each read and put on the backend in turn
 * (a linear layer quantised to NF4 with `quantize: 'nf4'`), then the model built of them.
 */
class GgufWeights {
  private readonly quant: Nf4Quantizer | undefined;
  private readonly tensors = new Map<string, Tensor>();
  private readonly layers = new Map<string, PackedLinear>();
  private built = false;

  constructor(private readonly file: string, private readonly header: GgufHeader, private readonly config: LlamaConfig, private readonly opts: GgufModelOptions) {
    checkParamDType(opts.dtype, file);
    this.quant = quantizerOf(opts);
  }

  /** Weights read so far. */
  get size(): number {
    return this.tensors.size + this.layers.size;
  }

  /** Reads weight `name` (of `shape`) with `read`. */
  read(name: string, shape: readonly number[], read: ByteReader): void {
    const { file, header, config, opts, quant } = this;
    if (quant && isQuantizedWeight(name)) this.layers.set(name, quant.linear(name, weightValues(file, header, config, read, name, shape, opts), shape));
    else this.tensors.set(name, weightTensor(file, header, config, read, name, shape, opts, quant));
  }

  /** The model of the weights read (with its `quantization` when quantised). */
  model(): LlamaForCausalLM {
    const taken = <T>(map: Map<string, T>, name: string): T => {
      const t = map.get(name);
      if (t === undefined) throw new LongLoraError(`${this.file}: the model asks for ${name}, which was not read`);
      return t;
    };
    const source: WeightSource = (name, shape) => {
      const t = taken(this.tensors, name);
      if (t.shape.join(',') !== shape.join(',')) throw new LongLoraError(`${this.file}: ${name} is [${t.shape.join(', ')}], the model asks for [${shape.join(', ')}]`);
      return t;
    };
    if (this.quant) source.projection = (name) => (isQuantizedWeight(name) ? taken(this.layers, name) : undefined);
    const model = new LlamaForCausalLM(this.config, source, computeOf(this.opts.dtype ?? 'f32'));
    if (this.quant) model.quantization = this.quant.info();
    this.built = true;
    return model;
  }

  /** Frees the quantiser's code books, and the weights read when no model was built of them. */
  dispose(): void {
    if (!this.built) {
      for (const t of this.tensors.values()) t.dispose();
      for (const l of this.layers.values()) l.weight.dispose();
    }
    this.quant?.dispose();
  }
}

function quantizerOf(opts: GgufModelOptions): Nf4Quantizer | undefined {
  const q = opts.quantize ?? 'none';
  if (q !== 'none' && q !== 'nf4') throw new LongLoraError(`quantize must be none or nf4, got ${String(q)}`);
  return q === 'nf4' ? new Nf4Quantizer(opts.backend ?? currentBackend()) : undefined;
}

/** Weight `name` of a GGUF file as a tensor on the backend, in the options' dtype (recorded in the 4-bit fingerprint when `quant`). */
function weightTensor(file: string, header: GgufHeader, config: LlamaConfig, read: ByteReader, name: string, shape: readonly number[], opts: GgufModelOptions, quant?: Nf4Quantizer): Tensor {
  const dtype = opts.dtype ?? 'f32';
  const f32 = weightValues(file, header, config, read, name, shape, opts);
  quant?.plain(name, f32, shape);
  const data = dtype === 'f32' ? f32 : dtype === 'f64' ? Float64Array.from(f32) : fromFloatArray(f32, dtype);
  if (dtype === 'f16') checkF16Range(data as Uint16Array, name, file);
  const tensor = fromHost(data, [...shape], dtype, opts.backend ?? currentBackend()).keep();
  tensor.name = name;
  return tensor;
}

/** A model built from a GGUF file's bytes (llamaFromGguf). */
export interface GgufModel {
  model: LlamaForCausalLM;
  config: LlamaConfig;
  /** The file's metadata (its tokenizer among it: tokenizerOfGguf(metadata, source) in browser-text.ts). */
  metadata: Record<string, unknown>;
  /** What errors call the file: `source`, the address, or "the GGUF file". */
  source: string;
}

/**
 * A GGUF file as a model, from its bytes: a Uint8Array or ArrayBuffer in memory, a Blob (a
 * File a page was given), or an http(s) address (Hugging Face's
 * `https://huggingface.co/ORG/NAME/resolve/main/FILE.gguf`; `headers` for a gated one), of
 * which the header and then each weight are read, one at a time (`onTensor` counts them),
 * and put on the backend before the next is read: the memory of the model and of one
 * weight's bytes, not of the file. `source` names the file in errors. The browser entry's
 * way to run a llama.cpp model; Node reads files with loadLlamaGguf.
 */
export async function llamaFromGguf(bytes: GgufBytes, opts: GgufModelOptions & GgufReadOptions & { source?: string; onTensor?: (done: number, total: number) => void; adapter?: GgufBytes } = {}): Promise<GgufModel> {
  const file = await parseGguf(bytes, opts.source, opts);
  const { header, source } = file;
  const has = (name: string): boolean => header.tensorInfos.some((t) => t.name === name);
  /** A reader of the one range `name` takes, read ahead (the tensor code reads synchronously). */
  const rangeOf = async (name: string): Promise<ByteReader> => {
    const r = ggufTensorRange(header, name);
    const b = await file.read(r.start, r.length);
    return (start, length) => {
      if (start !== r.start || length !== r.length) throw new LongLoraError(`${source}: tensor ${name} read at an unexpected range (${start}, ${length})`);
      return b;
    };
  };
  const freqs = has('rope_freqs.weight') ? ggufTensorData(header, 'rope_freqs.weight', await rangeOf('rope_freqs.weight')).data : null;
  const parsed = ggufLlamaConfig(header, source, () => freqs!);
  const config = opts.ropeScaling ? { ...parsed, ropeScaling: opts.ropeScaling } : parsed;
  if (opts.adapter !== undefined) opts = { ...opts, lora: await ggufLoraFrom(opts.adapter, config, opts) };
  const shapes = [...llamaTensorShapes(config)];
  const weights = new GgufWeights(source, header, config, opts);
  try {
    for (const [name, shape] of shapes) {
      const g = ggufTensorName(name);
      if (!has(g)) throw new LongLoraError(`${source} has no tensor "${g}" (${name}), which its metadata implies; it is no complete Llama file, or not one read here`);
      weights.read(name, shape, await rangeOf(g));
      opts.onTensor?.(weights.size, shapes.length);
    }
    return { model: weights.model(), config, metadata: header.metadata, source };
  } finally {
    weights.dispose();
  }
}

/** The GGUF LoRA adapter (ggufLora) in `bytes` (bytes, a Blob or an address), for a base with config `config`. */
export async function ggufLoraFrom(bytes: GgufBytes, config: LlamaConfig, opts: GgufReadOptions = {}): Promise<GgufLora> {
  const source = typeof bytes === 'string' || bytes instanceof URL ? String(bytes) : typeof File !== 'undefined' && bytes instanceof File ? bytes.name : 'the GGUF adapter';
  const file = await parseGguf(bytes, source, opts);
  const chunks = new Map<number, Uint8Array>();
  for (const t of file.header.tensorInfos) {
    const r = ggufTensorRange(file.header, t.name);
    chunks.set(r.start, await file.read(r.start, r.length));
  }
  return ggufLora(file.header, source, config, (start) => chunks.get(start)!);
}
