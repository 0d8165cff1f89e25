/**
 * Pre-tokenized corpora: a flat stream of token ids in a binary file (uint16 or uint32,
 * little-endian, as the official evaluation data), read lazily, cut into training
 * sequences of exactly `seqLen` tokens (continued pre-training: documents already joined
 * with EOS; labels = inputs), visited in a seeded shuffled order per epoch.
 */
import fs from 'node:fs';
import { LongLoraError } from '../errors.js';
import { Rng } from '../tensor/random.js';

export type TokenDType = 'uint16' | 'uint32';

export class TokenFile {
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
    return new TokenFile(path, dtype === 'auto' ? (vocabSize <= 65536 ? 'uint16' : 'uint32') : dtype);
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

/**
 * Fixed-length sequences of a token file in a shuffled order that depends only on the
 * seed and the epoch, so a run can resume at any position.
 */
export class SequenceSampler {
  readonly numSequences: number;
  private order: Uint32Array;
  private pos: DataPosition;

  constructor(readonly file: TokenFile, readonly seqLen: number, readonly vocabSize: number, readonly seed: number, start: DataPosition = { epoch: 0, index: 0 }) {
    this.numSequences = Math.floor(file.numTokens / seqLen);
    if (this.numSequences === 0) {
      throw new LongLoraError(`${file.path} holds ${file.numTokens} tokens, fewer than one training sequence of ${seqLen}; use a shorter --seq-len or more data`);
    }
    this.pos = { ...start };
    this.order = this.shuffled(start.epoch);
    if (start.index > this.numSequences) throw new LongLoraError(`data position ${start.index} is past the ${this.numSequences} sequences of ${file.path}; the data changed since the checkpoint`);
  }

  private shuffled(epoch: number): Uint32Array {
    const o = new Uint32Array(this.numSequences);
    for (let i = 0; i < o.length; i++) o[i] = i;
    const rng = new Rng((this.seed * 1000003 + epoch) >>> 0);
    for (let i = o.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = o[i]!;
      o[i] = o[j]!;
      o[j] = t;
    }
    return o;
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
