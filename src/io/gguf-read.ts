/**
 * Reading GGUF headers back, with Hugging Face's GGUF parser (`@huggingface/gguf`, an
 * implementation independent of the writer in gguf.ts): the metadata and tensor list of a
 * file, the names of the ggml types this project writes or meets, and the RoPE scaling a
 * file declares.
 */
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { LongLoraError } from '../errors.js';

export type GgufHeader = Awaited<ReturnType<typeof gguf>>;

/** ggml type names by id (the ones exported here, and the common quantisations). */
export const GGML_TYPE_NAMES: Record<number, string> = { 0: 'F32', 1: 'F16', 30: 'BF16', 2: 'Q4_0', 3: 'Q4_1', 8: 'Q8_0', 12: 'Q4_K', 14: 'Q6_K' };

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
