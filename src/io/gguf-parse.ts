/**
 * GGUF files read from bytes, with nothing but JavaScript (the browser entry's reader; Node
 * reads headers with Hugging Face's parser in gguf-read.ts, and the tests check that both
 * give the same header): the header (metadata and tensor list) parsed from a Uint8Array,
 * an ArrayBuffer, a Blob (a File from an <input>) or an http(s) address (range requests),
 * a tensor's values dequantised, and the names of ggml's types.
 *
 * Layout (GGUF v2 and v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 key
 * count; each key a string (u64 length, UTF-8) with a u32 value type and its value
 * (arrays: u32 element type, u64 count, the elements); each tensor its name, u32 dimension
 * count, u64 dimensions (innermost first), u32 ggml type and u64 offset into the data,
 * which starts at the next multiple of `general.alignment` (32).
 * Values come back as Hugging Face's parser gives them: 64-bit integers as bigint, the rest
 * as numbers, booleans, strings and arrays.
 */
import { LongLoraError } from '../errors.js';
import { toFloatArray } from '../tensor/dtype.js';
import { BLOCKS, dequantize, type QuantType } from './ggml-quants.js';

/** One tensor of a GGUF file: dimensions innermost first, its ggml type, its offset into the data. */
export interface GgufTensorInfo {
  name: string;
  n_dims: number;
  shape: bigint[];
  dtype: number;
  offset: bigint;
}

/** What this project reads of a GGUF header (Hugging Face's parser gives the same fields). */
export interface GgufHeader {
  metadata: Record<string, unknown>;
  tensorInfos: GgufTensorInfo[];
  /** Where the tensor data starts in the file. */
  tensorDataOffset: bigint;
  littleEndian: boolean;
}

/** ggml type names by id (the ones exported here, and the common quantisations). */
export const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 30: 'BF16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 29: 'IQ1_M',
};

/** A ggml type's name. */
export function ggmlTypeName(t: number): string {
  return GGML_TYPE_NAMES[t] ?? `type ${t}`;
}

/** Thrown inside the parser when the bytes it has end before the header does. */
class NeedMore extends Error {}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const MAX_DIMS = 4;
const decoder = new TextDecoder('utf-8', { fatal: false });

/** The error for bytes that are no GGUF file this reader takes. */
function notGguf(source: string, why: string): LongLoraError {
  return new LongLoraError(`${source} is not a readable GGUF file (${why}); export it again, or check that the download is complete`);
}

/**
 * The magic and version in the first 8 bytes of a GGUF file (all it has, when `complete`);
 * throws NeedMore when fewer arrived and more may come. Node's reader checks them with this
 * too before its parser, which takes a version 1 file (32-bit counts) as a later one.
 */
export function checkGgufPreamble(bytes: Uint8Array, source: string, complete = true): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 4 && view.getUint32(0, true) !== GGUF_MAGIC) throw notGguf(source, 'it does not start with "GGUF"');
  if (bytes.length < 8) {
    if (complete) throw notGguf(source, `it ends at byte ${bytes.length}, inside its header`);
    throw new NeedMore();
  }
  const version = view.getUint32(4, true);
  if ((version & 0xffff) === 0) throw notGguf(source, 'it is a big-endian GGUF file, which is not read here; convert the model again on a little-endian machine');
  if (version === 1) throw notGguf(source, 'it is GGUF version 1, which llama.cpp no longer reads either; convert the model again with a current llama.cpp');
  if (version !== 2 && version !== 3) throw notGguf(source, `its version is ${version}; versions 2 and 3 are read`);
}

/** Parses the header at the start of `bytes`; throws NeedMore where they end too soon. */
function parseHeader(bytes: Uint8Array, complete: boolean, source: string): GgufHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const bad = (why: string): never => {
    throw notGguf(source, why);
  };
  const need = (n: number): void => {
    if (at + n > bytes.length) { if (complete) bad(`it ends at byte ${bytes.length}, inside its header`); throw new NeedMore(); }
  };
  checkGgufPreamble(bytes, source, complete);
  const le = true;
  const version = view.getUint32(4, le);
  at = 8;
  const u32 = (): number => { need(4); const v = view.getUint32(at, le); at += 4; return v; };
  const u64 = (): bigint => { need(8); const v = view.getBigUint64(at, le); at += 8; return v; };
  const count = (what: string): number => {
    const v = u64();
    if (v > 2n ** 32n) bad(`its ${what} ${v} is implausible`);
    if (v > BigInt(bytes.length - at)) need(Number(v)); // each element takes a byte at least
    return Number(v);
  };
  const str = (): string => {
    const n = count('string length');
    need(n);
    const s = decoder.decode(bytes.subarray(at, at + n));
    at += n;
    return s;
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 0: need(1); return view.getUint8(at++);
      case 1: need(1); return view.getInt8(at++);
      case 2: { need(2); const v = view.getUint16(at, le); at += 2; return v; }
      case 3: { need(2); const v = view.getInt16(at, le); at += 2; return v; }
      case 4: return u32();
      case 5: { need(4); const v = view.getInt32(at, le); at += 4; return v; }
      case 6: { need(4); const v = view.getFloat32(at, le); at += 4; return v; }
      case 7: { need(1); const v = view.getUint8(at++); if (v > 1) bad(`a boolean holds ${v}`); return v === 1; }
      case 8: return str();
      case 9: {
        const elem = u32();
        if (elem === 9) bad('it has an array of arrays, which GGUF does not allow');
        const n = count('array length');
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) out[i] = value(elem);
        return out;
      }
      case 10: return u64();
      case 11: { need(8); const v = view.getBigInt64(at, le); at += 8; return v; }
      case 12: { need(8); const v = view.getFloat64(at, le); at += 8; return v; }
      default: return bad(`a metadata value has the unknown type ${type}`);
    }
  };
  const tensors = u64();
  const keys = u64();
  const metadata: Record<string, unknown> = { version, tensor_count: tensors, kv_count: keys };
  for (let i = 0n; i < keys; i++) {
    const key = str();
    metadata[key] = value(u32());
  }
  const tensorInfos: GgufTensorInfo[] = [];
  for (let i = 0n; i < tensors; i++) {
    const name = str();
    const dims = u32();
    if (dims < 1 || dims > MAX_DIMS) bad(`tensor "${name}" has ${dims} dimensions (1 to ${MAX_DIMS} are allowed)`);
    const shape = Array.from({ length: dims }, () => u64());
    tensorInfos.push({ name, n_dims: dims, shape, dtype: u32(), offset: u64() });
  }
  const align = metadata['general.alignment'] ?? 32;
  if (typeof align !== 'number' || !(align > 0) || (align & (align - 1)) !== 0) bad(`general.alignment is ${String(align)}, not a power of two`);
  const a = BigInt(align as number);
  return { metadata, tensorInfos, tensorDataOffset: ((BigInt(at) + a - 1n) / a) * a, littleEndian: le };
}

/**
 * A GGUF file's bytes: whole in memory, in a Blob (read a range at a time), or at an http(s)
 * address (read with HTTP range requests, as Hugging Face's file addresses allow).
 */
export type GgufBytes = Uint8Array | ArrayBuffer | Blob | string | URL;

/** How parseGguf reads. */
export interface GgufReadOptions {
  /** Bytes read first from a Blob or an address (default 2 MiB); then four times as many each time until the header is whole. */
  firstRead?: number;
  /** An address: the fetch to use (default globalThis.fetch), and headers to send (say an Authorization for a gated model). */
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

/** A parsed GGUF file: its header and a reader of byte ranges. */
export interface GgufFile {
  header: GgufHeader;
  /** What errors call the file: the name given, the address, a File's name, or "the GGUF file". */
  source: string;
  /** The file's size in bytes. */
  size: number;
  /** Bytes start … start + length − 1; a range past the end is an error naming the file as cut short. */
  read(start: number, length: number): Promise<Uint8Array>;
}

/** Reads ranges of a file of `size` bytes. */
interface RangeReader {
  size: number;
  read(start: number, length: number): Promise<Uint8Array>;
}

/**
 * Parses the GGUF header of `bytes` (`source` names it in errors; for an address, default
 * the address, and for a File a user picked, its name). A Blob or an address is read from its start in growing pieces until the
 * header is whole, so a large file is not read in full; an address whose server ignores
 * range requests is downloaded as a Blob first.
 */
export async function parseGguf(bytes: GgufBytes, source?: string, opts: GgufReadOptions = {}): Promise<GgufFile> {
  const name = source ?? (typeof bytes === 'string' || bytes instanceof URL ? String(bytes)
    : typeof File !== 'undefined' && bytes instanceof File ? bytes.name : 'the GGUF file');
  const cut = (): never => { throw new LongLoraError(`${name} ends early (truncated?); download or export it again`); };
  if (bytes instanceof Uint8Array || bytes instanceof ArrayBuffer) {
    // A plain view (a Node Buffer's own slice() does not copy, which the readers rely on)
    const all = bytes instanceof Uint8Array ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
    const size = all.length;
    return {
      header: parseHeader(all, true, name), source: name, size,
      read: (start, length) => Promise.resolve(start + length <= size ? all.subarray(start, start + length) : cut()),
    };
  }
  let reader: RangeReader;
  if (bytes instanceof Blob) reader = blobReader(bytes);
  else {
    const r = await urlReader(String(bytes), name, opts);
    reader = r instanceof Blob ? blobReader(r) : r;
  }
  const { size } = reader;
  const read = async (start: number, length: number): Promise<Uint8Array> => {
    if (start + length > size) cut();
    const b = await reader.read(start, length);
    return b.length === length ? b : cut();
  };
  let prefix = await read(0, Math.min(size, opts.firstRead ?? 1 << 21));
  for (;;) {
    try {
      return { header: parseHeader(prefix, prefix.length === size, name), source: name, size, read };
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      const more = await read(prefix.length, Math.min(size, prefix.length * 4) - prefix.length); // only the bytes not read yet
      const grown = new Uint8Array(prefix.length + more.length);
      grown.set(prefix);
      grown.set(more, prefix.length);
      prefix = grown;
    }
  }
}

function blobReader(blob: Blob): RangeReader {
  return { size: blob.size, read: async (start, length) => new Uint8Array(await blob.slice(start, start + length).arrayBuffer()) };
}

/**
 * A reader of the file at `url` by HTTP range requests: its size from the first answer's
 * Content-Range (or a HEAD request's Content-Length, where a page may not read
 * Content-Range); a Blob of the whole file when the server ignores ranges or gives no size.
 */
async function urlReader(url: string, name: string, opts: GgufReadOptions): Promise<RangeReader | Blob> {
  const f = opts.fetch ?? globalThis.fetch;
  const failed = (res: Response): never => {
    throw new LongLoraError(`${name}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''} for ${url}; ` +
      (res.status === 401 || res.status === 403 ? 'the file needs an access token (pass headers: { Authorization: "Bearer hf_…" }) or accepting its licence' : 'check the address'));
  };
  const get = async (start: number, length: number): Promise<Response> => {
    let res: Response;
    try {
      res = await f(url, { headers: { ...opts.headers, Range: `bytes=${start}-${start + length - 1}` } });
    } catch (e) {
      throw new LongLoraError(`${name}: cannot fetch ${url} (${(e as Error).message}); check the address and the network`);
    }
    return res.ok ? res : failed(res);
  };
  const first = await get(0, opts.firstRead ?? 1 << 21);
  if (first.status !== 206) return first.blob();
  let size = Number(/\/(\d+)\s*$/.exec(first.headers.get('content-range') ?? '')?.[1] ?? NaN);
  const firstBytes = new Uint8Array(await first.arrayBuffer()); // parseGguf asks for these first
  if (!Number.isFinite(size)) {
    const head = await f(url, { method: 'HEAD', headers: opts.headers ?? {} }).catch(() => null);
    size = Number(head?.ok ? head.headers.get('content-length') ?? NaN : NaN);
    if (!Number.isFinite(size)) {
      const whole = await f(url, { headers: opts.headers ?? {} });
      return whole.ok ? whole.blob() : failed(whole);
    }
  }
  return {
    size,
    read: async (start, length) => {
      if (start + length <= firstBytes.length) return firstBytes.subarray(start, start + length);
      const res = await get(start, length);
      const body = new Uint8Array(await res.arrayBuffer());
      // A server that answers a range with the whole file: take the range out of it.
      return res.status === 206 ? body : body.subarray(start, start + length);
    },
  };
}

/** The byte range of tensor `name`'s data and its PyTorch shape (outermost first), ggml type and element count. */
export function ggufTensorRange(h: GgufHeader, name: string): { shape: number[]; type: string; n: number; start: number; length: number } {
  const info = h.tensorInfos.find((t) => t.name === name);
  if (!info) throw new LongLoraError(`the GGUF file has no tensor "${name}"`);
  const shape = info.shape.map(Number).reverse();
  const n = shape.reduce((a, b) => a * b, 1);
  const start = Number(h.tensorDataOffset) + Number(info.offset);
  const type = ggmlTypeName(info.dtype);
  const plain = ({ F32: 4, F16: 2, BF16: 2 } as Record<string, number>)[type];
  if (plain) return { shape, type, n, start, length: n * plain };
  if (!(type in BLOCKS)) {
    throw new LongLoraError(`GGUF tensor "${name}" is ${type}, which this reader does not dequantise (it reads F32, F16, BF16, ${Object.keys(BLOCKS).join(', ')}); ` +
      "use the model's Hugging Face checkpoint (config.json and safetensors) instead, or a GGUF file quantised to one of those");
  }
  const [per, size] = BLOCKS[type as QuantType];
  return { shape, type, n, start, length: (n / per) * size };
}

/**
 * The values of tensor `name` in a GGUF file whose header is `h`: its PyTorch shape
 * (outermost first) and data as f32, dequantised for the block types this project writes.
 * `bytes` reads a range of the file.
 */
export function ggufTensorData(h: GgufHeader, name: string, bytes: (start: number, length: number) => Uint8Array): { shape: number[]; data: Float32Array } {
  const r = ggufTensorRange(h, name);
  return { shape: r.shape, data: ggufTensorValues(r, bytes(r.start, r.length)) };
}

/** A tensor's values as f32 from its bytes (ggufTensorRange's range of the file). */
export function ggufTensorValues(r: { type: string; n: number }, raw: Uint8Array): Float32Array {
  if (r.type === 'F32' || r.type === 'F16' || r.type === 'BF16') {
    const copy = new Uint8Array(raw); // a copy: aligned, its own buffer (a Node Buffer's slice() would share its pool)
    return r.type === 'F32' ? new Float32Array(copy.buffer) : toFloatArray(new Uint16Array(copy.buffer), r.type === 'F16' ? 'f16' : 'bf16', 'f32') as Float32Array;
  }
  return dequantize(r.type as QuantType, raw, r.n);
}
