/**
 * Where a Hugging Face Llama (Mistral, Qwen 2/3) checkpoint's tensors sit in a GGUF file,
 * without Node (the export in gguf.ts and both readers use it): llama.cpp's tensor names,
 * its architecture for a model type, the q/k row order its RoPE needs, Llama 3's frequency
 * factors, and the keys of an embedded Hugging Face tokenizer.
 */
import { LongLoraError } from '../../errors.js';
import { ropeFrequencies, ropeInvFreq } from '../../nn/rope-scaling.js';
import type { HostArray } from '../../tensor/dtype.js';
import type { LlamaConfig } from './config.js';

/** The metadata keys of an embedded Hugging Face tokenizer (see GgufExportOptions.embedTokenizer). */
export const HF_TOKENIZER_KEY = 'tokenizer.huggingface.json';
export const HF_TOKENIZER_CONFIG_KEY = 'longlora.tokenizer_config';

/** The GGUF name of a Hugging Face Llama (Mistral, Qwen 2) tensor. */
export function ggufTensorName(hf: string): string {
  const fixed: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (fixed[hf]) return fixed[hf];
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  const part: Record<string, string> = {
    input_layernorm: 'attn_norm', post_attention_layernorm: 'ffn_norm',
    'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
    'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down',
    'self_attn.q_norm': 'attn_q_norm', 'self_attn.k_norm': 'attn_k_norm',
  };
  const p = m ? part[m[2]!] : undefined;
  if (!m || !p) throw new LongLoraError(`no GGUF name for tensor "${hf}" (not a Llama tensor)`);
  return `blk.${m[1]}.${p}.${m[3]}`;
}

/**
 * llama.cpp's architecture for a model type: Llama and Mistral are "llama" (its RoPE
 * rotates interleaved pairs, so q and k are permuted), Qwen 2 and 3 are "qwen2" and
 * "qwen3" (rotate-half, as Hugging Face; nothing is permuted).
 */
export function ggufArchitecture(c: LlamaConfig): { arch: string; permute: boolean } {
  return c.modelType === 'qwen2' || c.modelType === 'qwen3' ? { arch: c.modelType, permute: false } : { arch: 'llama', permute: true };
}

/** The heads whose rows are permuted in tensor `name` (a q or k projection's weight or bias, on the llama architecture), else 0. */
export function rotaryHeads(c: LlamaConfig, name: string): number {
  if (!ggufArchitecture(c).permute) return 0;
  return /\.q_proj\.(weight|bias)$/.test(name) ? c.numHeads : /\.k_proj\.(weight|bias)$/.test(name) ? c.numKvHeads : 0;
}

/**
 * q/k rows from HF's rotate-half layout (per head: first halves, then second halves of
 * each rotated pair) to interleaved pairs: row h·D + 2j + t takes row h·D + t·D/2 + j.
 * That is w.reshape(heads, 2, D/2, in).swapaxes(1, 2).reshape(rows, in).
 */
export function permuteRotary<T extends HostArray>(w: T, rows: number, cols: number, heads: number): T {
  return moveRotaryRows(w, rows, cols, heads, true);
}

/** The inverse of permuteRotary: interleaved pairs back to Hugging Face's rotate-half rows. */
export function unpermuteRotary<T extends HostArray>(w: T, rows: number, cols: number, heads: number): T {
  return moveRotaryRows(w, rows, cols, heads, false);
}

function moveRotaryRows<T extends HostArray>(w: T, rows: number, cols: number, heads: number, interleave: boolean): T {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0) throw new LongLoraError(`cannot permute ${rows} rows into ${heads} heads of even size`);
  const D = rows / heads;
  const out = new (w.constructor as new (n: number) => T)(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < D / 2; j++) {
      for (let t = 0; t < 2; t++) {
        const halves = h * D + t * (D / 2) + j;
        const pairs = h * D + 2 * j + t;
        const [src, dst] = interleave ? [halves, pairs] : [pairs, halves];
        out.set(w.subarray(src * cols, (src + 1) * cols) as unknown as ArrayLike<number> & ArrayLike<bigint>, dst * cols);
      }
    }
  }
  return out;
}

/** llama3 scaling as llama.cpp takes it: per-frequency divisors of the angle (plain inv_freq / scaled inv_freq). */
export function ropeFreqFactors(c: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling' | 'maxPositionEmbeddings'>): Float32Array {
  const plain = ropeInvFreq(c.headDim, c.ropeTheta);
  const scaled = ropeFrequencies(c.headDim, c.ropeTheta, c.ropeScaling, 0, c.maxPositionEmbeddings).invFreq;
  return Float32Array.from(plain, (v, i) => v / scaled[i]!);
}
