/**
 * Exporting a Llama checkpoint folder (a merged LongLoRA model, or any HF Llama or Mistral) as one
 * GGUF file for llama.cpp and ollama (SPEC §7). A LongLoRA adapter cannot go to GGUF as a
 * LoRA (llama.cpp rejects trained embeddings), so the merged model is what is exported.
 *
 * The tensors are streamed from the checkpoint one at a time: HF names become GGUF names,
 * for llama.cpp's llama architecture (Llama, Mistral) q and k rows are permuted from HF's
 * rotate-half RoPE layout to its interleaved pairs (its qwen2 architecture rotates halves,
 * so Qwen 2 goes as it is), 1-D tensors (norms, biases) are stored in f32, the rest in the
 * chosen dtype. The RoPE
 * scaling the model was fine-tuned with goes into the metadata (linear: type and factor;
 * yarn: its parameters; llama3: the `rope_freqs` tensor), and the context length written
 * is the one the scaling covers, so llama.cpp's default context is the extended one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { writeBytesAtomic } from '../../io/atomic.js';
import { openCheckpoint, readJsonFile } from '../../io/checkpoint.js';
import { ADAPTER_WEIGHTS, PREFIX, TRAINABLE_PARAMS, checkAdapterTensors, readAdapterConfig } from '../../io/peft.js';
import { adapterRopeScaling } from '../../lora/adapted.js';
import { matchTargets } from '../../lora/inject.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { writeGguf, type GgmlType, type GgufTensor, type GgufValue } from '../../io/gguf.js';
import { BLOCKS, QK_K, type QuantType } from '../../io/ggml-quants.js';
import { QuantPool } from '../../io/quant-pool.js';
import { ropeContextLength, yarnAttentionFactor, yarnMscale, type RopeScaling } from '../../nn/rope-scaling.js';
import { type HostArray } from '../../tensor/dtype.js';
import { ggufVocab } from '../../tokenizer/gguf-vocab.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import { linearLayerPaths, llamaTensorShapes, parseLlamaConfig, storageDType, type LlamaConfig } from './config.js';
import { checkCheckpointTensor } from './load.js';
import { checkF16Range } from './init.js';
import { HF_TOKENIZER_CONFIG_KEY, HF_TOKENIZER_KEY, ggufArchitecture, ggufTensorName, permuteRotary, ropeFreqFactors, rotaryHeads } from './gguf-layout.js';

/**
 * Storage of the 2-D weights: a float type; ggml's 8-bit Q8_0; or one of llama.cpp's
 * mixes as its quantize tool makes them without an importance matrix (ggufWeightType):
 * Q6_K (6.56 bits per weight); Q5_K_M and Q4_K_M (5- or 4-bit, with Q6_K for the output
 * layer and for the attention values and MLP down projections of some layers); Q5_K_S and
 * Q4_K_S (smaller: only the output layer in Q6_K, and in Q4_K_S a few early layers in
 * Q5_K); Q4_0; IQ4_XS and IQ4_NL (4-bit on non-uniform levels); Q3_K_L, Q3_K_M, Q3_K_S and
 * Q2_K (3- and 2-bit, with more bits for some attention and MLP projections; 4.27 to 3.01
 * bits per weight).
 */
export type GgufDType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q6_k' | 'q5_k_m' | 'q5_k_s' | 'q4_k_m' | 'q4_k_s' | 'q4_0' | 'iq4_xs' | 'iq4_nl' |
  'q3_k_l' | 'q3_k_m' | 'q3_k_s' | 'q2_k';
export const GGUF_DTYPES: readonly GgufDType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q6_k', 'q5_k_m', 'q5_k_s', 'q4_k_m', 'q4_k_s', 'q4_0', 'iq4_xs', 'iq4_nl',
  'q3_k_l', 'q3_k_m', 'q3_k_s', 'q2_k'];

export interface GgufExportOptions {
  /** Storage of the 2-D weights (default: the checkpoint's own, from config.json's torch_dtype). */
  dtype?: GgufDType;
  /** general.name (default: the folder's name). */
  name?: string;
  /** Folder of tokenizer.json (default: the model folder). */
  tokenizerDir?: string;
  /** Called after each tensor is written. */
  onTensor?: (done: number, total: number, name: string) => void;
  /** Also write `<file without .gguf>.Modelfile` for ollama (default true; see ollamaModelfile). */
  modelfile?: boolean;
  /** Threads that quantise (q8_0 and the k-quants), the calling one included (default: the machine's parallelism). */
  threads?: number;
  /**
   * Also store the Hugging Face tokenizer itself (default true): tokenizer.json under the
   * GGUF spec's `tokenizer.huggingface.json`, tokenizer_config.json under
   * `longlora.tokenizer_config`, so that the file alone is enough to evaluate or run it
   * here (llama.cpp reads its own `tokenizer.ggml.*` keys and ignores these). A
   * tokenizer.json over EMBED_TOKENIZER_MAX_BYTES is left out.
   */
  embedTokenizer?: boolean;
  /**
   * An importance matrix (importanceMatrix): per 2-D weight (Hugging Face name), the mean
   * square of each input column's activations; the quantisers then fit each block to the
   * error of the layer's output rather than of its weights. Tensors it lacks are quantised
   * as without one.
   */
  importance?: ReadonlyMap<string, Float32Array>;
}

/**
 * The largest embedded tokenizer string, in UTF-8 bytes: Hugging Face's GGUF parser (which
 * `info`, the model cards and loading here use) refuses strings over 10 MB, so a larger
 * tokenizer.json (Llama 3's is about 9 MB) is left out rather than make the file unreadable.
 */
export const EMBED_TOKENIZER_MAX_BYTES = 8_000_000;

/** The embedded tokenizer's metadata, or none when it is larger than `maxBytes`. */
export function embeddedTokenizer(tok: Tokenizer, maxBytes = EMBED_TOKENIZER_MAX_BYTES): Array<[string, GgufValue]> {
  const { chat_template: _, ...config } = tok.config; // the template goes as tokenizer.chat_template
  const json = JSON.stringify(tok.json);
  const cfg = JSON.stringify(config);
  if (Buffer.byteLength(json) > maxBytes || Buffer.byteLength(cfg) > maxBytes) return [];
  return [[HF_TOKENIZER_KEY, str(json)], [HF_TOKENIZER_CONFIG_KEY, str(cfg)]];
}

export interface GgufExportResult {
  file: string;
  tensors: number;
  dtype: GgufDType;
  contextLength: number;
  /** The ollama Modelfile written beside it, or null. */
  modelfile: string | null;
}

/**
 * An ollama Modelfile for a GGUF file: FROM it and num_ctx set to the model's context.
 * ollama does not take the context from the file (its default is a few thousand tokens),
 * so a long-context model run without this would be cut short.
 */
export function ollamaModelfile(ggufFile: string, contextLength: number): string {
  const name = path.basename(ggufFile, '.gguf');
  return [
    `# ollama create ${name} -f ${name}.Modelfile   (then: ollama run ${name})`,
    `FROM ./${path.basename(ggufFile)}`,
    `PARAMETER num_ctx ${contextLength}`,
    '',
  ].join('\n');
}

/** general.file_type (llama_ftype): all f32, mostly f16, mostly bf16, mostly Q8_0, and the k-quant mixes. */
const FILE_TYPE: Record<GgufDType, number> = {
  f32: 0, f16: 1, bf16: 32, q8_0: 7, q6_k: 18, q5_k_m: 17, q5_k_s: 16, q4_k_m: 15, q4_k_s: 14, q4_0: 2, iq4_xs: 30, iq4_nl: 25,
  q3_k_l: 13, q3_k_m: 12, q3_k_s: 11, q2_k: 10,
};

/** llama.cpp's layers that get more bits in its _M mixes: the first and last eighth, and every third between. */
function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/** The 32-value type llama.cpp's quantize tool takes for a row that is not a whole number of 256-value blocks. */
const FALLBACK: Partial<Record<QuantType, QuantType>> = { Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0', IQ4_XS: 'IQ4_NL' };

/**
 * `type`, or what llama.cpp's quantize tool falls back to when a row (the last dimension)
 * is not a whole number of its blocks: Q2_K and Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1,
 * Q6_K → Q8_0, IQ4_XS → IQ4_NL, and f16 when even 32 does not divide it.
 */
function withFallback(type: QuantType, cols: number): GgmlType {
  const t = cols % BLOCKS[type][0] === 0 ? type : FALLBACK[type] ?? type;
  return cols % BLOCKS[t][0] === 0 ? t : 'F16';
}

/** llama.cpp's 70B rule applies to a llama-architecture model with 80 layers and grouped-query attention (Llama 2 and 3 70B). */
function isLlama70B(c: LlamaConfig): boolean {
  return ggufArchitecture(c).arch === 'llama' && c.numLayers === 80 && c.numHeads !== c.numKvHeads;
}

/** The type most 2-D weights of a quantised mix get (llama.cpp's default type for the file type). */
const MIX_BASE: Partial<Record<GgufDType, QuantType>> = {
  q5_k_m: 'Q5_K', q5_k_s: 'Q5_K', q4_k_m: 'Q4_K', q4_k_s: 'Q4_K', q4_0: 'Q4_0', iq4_xs: 'IQ4_XS', iq4_nl: 'IQ4_NL',
  q3_k_l: 'Q3_K', q3_k_m: 'Q3_K', q3_k_s: 'Q3_K', q2_k: 'Q2_K',
};

/** Whether `dtype` is one of llama.cpp's quantised mixes, whose fits an importance matrix can weigh (q6_k … q2_k; not the float types or q8_0). */
export function isQuantisedMix(dtype: GgufDType): boolean {
  return dtype === 'q6_k' || MIX_BASE[dtype] !== undefined;
}

/**
 * The ggml type of tensor `name` (a Hugging Face name, of shape `shape`) in a `dtype`
 * export. 1-D tensors are f32. The mixes follow llama.cpp's quantize tool
 * (llama-quant.cpp, without an importance matrix): the mix's base type (MIX_BASE) for the
 * 2-D weights, except the output layer (or the embeddings, when they are tied to it) in
 * Q6_K, and per mix (layer l of n; "gqa" is query heads per kv head):
 *
 * - q5_k_m, q4_k_m: v_proj and down_proj in Q6_K in the layers useMoreBits picks;
 * - q4_k_s: v_proj of the first 4 layers and down_proj of the first n/8 in Q5_K;
 * - q3_k_m: v_proj Q5_K in the first 2 layers and Q4_K after, down_proj Q5_K in the first
 *   n/16 and Q4_K after, o_proj Q4_K; q3_k_l: all three Q5_K;
 * - q2_k: v_proj Q3_K (Q4_K with gqa ≥ 4), down_proj and o_proj Q3_K;
 * - iq4_xs, iq4_nl: v_proj Q5_K with gqa ≥ 4, down_proj Q5_K in the first n/8;
 * - in a Llama 70B, v_proj in Q5_K where it would be Q3_K or Q4_K (shared by 8 query heads,
 *   and small).
 *
 * q6_k and q8_0 are that type throughout. Rows of an awkward length fall back as
 * llama.cpp's do.
 */
export function ggufWeightType(dtype: GgufDType, name: string, shape: readonly number[], c: LlamaConfig): GgmlType {
  if (shape.length === 1) return 'F32';
  const cols = shape.at(-1)!;
  switch (dtype) {
    case 'f32': return 'F32';
    case 'f16': return 'F16';
    case 'bf16': return 'BF16';
    case 'q8_0': return withFallback('Q8_0', cols);
    case 'q6_k': return withFallback('Q6_K', cols);
  }
  const output = name === 'lm_head.weight' || (c.tieWordEmbeddings && name === 'model.embed_tokens.weight');
  if (output) return cols % QK_K === 0 ? 'Q6_K' : withFallback('Q8_0', cols);
  let type = MIX_BASE[dtype]!;
  const m = /^model\.layers\.(\d+)\.(self_attn\.v_proj|self_attn\.o_proj|mlp\.down_proj)\.weight$/.exec(name);
  if (!m) return withFallback(type, cols);
  const [layer, n, gqa] = [Number(m[1]), c.numLayers, c.numHeads / c.numKvHeads];
  const part = m[2] === 'self_attn.v_proj' ? 'v' : m[2] === 'self_attn.o_proj' ? 'o' : 'down';
  const more = useMoreBits(layer, n) ? 'Q6_K' : undefined; // the _M mixes' favoured layers
  const iq4 = { v: gqa >= 4 ? 'Q5_K' : undefined, down: layer < Math.floor(n / 8) ? 'Q5_K' : undefined, o: undefined } as const;
  const rules: Partial<Record<GgufDType, Record<typeof part, QuantType | undefined>>> = {
    q5_k_m: { v: more, down: more, o: undefined },
    q4_k_m: { v: more, down: more, o: undefined },
    q4_k_s: { v: layer < 4 ? 'Q5_K' : undefined, down: layer < Math.floor(n / 8) ? 'Q5_K' : undefined, o: undefined },
    q3_k_m: { v: layer < 2 ? 'Q5_K' : 'Q4_K', down: layer < Math.floor(n / 16) ? 'Q5_K' : 'Q4_K', o: 'Q4_K' },
    q3_k_l: { v: 'Q5_K', down: 'Q5_K', o: 'Q5_K' },
    q2_k: { v: gqa >= 4 ? 'Q4_K' : 'Q3_K', down: 'Q3_K', o: 'Q3_K' },
    iq4_xs: iq4,
    iq4_nl: iq4,
  };
  type = rules[dtype]?.[part] ?? type;
  if (part === 'v' && (type === 'Q3_K' || type === 'Q4_K') && isLlama70B(c)) type = 'Q5_K';
  return withFallback(type, cols);
}

/**
 * The context the model runs exactly: what its RoPE scaling covers, and no more than a
 * Mistral sliding window (llama.cpp's llama architecture attends to the whole context, as
 * Mistral does only within its window).
 */
export function ggufContextLength(c: LlamaConfig): number {
  const ctx = ropeContextLength(c.ropeScaling, c.maxPositionEmbeddings);
  return c.slidingWindow === null ? ctx : Math.min(ctx, c.slidingWindow);
}

function u32(value: number): GgufValue { return { type: 'u32', value }; }
function f32(value: number): GgufValue { return { type: 'f32', value }; }
function str(value: string): GgufValue { return { type: 'string', value }; }

/** The `general.*` metadata and the architecture's (`llama.*`, `qwen2.*`) of a config. */
export function llamaGgufMetadata(c: LlamaConfig, name: string, dtype: GgufDType): Array<[string, GgufValue]> {
  const { arch } = ggufArchitecture(c);
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', str(arch)],
    ['general.type', str('model')],
    ['general.name', str(name)],
    ['general.file_type', u32(FILE_TYPE[dtype])],
    ['general.quantization_version', u32(2)],
    [`${arch}.vocab_size`, u32(c.vocabSize)],
    [`${arch}.context_length`, u32(ggufContextLength(c))],
    [`${arch}.embedding_length`, u32(c.hiddenSize)],
    [`${arch}.feed_forward_length`, u32(c.intermediateSize)],
    [`${arch}.block_count`, u32(c.numLayers)],
    [`${arch}.attention.head_count`, u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(c.numKvHeads)],
    [`${arch}.attention.key_length`, u32(c.headDim)],
    [`${arch}.attention.value_length`, u32(c.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps)],
    [`${arch}.rope.dimension_count`, u32(c.headDim)],
    [`${arch}.rope.freq_base`, f32(c.ropeTheta)],
  ];
  const s = c.ropeScaling;
  switch (s.type) {
    case 'none':
    case 'llama3': // carried by the rope_freqs tensor
      break;
    case 'linear':
      meta.push([`${arch}.rope.scaling.type`, str('linear')], [`${arch}.rope.scaling.factor`, f32(s.factor)]);
      break;
    case 'yarn': {
      // llama.cpp's llama, qwen2 and qwen3 models take beta_fast 32 and beta_slow 1 and round
      // the blend's range to whole dimensions whatever a file says, so anything else would
      // run differently there.
      const off = [(s.betaFast || 32) !== 32 && `beta_fast ${s.betaFast}`, (s.betaSlow || 1) !== 1 && `beta_slow ${s.betaSlow}`,
        s.truncate === false && 'truncate false'].filter(Boolean);
      if (off.length) {
        throw new LongLoraError(`the model's yarn RoPE scaling sets ${off.join(', ')}, which llama.cpp does not apply to ${arch} models (it uses beta_fast 32, beta_slow 1, truncate true); ` +
          'the GGUF file would not run as the model does: fine-tune with those yarn defaults, or with linear interpolation (the LongLoRA default), to export to GGUF');
      }
      meta.push(
        [`${arch}.rope.scaling.type`, str('yarn')],
        [`${arch}.rope.scaling.factor`, f32(s.factor)],
        [`${arch}.rope.scaling.original_context_length`, u32(s.originalMaxPositionEmbeddings ?? c.maxPositionEmbeddings)],
      );
      // llama.cpp multiplies cos and sin by YaRN's default 0.1·ln(factor) + 1 and then by
      // rope.scaling.attn_factor (it reads no yarn_attn_factor for these models), so another
      // attention factor (an explicit one, or mscale / mscale_all_dim) goes there as the ratio.
      const ratio = yarnAttentionFactor(s) / yarnMscale(s.factor);
      if (ratio !== 1) meta.push([`${arch}.rope.scaling.attn_factor`, f32(ratio)]);
      break;
    }
    case 'dynamic':
      throw new LongLoraError('the model uses dynamic NTK RoPE scaling, which llama.cpp does not implement; ' +
        'fine-tune with linear interpolation (the LongLoRA default) or yarn to export to GGUF');
  }
  return meta;
}

function bytesOf(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Writes the Llama checkpoint in `modelDir` (config.json, safetensors, tokenizer.json) to
 * `outFile` as GGUF. Nothing is written until the checkpoint, config and tokenizer have
 * been checked; the file appears only when complete.
 */
export function exportGguf(modelDir: string, outFile: string, opts: GgufExportOptions = {}): GgufExportResult {
  if (!outFile.endsWith('.gguf')) throw new LongLoraError(`GGUF export: the output file must end in .gguf, got ${outFile}`);
  const configPath = path.join(modelDir, 'config.json');
  const config = parseLlamaConfig(readJsonFile(configPath), configPath);
  const dtype = opts.dtype ?? storageDType(config.torchDtype);
  if (!GGUF_DTYPES.includes(dtype)) throw new LongLoraError(`GGUF export: dtype must be ${GGUF_DTYPES.join(', ')}, got ${String(dtype)}`);
  const name = opts.name ?? path.basename(path.resolve(modelDir));
  const meta = llamaGgufMetadata(config, name, dtype);
  const tok = Tokenizer.load(opts.tokenizerDir ?? modelDir);
  meta.push(...ggufVocab(tok, config.vocabSize));
  if (opts.embedTokenizer !== false) meta.push(...embeddedTokenizer(tok));

  const ck = openCheckpoint(modelDir);
  let pool = null as QuantPool | null; // (set inside the tensors' byte producers)
  try {
    const shapes = llamaTensorShapes(config);
    for (const [n, shape] of shapes) checkCheckpointTensor(ck, n, shape, config, configPath);
    const tensors: GgufTensor[] = [];
    if (config.ropeScaling.type === 'llama3') {
      const factors = ropeFreqFactors(config);
      tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], type: 'F32', bytes: () => bytesOf(factors) });
    }
    for (const [n, shape] of shapes) {
      const type = ggufWeightType(dtype, n, shape, config);
      const heads = rotaryHeads(config, n);
      tensors.push({
        name: ggufTensorName(n),
        shape,
        type,
        bytes: () => {
          const plain = type === 'F32' ? 'f32' : type === 'F16' ? 'f16' : type === 'BF16' ? 'bf16' : null;
          let data = ck.read(n, plain ?? 'f32').data;
          if (plain === 'f16') checkF16Range(data as Uint16Array, n, ck.info(n).file, 'export with --dtype');
          if (heads > 0) data = permuteRotary(data, shape[0]!, shape[1] ?? 1, heads);
          if (plain) return bytesOf(data);
          try {
            pool ??= new QuantPool(opts.threads); // started by the first block-quantised tensor
            const imp = opts.importance?.get(n);
            if (imp && imp.length !== shape[1]) throw new LongLoraError(`GGUF export: the importance of ${n} has ${imp.length} columns, the tensor ${shape[1]}; compute it for this model`);
            return pool.quantize(type as QuantType, data as Float32Array, imp ? { weights: imp } : undefined);
          } catch (e) {
            throw e instanceof LongLoraError ? new LongLoraError(`${n} in ${ck.info(n).file}: ${e.message}`) : e;
          }
        },
      });
    }
    writeGguf(outFile, meta, tensors, (i, t) => opts.onTensor?.(i + 1, tensors.length, t.name));
    const contextLength = ggufContextLength(config);
    let modelfile: string | null = null;
    if (opts.modelfile !== false) {
      modelfile = outFile.replace(/\.gguf$/, '.Modelfile');
      writeBytesAtomic(modelfile, ollamaModelfile(outFile, contextLength));
    }
    return { file: outFile, tensors: tensors.length, dtype, contextLength, modelfile };
  } finally {
    pool?.dispose();
    ck.close();
  }
}

export interface GgufAdapterResult {
  file: string;
  /** Adapted weights (pairs of lora_a / lora_b tensors). */
  layers: number;
  rank: number;
  /** What llama.cpp needs to be told about positions (the adapter cannot carry it), or ''. */
  ropeFlags: string;
}

/** llama.cpp's command-line flags for a RoPE scaling (a base GGUF keeps its own; a LoRA cannot change it). */
export function llamaCppRopeFlags(s: RopeScaling, maxPositionEmbeddings: number): string {
  switch (s.type) {
    case 'none': return '';
    case 'linear': return `--rope-scaling linear --rope-scale ${s.factor}`;
    case 'yarn': // (an attention factor of its own comes from the base file's rope.scaling.attn_factor; no flag sets it)
      return `--rope-scaling yarn --rope-scale ${s.factor} --yarn-orig-ctx ${s.originalMaxPositionEmbeddings ?? maxPositionEmbeddings}` +
        `${s.betaFast ? ` --yarn-beta-fast ${s.betaFast}` : ''}${s.betaSlow ? ` --yarn-beta-slow ${s.betaSlow}` : ''}`;
    case 'llama3': return '';
    case 'dynamic': throw new LongLoraError('the adapter was trained with dynamic NTK RoPE scaling, which llama.cpp does not implement');
  }
}

/**
 * Writes a PEFT LoRA adapter (a `--mode lora` run) as a GGUF LoRA for llama.cpp's
 * `--lora`, on the base in `baseDir`: `adapter.lora.alpha` (PEFT's rsLoRA scale folded in,
 * since llama.cpp scales by alpha / r), each pair as `<gguf name>.lora_a` [r, in] and
 * `.lora_b` [out, r], lora_b's q and k rows permuted as the base's are. An adapter that
 * also trained embeddings or norms (LongLoRA) is refused: llama.cpp rejects them, so such
 * a model is exported merged. The RoPE scaling the adapter was trained with is returned as
 * llama.cpp flags, since only the run can apply it.
 */
export function exportGgufAdapter(baseDir: string, adapterDir: string, outFile: string, opts: { dtype?: 'f32' | 'f16'; name?: string } = {}): GgufAdapterResult {
  if (!outFile.endsWith('.gguf')) throw new LongLoraError(`GGUF export: the output file must end in .gguf, got ${outFile}`);
  const configPath = path.join(baseDir, 'config.json');
  const config = parseLlamaConfig(readJsonFile(configPath), configPath);
  const adapter = readAdapterConfig(adapterDir);
  if (adapter.modulesToSave.length > 0 || fs.existsSync(path.join(adapterDir, TRAINABLE_PARAMS))) {
    throw new LongLoraError(`${adapterDir}: the adapter also trained ${adapter.modulesToSave.join(', ') || 'embeddings or norms'} (LongLoRA), which a GGUF LoRA cannot carry ` +
      '(llama.cpp rejects them); export the merged model instead: longlora merge --base BASE --adapter RUN --out DIR --gguf FILE.gguf');
  }
  const rope = adapterRopeScaling(adapterDir, baseDir) ?? config.ropeScaling;
  const ropeFlags = llamaCppRopeFlags(rope, config.maxPositionEmbeddings);
  const dtype = opts.dtype ?? 'f32';
  const { arch } = ggufArchitecture(config);
  const { r, alpha, rslora } = adapter.lora;
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', str(arch)],
    ['general.type', str('adapter')],
    ['general.name', str(opts.name ?? path.basename(path.resolve(adapterDir)))],
    ['adapter.type', str('lora')],
    // llama.cpp scales by alpha / r; PEFT by alpha / r, or alpha / √r with rsLoRA.
    ['adapter.lora.alpha', f32(rslora ? alpha * Math.sqrt(r) : alpha)],
  ];
  const file = SafetensorsFile.open(path.join(adapterDir, ADAPTER_WEIGHTS));
  try {
    const shapes = llamaTensorShapes(config);
    const targets = matchTargets(linearLayerPaths(config), adapter.targetModules).map((p) => [p, shapes.get(`${p}.weight`)!] as const);
    checkAdapterTensors(file, adapter, targets, []);
    const tensors: GgufTensor[] = targets.flatMap(([p]) => (['a', 'b'] as const).map((side): GgufTensor => {
      const n = `${PREFIX}${p}.lora_${side.toUpperCase()}.weight`;
      const shape = file.info(n).shape;
      const heads = side === 'b' ? rotaryHeads(config, `${p}.weight`) : 0;
      return {
        name: `${ggufTensorName(`${p}.weight`)}.lora_${side}`,
        shape,
        type: dtype === 'f16' ? 'F16' : 'F32',
        bytes: () => {
          let data = file.read(n, dtype).data;
          if (dtype === 'f16') checkF16Range(data as Uint16Array, n, file.path, 'export the adapter with --dtype');
          if (heads > 0) data = permuteRotary(data, shape[0]!, shape[1]!, heads);
          return bytesOf(data);
        },
      };
    }));
    writeGguf(outFile, meta, tensors);
    return { file: outFile, layers: tensors.length / 2, rank: r, ropeFlags };
  } finally {
    file.close();
  }
}
