/**
 * Writing GGUF files (version 3), the single-file format llama.cpp and ollama load:
 *
 *   "GGUF" · version u32 · tensor count u64 · metadata count u64
 *   metadata: key (string) · value type u32 · value
 *   tensor infos: name (string) · n_dims u32 · dims u64[n_dims] · ggml type u32 · offset u64
 *   padding to `general.alignment` (32) · tensor data, each tensor starting aligned
 *
 * Strings are a u64 byte length and UTF-8 bytes; arrays are an item type u32, a u64
 * count and the items. Everything is little-endian. Dims run innermost first, so a
 * PyTorch [out, in] weight has dims [in, out]; offsets count from the data start.
 *
 * The writer streams: the header is built in memory, then each tensor's bytes are asked
 * for and written one at a time, so a model larger than memory can be exported. The
 * file is written under a temporary name and renamed when complete.
 */
import { LongLoraError } from '../errors.js';
import { BLOCKS } from './ggml-quants.js';
import { stageFile, writeAllSync } from './atomic.js';

/** The metadata value types (gguf.h `gguf_type`). */
const VALUE_TYPES = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;

export type GgufScalarType = Exclude<keyof typeof VALUE_TYPES, 'array'>;

/** A metadata value: a typed scalar, or an array of one scalar type. */
export type GgufValue =
  | { type: GgufScalarType; value: number | bigint | boolean | string }
  | { type: 'array'; itemType: GgufScalarType; values: ArrayLike<number> | readonly (number | bigint | boolean | string)[] };

/** Tensor storage types this writer produces (ggml `ggml_type`). */
export const GGML_TYPES = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, IQ4_NL: 20, IQ4_XS: 23, BF16: 30,
} as const;
export type GgmlType = keyof typeof GGML_TYPES;

/** Values per block and bytes per block of each type (plain types: blocks of one value). */
const LAYOUT: Record<GgmlType, readonly [number, number]> = { F32: [1, 4], F16: [1, 2], BF16: [1, 2], ...BLOCKS };

/** A tensor to write: its PyTorch shape (outermost first), type, and a producer of its bytes. */
export interface GgufTensor {
  name: string;
  shape: readonly number[];
  type: GgmlType;
  /** The row-major little-endian data, numel × item size bytes; called once, in order. */
  bytes: () => Uint8Array;
}

export const GGUF_ALIGNMENT = 32;
const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/** [min, max, bytes] of the integer types up to 32 bits. */
const INT_RANGES: Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', readonly [number, number, number]> = {
  u8: [0, 0xff, 1], i8: [-0x80, 0x7f, 1], u16: [0, 0xffff, 2], i16: [-0x8000, 0x7fff, 2], u32: [0, 0xffffffff, 4], i32: [-0x80000000, 0x7fffffff, 4],
};

/** A growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u32(v: number): void { this.reserve(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  u64(v: number | bigint): void { this.reserve(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array): void { this.reserve(b.length); this.buf.set(b, this.length); this.length += b.length; }
  string(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  pad(alignment: number): void { const n = (alignment - (this.length % alignment)) % alignment; this.reserve(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }

  scalar(type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
    const bad = (): never => { throw new LongLoraError(`GGUF metadata "${key}": ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)} is not a valid ${type}`); };
    if (type === 'string') {
      if (typeof v !== 'string') bad();
      this.string(v as string);
      return;
    }
    if (type === 'bool') {
      if (typeof v !== 'boolean') bad();
      this.reserve(1); this.buf[this.length++] = v ? 1 : 0;
      return;
    }
    if (typeof v === 'string' || typeof v === 'boolean') bad();
    const n = v as number | bigint;
    const at = this.length;
    switch (type) {
      case 'f32': this.reserve(4); this.view.setFloat32(at, Number(n), true); this.length += 4; return;
      case 'f64': this.reserve(8); this.view.setFloat64(at, Number(n), true); this.length += 8; return;
      case 'u64': case 'i64': {
        const b = BigInt(n);
        if (type === 'u64' ? b < 0n || b >= 1n << 64n : b < -(1n << 63n) || b >= 1n << 63n) bad();
        this.reserve(8);
        if (type === 'u64') this.view.setBigUint64(at, b, true); else this.view.setBigInt64(at, b, true);
        this.length += 8;
        return;
      }
      default: {
        const x = Number(n);
        const [lo, hi, size] = INT_RANGES[type];
        if (!Number.isInteger(x) || x < lo || x > hi) bad();
        this.reserve(size);
        if (size === 1) this.view.setUint8(at, x & 0xff);
        else if (size === 2) this.view.setUint16(at, x & 0xffff, true);
        else if (type === 'u32') this.view.setUint32(at, x, true);
        else this.view.setInt32(at, x, true);
        this.length += size;
      }
    }
  }

  value(key: string, v: GgufValue): void {
    this.u32(VALUE_TYPES[v.type]);
    if (v.type !== 'array') {
      this.scalar(v.type, v.value, key);
      return;
    }
    this.u32(VALUE_TYPES[v.itemType]);
    this.u64(v.values.length);
    for (let i = 0; i < v.values.length; i++) this.scalar(v.itemType, v.values[i]!, key);
  }

  get result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Bytes of a tensor's data. */
export function ggufTensorBytes(t: Pick<GgufTensor, 'shape' | 'type'>): number {
  const [per, bytes] = LAYOUT[t.type];
  return (t.shape.reduce((a, b) => a * b, 1) / per) * bytes;
}

/**
 * Writes a GGUF v3 file to `file` (atomically). `general.alignment` is added when the
 * metadata lacks it; keys and tensor names must be unique. `onTensor(i)` is called after
 * each tensor is written (progress).
 */
export function writeGguf(file: string, metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[],
  onTensor?: (i: number, t: GgufTensor) => void): void {
  const keys = new Set<string>();
  for (const [k] of metadata) {
    if (keys.has(k)) throw new LongLoraError(`GGUF metadata key "${k}" appears twice`);
    keys.add(k);
  }
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new LongLoraError(`GGUF tensor "${t.name}" appears twice`);
    names.add(t.name);
    if (!(t.type in GGML_TYPES)) throw new LongLoraError(`GGUF tensor "${t.name}": type ${String(t.type)} is not one of ${Object.keys(GGML_TYPES).join(', ')}`);
    if (t.shape.length === 0 || t.shape.length > 4 || t.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new LongLoraError(`GGUF tensor "${t.name}": shape [${t.shape.join(', ')}] must have 1 to 4 positive dimensions`);
    }
    const per = LAYOUT[t.type][0];
    if (t.shape.at(-1)! % per !== 0) throw new LongLoraError(`GGUF tensor "${t.name}": ${t.type} needs rows that are a multiple of ${per} long, got [${t.shape.join(', ')}]`);
  }
  const meta: Array<readonly [string, GgufValue]> = [...metadata];
  if (!keys.has('general.alignment')) meta.push(['general.alignment', { type: 'u32', value: GGUF_ALIGNMENT }]);
  const alignmentEntry = meta.find(([k]) => k === 'general.alignment')![1];
  const alignment = alignmentEntry.type === 'u32' ? Number(alignmentEntry.value) : NaN;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) throw new LongLoraError('GGUF "general.alignment" must be a u32 multiple of 8');

  const head = new ByteWriter();
  head.u32(MAGIC);
  head.u32(3);
  head.u64(tensors.length);
  head.u64(meta.length);
  for (const [k, v] of meta) {
    head.string(k);
    head.value(k, v);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    head.string(t.name);
    head.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) head.u64(t.shape[d]!);
    head.u32(GGML_TYPES[t.type]);
    head.u64(offset);
    offsets.push(offset);
    offset = align(offset + ggufTensorBytes(t), alignment);
  }
  head.pad(alignment);

  const zeros = new Uint8Array(alignment);
  stageFile(file, (fd) => {
    writeAllSync(fd, head.result);
    let written = 0;
    tensors.forEach((t, i) => {
      if (written < offsets[i]!) writeAllSync(fd, zeros.subarray(0, offsets[i]! - written));
      const data = t.bytes();
      const want = ggufTensorBytes(t);
      if (data.length !== want) {
        throw new LongLoraError(`GGUF tensor "${t.name}": ${data.length} bytes given for shape [${t.shape.join(', ')}] ${t.type}, which takes ${want}`);
      }
      writeAllSync(fd, data);
      written = offsets[i]! + want;
      onTensor?.(i, t);
    });
    // The data section ends aligned too (readers size it as the sum of padded tensors).
    if (written < offset) writeAllSync(fd, zeros.subarray(0, offset - written));
  }).commit();
}
