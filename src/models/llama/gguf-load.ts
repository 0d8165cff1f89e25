/**
 * A GGUF file as a model: the inverse of exportGguf, for evaluating or running an export
 * (say a q4_k_m file's perplexity against the merged model it came from). The config comes
 * from the file's metadata (llama, qwen2 and qwen3 architectures; no RoPE scaling or
 * linear), the weights are read tensor by tensor, dequantised (F32, F16, BF16, Q8_0, Q5_0,
 * Q5_1, Q4_K, Q5_K, Q6_K) and, for the llama architecture, q and k rows are put back in
 * Hugging Face's rotate-half order. The tokenizer is the Hugging Face one an export of this
 * project embeds (ggufTokenizer); other files need a tokenizer.json beside them or
 * --tokenizer.
 */
import fs from 'node:fs';
import { LongLoraError } from '../../errors.js';
import { ggufMetadata, ggufTensorData, readGgufHeader, type GgufHeader } from '../../io/gguf-read.js';
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import type { RopeScaling } from '../../nn/rope.js';
import { fromFloatArray } from '../../tensor/dtype.js';
import { fromHost } from '../../tensor/tensor.js';
import { parseLlamaConfig, type LlamaConfig } from './config.js';
import { HF_TOKENIZER_CONFIG_KEY, HF_TOKENIZER_KEY, ggufTensorName, rotaryHeads, unpermuteRotary } from './gguf.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
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

/** The Llama config a GGUF file's metadata describes, and its header. */
export async function readGgufModel(file: string): Promise<{ config: LlamaConfig; header: GgufHeader }> {
  if (!fs.existsSync(file)) throw new LongLoraError(`${file} does not exist; check the path`);
  const header = await readGgufHeader(file);
  const m = ggufMetadata(header);
  const arch = String(m['general.architecture'] ?? '');
  if (!['llama', 'qwen2', 'qwen3'].includes(arch)) {
    throw new LongLoraError(`${file}: GGUF architecture "${arch}" cannot be loaded here (llama, qwen2, qwen3 can); load the Hugging Face model folder instead`);
  }
  const names = new Set(header.tensorInfos.map((t) => t.name));
  const plain = (v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v); // u64 values come back as bigint
  const key = (k: string): unknown => plain(m[`${arch}.${k}`]);
  const scaling = key('rope.scaling.type');
  if (names.has('rope_freqs.weight') || (scaling !== undefined && scaling !== 'none' && scaling !== 'linear')) {
    throw new LongLoraError(`${file}: its RoPE scaling (${names.has('rope_freqs.weight') ? 'rope_freqs' : String(scaling)}) is not read from GGUF here (none and linear are); load the model folder it was exported from`);
  }
  const factor = scaling === 'linear' ? Number(f32Decimal(key('rope.scaling.factor'))) : 1;
  const context = Number(key('context_length'));
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
    max_position_embeddings: Number.isFinite(context) ? Math.round(context / factor) : undefined,
    rope_scaling: scaling === 'linear' ? { type: 'linear', factor } : null,
    tie_word_embeddings: !names.has('output.weight'),
    attention_bias: arch !== 'qwen2' && names.has('blk.0.attn_q.bias'),
    bos_token_id: plain(m['tokenizer.ggml.bos_token_id']),
    eos_token_id: plain(m['tokenizer.ggml.eos_token_id']),
  };
  return { config: parseLlamaConfig(json, `${file} (GGUF metadata)`), header };
}

/**
 * The Hugging Face tokenizer an export carries (exportGguf's embedTokenizer), with its chat
 * template from `tokenizer.chat_template`; null when the file has none.
 */
export function ggufTokenizer(header: GgufHeader, file: string): Tokenizer | null {
  const m = ggufMetadata(header);
  const json = m[HF_TOKENIZER_KEY];
  if (typeof json !== 'string') return null;
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
  const fd = fs.openSync(file, 'r');
  const created: Array<{ dispose(): void }> = [];
  const read = (start: number, length: number): Uint8Array => {
    const b = Buffer.alloc(length);
    if (fs.readSync(fd, b, 0, length, start) !== length) throw new LongLoraError(`${file} ends early (truncated?); export it again`);
    return new Uint8Array(b.buffer, b.byteOffset, length);
  };
  try {
    return new LlamaForCausalLM(config, (name, shape) => {
      const g = ggufTensorName(name);
      const t = ggufTensorData(header, g, read);
      if (t.shape.join(',') !== shape.join(',')) throw new LongLoraError(`${file}: tensor ${g} is [${t.shape.join(', ')}], the metadata implies [${shape.join(', ')}]`);
      const heads = rotaryHeads(config, name);
      const f32 = heads > 0 ? unpermuteRotary(t.data, shape[0]!, shape[1] ?? 1, heads) : t.data;
      const data = dtype === 'f32' ? f32 : dtype === 'f64' ? Float64Array.from(f32) : fromFloatArray(f32, dtype);
      if (dtype === 'f16') checkF16Range(data as Uint16Array, name, file);
      const tensor = fromHost(data, shape, dtype, backend).keep();
      tensor.name = name;
      created.push(tensor);
      return tensor;
    }, computeOf(dtype));
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}
