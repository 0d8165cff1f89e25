/**
 * Reading GGUF headers back, with Hugging Face's GGUF parser (`@huggingface/gguf`, an
 * implementation independent of the writer in gguf.ts): the metadata and tensor list of a
 * file, the names of the ggml types this project writes or meets, the RoPE scaling a
 * file declares, and a tensor's values (dequantised).
 */
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { LongLoraError } from '../errors.js';
import { toFloatArray } from '../tensor/dtype.js';
import { BLOCKS, dequantize, type QuantType } from './ggml-quants.js';

export type GgufHeader = Awaited<ReturnType<typeof gguf>>;

/** ggml type names by id (the ones exported here, and the common quantisations). */
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 30: 'BF16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 29: 'IQ1_M',
};

/** general.file_type (llama.cpp's llama_ftype) by id. */
const FILE_TYPE_NAMES: Record<number, string> = {
  0: 'all F32', 1: 'mostly F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M',
  13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S',
  22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL', 26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'mostly BF16',
};

/** The name of a general.file_type value, or null when absent. */
export function ggufFileTypeName(v: unknown): string | null {
  if (typeof v !== 'number') return null;
  return FILE_TYPE_NAMES[v] ?? `file type ${v}`;
}

/** A ggml type's name. */
export function ggmlTypeName(t: number): string {
  return GGML_TYPE_NAMES[t] ?? `type ${t}`;
}

/** A GGUF file's header; an unreadable file is a user error naming the fix. */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  try {
    return await gguf(path.resolve(file), { allowLocalFile: true });
  } catch (e) {
    throw new LongLoraError(`${file} is not a readable GGUF file (${(e as Error).message}); re-export it with \`longlora export\``);
  }
}

/** The header's metadata as plain key → value. */
export function ggufMetadata(h: GgufHeader): Record<string, unknown> {
  return h.metadata as unknown as Record<string, unknown>;
}

/** The RoPE scaling a model file declares: "linear ×8", frequency factors (Llama 3), or null. */
export function ggufRopeScaling(h: GgufHeader): string | null {
  const m = ggufMetadata(h);
  const arch = String(m['general.architecture'] ?? '');
  const type = m[`${arch}.rope.scaling.type`];
  if (type) return `${String(type)} ×${String(m[`${arch}.rope.scaling.factor`])}`;
  return h.tensorInfos.some((t) => t.name === 'rope_freqs.weight') ? 'frequency factors (rope_freqs)' : null;
}

/**
 * The values of tensor `name` in a GGUF file whose header is `h`: its PyTorch shape
 * (outermost first) and data as f32, dequantised for the block types this project writes.
 * `bytes` reads a range of the file.
 */
export function ggufTensorData(h: GgufHeader, name: string, bytes: (start: number, length: number) => Uint8Array): { shape: number[]; data: Float32Array } {
  const info = h.tensorInfos.find((t) => t.name === name);
  if (!info) throw new LongLoraError(`the GGUF file has no tensor "${name}"`);
  const shape = info.shape.map(Number).reverse();
  const n = shape.reduce((a, b) => a * b, 1);
  const at = Number(h.tensorDataOffset) + Number(info.offset);
  const type = ggmlTypeName(info.dtype);
  const plain = ({ F32: 'f32', F16: 'f16', BF16: 'bf16' } as const)[type as 'F32' | 'F16' | 'BF16'];
  if (plain) {
    const raw = bytes(at, n * (plain === 'f32' ? 4 : 2)).slice();
    return { shape, data: plain === 'f32' ? new Float32Array(raw.buffer) : toFloatArray(new Uint16Array(raw.buffer), plain, 'f32') as Float32Array };
  }
  if (!(type in BLOCKS)) {
    throw new LongLoraError(`GGUF tensor "${name}" is ${type}, which this reader does not dequantise (it reads F32, F16, BF16, ${Object.keys(BLOCKS).join(', ')}); ` +
      'load the Hugging Face model folder instead, or a GGUF file quantised to one of those');
  }
  const [per, size] = BLOCKS[type as QuantType];
  return { shape, data: dequantize(type as QuantType, bytes(at, (n / per) * size), n) };
}
