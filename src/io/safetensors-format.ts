/**
 * The safetensors format (https://github.com/huggingface/safetensors) without a file
 * system: header parsing and validation, decoding, and encoding to bytes. Node's file
 * reader and atomic writer (safetensors.ts) and the browser build share it.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`,
 * then the data section; offsets are relative to its start, tensors tile it with no holes
 * and it ends at the end of the file. Everything in the header is validated up front, so
 * a truncated or lying file fails when it is opened, with one LongLoraError naming it.
 */
import { LongLoraError } from '../errors.js';
import { closestNames } from '../util/text.js';
import { type DType, type HostArray, isFloat, toFloatArray, fromFloatArray } from '../tensor/dtype.js';

/** Element types of the safetensors format that longlora reads and writes. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const ST_ITEM_SIZE: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** All safetensors dtypes longlora supports, in the order error messages list them. */
export const SAFETENSORS_DTYPES = Object.keys(ST_ITEM_SIZE) as readonly SafetensorsDType[];

/** The DType `read` returns for each stored dtype when no `to` is given. */
export const NATURAL_DTYPE: Record<SafetensorsDType, DType> = {
  F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16', I64: 'i32', I32: 'i32', I16: 'i32', I8: 'i32', U8: 'u8', BOOL: 'u8',
};

const ST_OF_DTYPE: Record<DType, SafetensorsDType> = {
  f64: 'F64', f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', u8: 'U8',
};

/** Largest header accepted, as in the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Largest single read handed to the OS (readSync is limited to 2 GiB per call). */

const CORRUPT_FIX = 'the file is truncated or corrupt; re-download or re-export it';

/** Where one tensor lives in a safetensors file. */
export interface TensorInfo {
  /** The stored dtype, as spelled in the file. */
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
}

/** A tensor read into host memory; f16/bf16 data are raw 16-bit patterns. */
export interface HostTensor {
  shape: number[];
  dtype: DType;
  data: HostArray;
}

/** Typed arrays the writer accepts (BigInt64Array/Int32Array for I64, Int16Array, Int8Array). */
export type WritableArray = HostArray | BigInt64Array | Int16Array | Int8Array;

/** One tensor to write. `data` may be a function so huge models stream one tensor at a time. */
export interface TensorEntry {
  name: string;
  /** A longlora DType (stored as F32, F64, F16, BF16, I32, U8) or an explicit safetensors dtype. */
  dtype: DType | SafetensorsDType;
  shape: readonly number[];
  data: WritableArray | (() => WritableArray);
}

let littleEndianChecked = false;

/** Throws once, clearly, on a big-endian host: the format and our typed-array views are little-endian. */
export function assertLittleEndian(): void {
  if (littleEndianChecked) return;
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new LongLoraError('this machine is big-endian; longlora reads and writes safetensors only on little-endian hosts (x86-64, ARM64)');
  }
  littleEndianChecked = true;
}

export function fail(path: string, problem: string, fix = CORRUPT_FIX): never {
  throw new LongLoraError(`${path}: ${problem}; ${fix}`);
}

/** A safetensors file opened for reading. Call `close()` when done. */
/** The header length from the file's first 8 bytes, checked against the file size. */
export function headerLength(path: string, lenBytes: Uint8Array, size: number): number {
  if (size < 8) fail(path, `the file is only ${size} bytes, but a safetensors file starts with an 8-byte header length`);
  const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(path, `the header length field says ${n} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`, 'this is not a safetensors file, or it is corrupt');
  const headerLen = Number(n);
  if (headerLen > size - 8) fail(path, `the header length field says ${headerLen} bytes, but only ${size - 8} bytes follow it (file size ${size})`);
  return headerLen;
}

/** The header's JSON object, from its bytes (UTF-8). */
export function headerJson(path: string, bytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail(path, `the ${bytes.length}-byte header is not valid UTF-8`, 'this is not a safetensors file, or it is corrupt');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(path, `the ${bytes.length}-byte header is not valid JSON (${(err as Error).message})`, 'this is not a safetensors file, or it is corrupt');
  }
  if (!isPlainObject(json)) fail(path, `the header is JSON but not an object (got ${describeJson(json)})`, 'this is not a safetensors file, or it is corrupt');
  const dup = firstDuplicateKey(text!);
  if (dup !== null) fail(path, `the header names ${JSON.stringify(dup)} twice (the format disallows duplicate keys; a JSON reader keeps only the last entry)`);
  return json;
}

/** The first top-level key of a valid JSON object text that appears twice (JSON.parse keeps the last silently), or null. */
function firstDuplicateKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let start = -1;
  let last = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (start >= 0) { // inside a string
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) { if (depth === 1) last = text.slice(start, i + 1); start = -1; }
      continue;
    }
    if (c === 0x22) start = i;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x3a && depth === 1) { // the colon after a top-level key
      const key = JSON.parse(last) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    }
  }
  return null;
}
interface ParsedEntry { name: string; info: TensorInfo; begin: number; end: number }

export function parseHeader(path: string, json: Record<string, unknown>, dataStart: number, dataLen: number) {
  let metadata: Record<string, string> = {};
  const parsed: ParsedEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') metadata = parseMetadata(path, value);
    else parsed.push(parseEntry(path, name, value, dataStart, dataLen));
  }
  checkTiling(path, parsed, dataLen);
  const entries = new Map<string, TensorInfo>();
  for (const p of parsed) entries.set(p.name, p.info);
  return { metadata, entries };
}

function parseMetadata(path: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value)) fail(path, `"__metadata__" must be an object of strings, got ${describeJson(value)}`, 'the file is corrupt or was written by a non-conforming tool; re-export it');
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail(path, `"__metadata__" key "${k}" holds ${describeJson(v)}, but metadata values must be strings`, 'the file is corrupt or was written by a non-conforming tool; re-export it');
  }
  return { ...(value as Record<string, string>) };
}

function parseEntry(path: string, name: string, value: unknown, dataStart: number, dataLen: number): ParsedEntry {
  const where = `tensor "${name}"`;
  if (!isPlainObject(value)) fail(path, `${where}: header entry is ${describeJson(value)}, not an object with dtype, shape and data_offsets`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !Object.hasOwn(ST_ITEM_SIZE, dtype)) {
    fail(path, `${where} has unknown dtype ${JSON.stringify(dtype)}; supported dtypes: ${SAFETENSORS_DTYPES.join(', ')}`,
      'convert the tensor to one of them (e.g. with torch .to(torch.float32)) and re-export the file');
  }
  const st = dtype as SafetensorsDType;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(path, `${where} has shape ${JSON.stringify(shape)}; a shape must be a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    fail(path, `${where} has data_offsets ${JSON.stringify(offsets)}; expected [begin, end], two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  const numel = (shape as number[]).reduce((a, d) => a * d, 1);
  const need = numel * ST_ITEM_SIZE[st];
  if (end < begin) fail(path, `${where} has data_offsets [${begin}, ${end}] with end before begin`);
  if (!Number.isSafeInteger(need) || end - begin !== need) {
    fail(path, `${where} has data_offsets [${begin}, ${end}] (${end - begin} bytes), but dtype ${st} and shape [${(shape as number[]).join(', ')}] need ${numel} × ${ST_ITEM_SIZE[st]} = ${need} bytes`);
  }
  if (end > dataLen) {
    fail(path, `${where} has data_offsets [${begin}, ${end}], past the end of the ${dataLen}-byte data section (file size ${dataStart + dataLen}, data starts at byte ${dataStart})`);
  }
  const info: TensorInfo = { dtype: st, shape: [...(shape as number[])], byteLength: need, offset: dataStart + begin };
  return { name, info, begin, end };
}

/** Sorted by begin, the tensors must cover [0, dataLen) exactly: no holes, no overlaps. */
function checkTiling(path: string, entries: ParsedEntry[], dataLen: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let prev: ParsedEntry | null = null;
  for (const e of sorted) {
    if (e.begin > expected) {
      fail(path, `bytes [${expected}, ${e.begin}) of the data section belong to no tensor (a hole before tensor "${e.name}" at [${e.begin}, ${e.end}])`);
    }
    if (e.begin < expected) {
      fail(path, `tensor "${e.name}" at data_offsets [${e.begin}, ${e.end}] overlaps tensor "${prev!.name}" at [${prev!.begin}, ${prev!.end}]`);
    }
    expected = e.end;
    prev = e;
  }
  if (expected !== dataLen) {
    fail(path, `the tensors cover ${expected} bytes, but the data section holds ${dataLen} bytes (${dataLen - expected} unexplained bytes at the end)`,
      'the file is corrupt; re-download or re-export it');
  }
}

/** Views or widens raw little-endian bytes as the natural host array of `info.dtype`. */
export function decodeRaw(path: string, name: string, info: TensorInfo, raw: Uint8Array): HostArray {
  const n = info.byteLength / ST_ITEM_SIZE[info.dtype];
  switch (info.dtype) {
    case 'F64': return new Float64Array(raw.buffer, raw.byteOffset, n);
    case 'F32': return new Float32Array(raw.buffer, raw.byteOffset, n);
    case 'F16': case 'BF16': return new Uint16Array(raw.buffer, raw.byteOffset, n);
    case 'I32': return new Int32Array(raw.buffer, raw.byteOffset, n);
    case 'I16': return Int32Array.from(new Int16Array(raw.buffer, raw.byteOffset, n));
    case 'I8': return Int32Array.from(new Int8Array(raw.buffer, raw.byteOffset, n));
    case 'U8': case 'BOOL': return raw;
    case 'I64': return narrowI64(path, name, new Int32Array(raw.buffer, raw.byteOffset, 2 * n));
  }
}

/** I64 (as pairs of little-endian 32-bit words) → i32, failing on the first value out of range. */
function narrowI64(path: string, name: string, words: Int32Array): Int32Array {
  const n = words.length / 2;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const lo = words[2 * i]!;
    if (words[2 * i + 1] !== lo >> 31) {
      const v = new BigInt64Array(words.buffer, words.byteOffset + 8 * i, 1)[0];
      fail(path, `tensor "${name}" (I64) holds ${v} at index ${i}, which does not fit in i32 [-2147483648, 2147483647]`,
        'longlora reads I64 tensors as i32 (token ids, positions); store this tensor in another dtype');
    }
    out[i] = lo;
  }
  return out;
}

export function convertHost(path: string, name: string, st: SafetensorsDType, data: HostArray, from: DType, to: DType): HostArray {
  if (to === from) return data;
  if (isFloat(from) && isFloat(to)) {
    if (to === 'f32' || to === 'f64') return toFloatArray(data, from, to);
    const wide = from === 'f32' || from === 'f64' ? data as Float32Array | Float64Array : toFloatArray(data, from, 'f32');
    return fromFloatArray(wide, to);
  }
  if (!isFloat(from)) {
    if (to === 'f32' || to === 'f64') return toFloatArray(data, from, to);
    if (to === 'i32' && from === 'u8') return Int32Array.from(data as Uint8Array);
  }
  const ok = isFloat(from) ? 'f32, f64, f16 or bf16' : from === 'u8' ? 'u8, i32, f32 or f64' : 'i32, f32 or f64';
  fail(path, `tensor "${name}" is stored as ${st} and cannot be read as ${to}`, `read it as ${ok}`);
}

/**
 * Throws when a tensor that holds weights is stored in an integer dtype: read as floats,
 * its values would be the packed codes of a quantized checkpoint (bitsandbytes, GPTQ,
 * AWQ) or garbage, not weights.
 */
export function checkFloatTensor(file: string, name: string, st: SafetensorsDType): void {
  if (st === 'F32' || st === 'F16' || st === 'BF16' || st === 'F64') return;
  throw new LongLoraError(`${file}: tensor "${name}" is stored as ${st}, an integer type, but weights must be floating point (F32, F16, BF16 or F64); ` +
    'this looks like a quantized checkpoint (bitsandbytes, GPTQ, AWQ) or a damaged file: use the unquantized model (longlora quantizes it itself with --quantize nf4)');
}

/** A LongLoraError for a missing tensor, listing the closest names present. */
export function missingTensorError(where: string, name: string, present: readonly string[]): LongLoraError {
  const close = closestNames(name, present, 5);
  const list = present.length === 0 ? 'it holds no tensors' : `it holds ${present.length} tensors; closest: ${close.map((s) => `"${s}"`).join(', ')}`;
  return new LongLoraError(`${where}: no tensor named "${name}" (${list}); check the tensor name and that this is the checkpoint you meant`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeJson(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

// ---- writer -------------------------------------------------------------------------

export interface PlannedTensor {
  entry: TensorEntry;
  st: SafetensorsDType;
  numel: number;
  byteLength: number;
  begin: number;
}

/** The safetensors dtype an entry will be stored as (validates the spelling). */
export function storedDType(entry: Pick<TensorEntry, 'name' | 'dtype'>, where: string): SafetensorsDType {
  const d = entry.dtype as string;
  if (Object.hasOwn(ST_OF_DTYPE, d)) return ST_OF_DTYPE[d as DType];
  if (Object.hasOwn(ST_ITEM_SIZE, d)) return d as SafetensorsDType;
  throw new LongLoraError(`${where}: tensor "${entry.name}" has unknown dtype ${JSON.stringify(d)}; use f32, f64, f16, bf16, i32, u8 or one of ${SAFETENSORS_DTYPES.join(', ')}`);
}

/** Bytes an entry occupies in the data section (validates dtype and shape, not data). */
export function entryByteLength(entry: TensorEntry, where: string): number {
  return numelOf(entry, where) * ST_ITEM_SIZE[storedDType(entry, where)];
}

function numelOf(entry: TensorEntry, where: string): number {
  const s = entry.shape;
  if (!Array.isArray(s) || !s.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new LongLoraError(`${where}: tensor "${entry.name}" has shape ${JSON.stringify(s)}; a shape must be a list of non-negative integers`);
  }
  return s.reduce((a, d) => a * d, 1);
}

const EXPECTED_ARRAY: Record<SafetensorsDType, string> = {
  F64: 'a Float64Array', F32: 'a Float32Array', F16: 'a Uint16Array of f16 bit patterns', BF16: 'a Uint16Array of bf16 bit patterns',
  I64: 'a BigInt64Array or an Int32Array', I32: 'an Int32Array', I16: 'an Int16Array', I8: 'an Int8Array', U8: 'a Uint8Array', BOOL: 'a Uint8Array of 0/1',
};

function acceptsArray(st: SafetensorsDType, a: WritableArray): boolean {
  switch (st) {
    case 'F64': return a instanceof Float64Array;
    case 'F32': return a instanceof Float32Array;
    case 'F16': case 'BF16': return a instanceof Uint16Array;
    case 'I64': return a instanceof BigInt64Array || a instanceof Int32Array;
    case 'I32': return a instanceof Int32Array;
    case 'I16': return a instanceof Int16Array;
    case 'I8': return a instanceof Int8Array;
    case 'U8': case 'BOOL': return a instanceof Uint8Array;
  }
}

function checkData(where: string, p: PlannedTensor, data: WritableArray): void {
  const name = p.entry.name;
  if (!acceptsArray(p.st, data)) {
    const got = (data as object | null)?.constructor?.name ?? String(data);
    const hint = p.st === 'F16' || p.st === 'BF16' ? `; convert floats with fromFloatArray(data, '${p.st.toLowerCase()}')` : '';
    throw new LongLoraError(`${where}: tensor "${name}" is ${p.st} and needs ${EXPECTED_ARRAY[p.st]}, got ${got}${hint}`);
  }
  if (data.length !== p.numel) {
    throw new LongLoraError(`${where}: tensor "${name}" has shape [${p.entry.shape.join(', ')}] (${p.numel} elements) but its data holds ${data.length}; fix the shape or the data`);
  }
}

function checkMetadata(where: string, metadata: Record<string, string>): void {
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new LongLoraError(`${where}: metadata key "${k}" is ${typeof v}; safetensors metadata values must be strings (use JSON.stringify)`);
  }
}

/** Validates entries and lays them out: data ordered by item size (largest first) so every tensor is aligned. */
function planTensors(where: string, entries: Iterable<TensorEntry>): PlannedTensor[] {
  const planned: PlannedTensor[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const name = entry.name;
    if (typeof name !== 'string' || name === '' || name === '__metadata__') {
      throw new LongLoraError(`${where}: invalid tensor name ${JSON.stringify(name)}; names must be non-empty strings other than "__metadata__"`);
    }
    if (seen.has(name)) throw new LongLoraError(`${where}: tensor "${name}" is given twice; tensor names must be unique`);
    seen.add(name);
    const st = storedDType(entry, where);
    const numel = numelOf(entry, where);
    const p: PlannedTensor = { entry, st, numel, byteLength: numel * ST_ITEM_SIZE[st], begin: 0 };
    if (typeof entry.data !== 'function') checkData(where, p, entry.data);
    planned.push(p);
  }
  let offset = 0;
  for (const p of [...planned].sort((a, b) => ST_ITEM_SIZE[b.st] - ST_ITEM_SIZE[a.st])) {
    p.begin = offset;
    offset += p.byteLength;
  }
  return planned;
}

/** The 8-byte length plus the JSON header, padded with spaces to a multiple of 8 bytes. */
function encodeHeader(where: string, planned: PlannedTensor[], metadata: Record<string, string> | undefined): Uint8Array {
  const header: Record<string, unknown> = Object.create(null); // a tensor may be named "__proto__"
  if (metadata && Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  for (const p of planned) {
    header[p.entry.name] = { dtype: p.st, shape: [...p.entry.shape], data_offsets: [p.begin, p.begin + p.byteLength] };
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) throw new LongLoraError(`${where}: the header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit; split the tensors over several files`);
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** Little-endian bytes of one tensor's data (I64 from Int32Array is sign-extended). */
function encodeData(st: SafetensorsDType, data: WritableArray): Uint8Array {
  if (st === 'I64' && data instanceof Int32Array) {
    const words = new Int32Array(2 * data.length);
    for (let i = 0; i < data.length; i++) {
      words[2 * i] = data[i]!;
      words[2 * i + 1] = data[i]! >> 31;
    }
    return new Uint8Array(words.buffer);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}


// ---- readers ------------------------------------------------------------------------

/** Reading a parsed safetensors header's tensors; subclasses supply the bytes. */
export abstract class SafetensorsReader {
  protected constructor(
    /** The path (or name, for bytes) the file was opened with. */
    readonly path: string,
    /** The `__metadata__` map (empty when absent). */
    readonly metadata: Record<string, string>,
    private readonly entries: Map<string, TensorInfo>,
  ) {}

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Dtype, shape, size and absolute offset of `name`; throws a LongLoraError if absent. */
  info(name: string): TensorInfo {
    const info = this.entries.get(name);
    if (!info) throw missingTensorError(this.path, name, this.names());
    return { ...info, shape: [...info.shape] };
  }

  /** Exactly the bytes of `name`, in a fresh (8-byte-aligned) buffer. */
  abstract readRaw(name: string): Uint8Array;

  /**
   * Reads `name` into host memory. Floats keep their dtype unless `to` names another
   * float dtype (e.g. BF16 → f32). I64 narrows to i32 with a range check, I32/I16/I8 give
   * i32, U8/BOOL give u8; integers may also be read as f32/f64 (and u8 as i32).
   */
  read(name: string, to?: DType): HostTensor {
    const info = this.info(name);
    const natural = NATURAL_DTYPE[info.dtype];
    const data = decodeRaw(this.path, name, info, this.readRaw(name));
    const dtype = to ?? natural;
    return { shape: info.shape, dtype, data: convertHost(this.path, name, info.dtype, data, natural, dtype) };
  }
}

/**
 * A safetensors file held in memory (fetched in a browser, or received over the wire):
 * validated as strictly as a file on disk, and read tensor by tensor without copying the
 * rest. `name` (a URL, a file name) is what error messages say.
 */
export class SafetensorsBytes extends SafetensorsReader {
  private constructor(path: string, metadata: Record<string, string>, entries: Map<string, TensorInfo>, private readonly bytes: Uint8Array) {
    super(path, metadata, entries);
  }

  static parse(bytes: Uint8Array | ArrayBuffer, name = 'safetensors bytes'): SafetensorsBytes {
    assertLittleEndian();
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const headerLen = headerLength(name, b.subarray(0, 8), b.length);
    const json = headerJson(name, b.subarray(8, 8 + headerLen));
    const { metadata, entries } = parseHeader(name, json, 8 + headerLen, b.length - 8 - headerLen);
    return new SafetensorsBytes(name, metadata, entries, b);
  }

  readRaw(name: string): Uint8Array {
    const info = this.info(name);
    return this.bytes.slice(info.offset, info.offset + info.byteLength);
  }
}

/**
 * A file's layout: the entries validated and placed (data ordered by item size, largest
 * first, so every tensor is aligned) and the header bytes that describe them.
 */
export function layoutSafetensors(where: string, entries: Iterable<TensorEntry>, metadata?: Record<string, string>): { planned: PlannedTensor[]; prefix: Uint8Array } {
  assertLittleEndian();
  if (metadata) checkMetadata(where, metadata);
  const planned = planTensors(where, entries);
  return { planned, prefix: encodeHeader(where, planned, metadata) };
}

/** Each tensor's bytes in data order; data functions are called once each, one at a time. */
export function* tensorBytes(where: string, planned: readonly PlannedTensor[]): Generator<{ begin: number; bytes: Uint8Array }> {
  for (const p of [...planned].sort((a, b) => a.begin - b.begin)) {
    const data = typeof p.entry.data === 'function' ? p.entry.data() : p.entry.data;
    checkData(where, p, data);
    yield { begin: p.begin, bytes: encodeData(p.st, data) };
  }
}

/** A whole safetensors file as bytes (the layout `writeSafetensors` writes). */
export function encodeSafetensors(entries: Iterable<TensorEntry>, metadata?: Record<string, string>, where = 'safetensors'): Uint8Array {
  const { planned, prefix } = layoutSafetensors(where, entries, metadata);
  const out = new Uint8Array(prefix.length + planned.reduce((a, p) => a + p.byteLength, 0));
  out.set(prefix, 0);
  for (const { begin, bytes } of tensorBytes(where, planned)) out.set(bytes, prefix.length + begin);
  return out;
}
