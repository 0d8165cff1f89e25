/**
 * Reading GGUF headers back in Node, with Hugging Face's GGUF parser (`@huggingface/gguf`,
 * an implementation independent of the writer in gguf.ts and of the browser's reader in
 * gguf-parse.ts): the metadata and tensor list of a file, the names of llama.cpp's file
 * types, and the RoPE scaling a file declares. Tensor values: gguf-parse.ts.
 */
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { LongLoraError } from '../errors.js';
import { checkGgufPreamble, ggufTensorRange, type GgufHeader } from './gguf-parse.js';
import fs from 'node:fs';

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

/** A GGUF file's header; an unreadable file is a user error naming the fix. */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  checkGgufStart(file);
  let header: GgufHeader;
  try {
    const h = await gguf(path.resolve(file), { allowLocalFile: true });
    header = { metadata: h.metadata as unknown as Record<string, unknown>, tensorInfos: h.tensorInfos, tensorDataOffset: h.tensorDataOffset, littleEndian: h.littleEndian };
  } catch (e) {
    throw new LongLoraError(`${file} is not a readable GGUF file (${(e as Error).message}): download or copy it again (a file cut short or damaged in transit), or export it again (\`longlora export\` for one made here)`);
  }
  // The header reads as whole even when the file is cut short inside it or in the tensor
  // data after it: every tensor's bytes must lie inside the file.
  const size = fs.statSync(file).size;
  let end = Number(header.tensorDataOffset);
  for (const t of header.tensorInfos) {
    try {
      const r = ggufTensorRange(header, t.name);
      end = Math.max(end, r.start + r.length);
    } catch { /* a type this reader does not know: its length is not checked */ }
  }
  if (end > size) throw new LongLoraError(`${file} ends early (truncated?); export it again, or download it again: it has ${size.toLocaleString('en-US')} bytes, but its tensors reach byte ${end.toLocaleString('en-US')}`);
  return header;
}

/** The magic and version (checkGgufPreamble), read before the parser, which names no cause for a version 1 file. */
function checkGgufStart(file: string): void {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(8);
      head = head.subarray(0, fs.readSync(fd, head, 0, 8, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return; // the parser says why the file cannot be read
  }
  checkGgufPreamble(head, file);
}

/** The RoPE scaling a model file declares: "linear ×8", frequency factors (Llama 3), or null. */
export function ggufRopeScaling(h: GgufHeader): string | null {
  const m = h.metadata;
  const arch = String(m['general.architecture'] ?? '');
  const type = m[`${arch}.rope.scaling.type`];
  if (type) return `${String(type)} ×${String(m[`${arch}.rope.scaling.factor`])}`;
  return h.tensorInfos.some((t) => t.name === 'rope_freqs.weight') ? 'frequency factors (rope_freqs)' : null;
}
