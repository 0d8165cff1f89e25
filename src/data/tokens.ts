/**
 * Pre-tokenized corpora: a flat stream of token ids in a binary file (uint16 or uint32,
 * little-endian, as the official evaluation data), read lazily, cut into training
 * sequences of exactly `seqLen` tokens (continued pre-training: documents already joined
 * with EOS; labels = inputs), visited in a seeded shuffled order per epoch. A span of a
 * file (the held-out tail, say) reads like a file of its own; a writer streams ids out.
 */
import fs from 'node:fs';
import { LongLoraError } from '../errors.js';
import { Rng } from '../tensor/random.js';

export type TokenDType = 'uint16' | 'uint32';

/** A readable run of token ids: a whole file or a span of one. */
export interface TokenSource {
  /** File path, for messages. */
  readonly path: string;
  readonly numTokens: number;
  /** Tokens [start, start + n) of this source as i32, checked against the vocabulary. */
  read(start: number, n: number, vocabSize: number): Int32Array;
}

/** Bytes per token of a dtype. */
export function tokenBytes(dtype: TokenDType): number {
  return dtype === 'uint16' ? 2 : 4;
}

/** The dtype a vocabulary needs: uint16 when every id fits (as the official .bin files). */
export function tokenDTypeFor(vocabSize: number): TokenDType {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

export class TokenFile implements TokenSource {
  readonly numTokens: number;
  private fd: number;

  constructor(readonly path: string, readonly dtype: TokenDType) {
    let size: number;
    try {
      size = fs.statSync(path).size;
    } catch {
      throw new LongLoraError(`${path}: token file not found; pass a file of ${dtype} token ids`);
    }
    const item = dtype === 'uint16' ? 2 : 4;
    if (size % item !== 0) {
      throw new LongLoraError(`${path}: ${size} bytes is not a whole number of ${dtype} tokens; is --data-dtype right (uint16 or uint32)?`);
    }
    this.numTokens = size / item;
    this.fd = fs.openSync(path, 'r');
  }

  /** Picks the dtype: explicit, or uint16 when the vocabulary fits (as the official .bin files). */
  static open(path: string, dtype: TokenDType | 'auto', vocabSize: number): TokenFile {
    return new TokenFile(path, dtype === 'auto' ? tokenDTypeFor(vocabSize) : dtype);
  }

  /** Tokens [start, start + count) as a source of their own (a held-out split, say). */
  span(start: number, count: number): TokenSource {
    if (start < 0 || count < 0 || start + count > this.numTokens) throw new LongLoraError(`${this.path}: span [${start}, ${start + count}) is outside its ${this.numTokens} tokens`);
    return {
      path: `${this.path}[${start}:${start + count}]`,
      numTokens: count,
      read: (s: number, n: number, vocabSize: number) => {
        if (s + n > count) throw new LongLoraError(`${this.path}: read past the end of span [${start}, ${start + count})`);
        return this.read(start + s, n, vocabSize);
      },
    };
  }

  /**
   * Reads the whole file once and fails on the first token outside the vocabulary, so bad
   * data is found before training rather than when its batch comes up, hours in (about a
   * second per GB).
   */
  checkVocabulary(vocabSize: number): void {
    const item = this.dtype === 'uint16' ? 2 : 4;
    const chunk = 1 << 22; // tokens per read
    const buf = new ArrayBuffer(chunk * item);
    const bytes = new Uint8Array(buf);
    const ids = item === 2 ? new Uint16Array(buf) : new Uint32Array(buf);
    let oddNonZero = 0; // uint16: tokens at odd positions that are not 0
    for (let start = 0; start < this.numTokens; start += chunk) {
      const n = Math.min(chunk, this.numTokens - start);
      if (fs.readSync(this.fd, bytes, 0, n * item, start * item) !== n * item) throw new LongLoraError(`${this.path}: short read at token ${start}`);
      for (let i = 0; i < n; i++) {
        if (ids[i]! >= vocabSize) {
          throw new LongLoraError(`${this.path}: token ${ids[i]} at position ${start + i} is outside the model's vocabulary (${vocabSize}); was the data tokenized for another model, or is --data-dtype wrong?`);
        }
        if ((start + i) & 1 && ids[i] !== 0) oddNonZero++;
      }
    }
    // uint32 ids below 65536 read as uint16 are valid ids with a 0 after each: garbage that
    // trains without an error. Real text never has token 0 at every other position.
    if (this.dtype === 'uint16' && this.numTokens >= 64 && oddNonZero === 0) {
      throw new LongLoraError(`${this.path}: read as uint16, every second token is 0: the file holds uint32 ids; pass --data-dtype uint32`);
    }
  }

  /** Tokens [start, start + n) as i32, checked against the vocabulary. */
  read(start: number, n: number, vocabSize: number): Int32Array {
    const item = this.dtype === 'uint16' ? 2 : 4;
    const bytes = Buffer.alloc(n * item);
    const got = fs.readSync(this.fd, bytes, 0, bytes.length, start * item);
    if (got !== bytes.length) throw new LongLoraError(`${this.path}: short read at token ${start} (file changed while training?)`);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = item === 2 ? bytes.readUInt16LE(i * 2) : bytes.readUInt32LE(i * 4);
      if (v >= vocabSize) {
        throw new LongLoraError(`${this.path}: token ${v} at position ${start + i} is outside the model's vocabulary (${vocabSize}); was the data tokenized for another model, or is --data-dtype wrong?`);
      }
      out[i] = v;
    }
    return out;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Where the sampler is: epoch and index into that epoch's order. */
export interface DataPosition {
  epoch: number;
  index: number;
}

/** 0..n-1 in an order that depends only on the seed and the epoch (Fisher–Yates). */
export function shuffledOrder(n: number, seed: number, epoch: number): Uint32Array {
  const o = new Uint32Array(n);
  for (let i = 0; i < o.length; i++) o[i] = i;
  const rng = new Rng((seed * 1000003 + epoch) >>> 0);
  for (let i = o.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = o[i]!;
    o[i] = o[j]!;
    o[j] = t;
  }
  return o;
}

/**
 * Fixed-length sequences of a token file in a shuffled order that depends only on the
 * seed and the epoch, so a run can resume at any position.
 */
export class SequenceSampler {
  readonly numSequences: number;
  private order: Uint32Array;
  private pos: DataPosition;

  constructor(readonly file: TokenSource, readonly seqLen: number, readonly vocabSize: number, readonly seed: number, start: DataPosition = { epoch: 0, index: 0 }) {
    this.numSequences = Math.floor(file.numTokens / seqLen);
    if (this.numSequences === 0) {
      throw new LongLoraError(`${file.path} holds ${file.numTokens} tokens, fewer than one training sequence of ${seqLen}; use a shorter --seq-len or more data`);
    }
    this.pos = { ...start };
    this.order = this.shuffled(start.epoch);
    if (start.index > this.numSequences) throw new LongLoraError(`data position ${start.index} is past the ${this.numSequences} sequences of ${file.path}; the data changed since the checkpoint`);
  }

  private shuffled(epoch: number): Uint32Array {
    return shuffledOrder(this.numSequences, this.seed, epoch);
  }

  position(): DataPosition {
    return { ...this.pos };
  }

  /** The next `B` sequences as ids [B·N], wrapping into a new epoch when needed. */
  next(B: number): Int32Array {
    const out = new Int32Array(B * this.seqLen);
    for (let b = 0; b < B; b++) {
      if (this.pos.index >= this.numSequences) {
        this.pos = { epoch: this.pos.epoch + 1, index: 0 };
        this.order = this.shuffled(this.pos.epoch);
      }
      const seq = this.order[this.pos.index++]!;
      out.set(this.file.read(seq * this.seqLen, this.seqLen, this.vocabSize), b * this.seqLen);
    }
    return out;
  }
}

/** Writes token ids as a binary stream (for tests and data preparation). */
export function writeTokenFile(path: string, ids: ArrayLike<number>, dtype: TokenDType): void {
  const arr = dtype === 'uint16' ? Uint16Array.from(ids) : Uint32Array.from(ids);
  fs.writeFileSync(path, new Uint8Array(arr.buffer));
}

/** Appends token ids to an open file through a buffer (corpora larger than memory). */
export class TokenWriter {
  private readonly buf: Uint16Array | Uint32Array;
  private fill = 0;
  /** Ids written so far. */
  count = 0;

  constructor(private readonly fd: number, readonly dtype: TokenDType, bufferTokens = 1 << 18) {
    this.buf = dtype === 'uint16' ? new Uint16Array(bufferTokens) : new Uint32Array(bufferTokens);
  }

  /** Appends ids; each must fit the dtype. */
  write(ids: ArrayLike<number>): void {
    const max = this.dtype === 'uint16' ? 0xffff : 0xffffffff;
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i]!;
      if (!(v >= 0 && v <= max)) throw new LongLoraError(`token id ${v} does not fit ${this.dtype}`);
      this.buf[this.fill++] = v;
      if (this.fill === this.buf.length) this.flush();
    }
    this.count += ids.length;
  }

  /** Writes out what is buffered. */
  flush(): void {
    if (this.fill === 0) return;
    const bytes = new Uint8Array(this.buf.buffer, 0, this.fill * this.buf.BYTES_PER_ELEMENT);
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(this.fd, bytes, off, bytes.length - off);
    this.fill = 0;
  }
}
