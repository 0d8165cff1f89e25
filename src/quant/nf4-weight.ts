/**
 * An NF4 weight on a backend: the packed codes, the 8-bit scale codes and the float32 scale
 * absmax values as device tensors, plus views of the two code books (shared by every
 * weight quantised together, and freed with the last of them: storages are reference
 * counted). Dequantisation is `Backend.dequantize4bit`; decoding runs `Backend.linear4bit`
 * where the backend has it.
 */
import type { Backend } from '../backend/backend.js';
import { currentBackend } from '../backend/registry.js';
import { LongLoraError } from '../errors.js';
import { PackedWeight } from '../nn/packed-weight.js';
import { fromHost, Tensor } from '../tensor/tensor.js';
import { DYNAMIC_CODE, NF4_CODE } from './codebooks.js';
import { digestNf4 } from './fingerprint.js';
import { NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE, checkNf4Data, quantizeNf4, type Nf4Data } from './nf4.js';

/** The NF4 and 8-bit dynamic code books as float32 device tensors (kept; owner disposes). */
export class Nf4CodeBooks {
  readonly code4: Tensor;
  readonly code8: Tensor;

  constructor(readonly backend: Backend = currentBackend()) {
    this.code4 = fromHost(NF4_CODE.slice(), [16], 'f32', backend).keep();
    this.code8 = fromHost(DYNAMIC_CODE.slice(), [256], 'f32', backend).keep();
  }

  /** Releases this handle; weights holding views keep the storage until they are freed. */
  dispose(): void {
    this.code4.dispose();
    this.code8.dispose();
  }
}

export interface Nf4WeightOptions {
  backend?: Backend;
  /** Code books to share (default: a fresh pair, owned by this weight alone). */
  books?: Nf4CodeBooks;
  /** Name for error messages. */
  name?: string;
}

export class Nf4Weight extends PackedWeight {
  readonly format = 'nf4';
  readonly shape: readonly [number, number];
  readonly backend: Backend;
  /** Float32 mean of the block scales (the double quantisation's offset). */
  readonly scaleOffset: number;
  /** sha256 of the quantised contents and shape (fingerprint.ts). */
  readonly digest: string;
  private readonly packed: Tensor;
  private readonly scaleCodes: Tensor;
  private readonly scaleAbsmax: Tensor;
  private readonly code4: Tensor;
  private readonly code8: Tensor;
  private disposed = false;

  /** Uploads quantised host data for a weight of `shape` [out, in]. */
  constructor(q: Nf4Data, shape: readonly number[], opts: Nf4WeightOptions = {}) {
    super();
    const what = opts.name ?? 'weight';
    if (shape.length !== 2 || shape[0]! * shape[1]! !== q.n) {
      throw new LongLoraError(`NF4: ${what} of ${q.n} values cannot have shape [${shape.join(', ')}] (a linear weight is [out, in])`);
    }
    checkNf4Data(q, what);
    this.shape = [shape[0]!, shape[1]!];
    this.backend = opts.backend ?? opts.books?.backend ?? currentBackend();
    if (opts.books && opts.books.backend !== this.backend) throw new LongLoraError(`NF4: ${what}: the code books live on backend ${opts.books.backend.name}, the weight on ${this.backend.name}`);
    this.scaleOffset = q.scaleOffset;
    this.digest = digestNf4(q, this.shape);
    const own = opts.books ? null : new Nf4CodeBooks(this.backend);
    const books = opts.books ?? own!;
    this.code4 = books.code4.view([16], false).keep();
    this.code8 = books.code8.view([256], false).keep();
    own?.dispose();
    this.packed = fromHost(q.packed, [q.packed.length], 'u8', this.backend).keep();
    this.scaleCodes = fromHost(q.scaleCodes, [q.scaleCodes.length], 'u8', this.backend).keep();
    this.scaleAbsmax = fromHost(q.scaleAbsmax, [q.scaleAbsmax.length], 'f32', this.backend).keep();
  }

  /** Quantises float32 values [out, in] (row-major) and uploads them. */
  static quantize(values: Float32Array, shape: readonly number[], opts: Nf4WeightOptions = {}): Nf4Weight {
    return new Nf4Weight(quantizeNf4(values, opts.name), shape, opts);
  }

  get bytes(): number {
    return this.packed.size + this.scaleCodes.size + 4 * this.scaleAbsmax.size;
  }

  /** The quantised data back on the host (for tests and inspection). */
  async data(): Promise<Nf4Data> {
    return {
      n: this.numel,
      packed: (await this.packed.data()) as Uint8Array,
      scaleCodes: (await this.scaleCodes.data()) as Uint8Array,
      scaleAbsmax: (await this.scaleAbsmax.data()) as Float32Array,
      scaleOffset: this.scaleOffset,
    };
  }

  protected parts(): readonly Tensor[] {
    return [this.packed, this.scaleCodes, this.scaleAbsmax, this.code4, this.code8];
  }

  protected expand(parts: readonly Tensor[], dtype: 'f32' | 'f64'): Tensor {
    const [packed, scaleCodes, scaleAbsmax, code4, code8] = parts as [Tensor, Tensor, Tensor, Tensor, Tensor];
    const out = Tensor.empty(this.shape, dtype, this.backend);
    this.backend.dequantize4bit(packed.buffer, code4.buffer, scaleCodes.buffer, code8.buffer, scaleAbsmax.buffer, out.buffer, {
      n: this.numel, blockSize: NF4_BLOCK_SIZE, scaleBlockSize: SCALE_BLOCK_SIZE, scaleOffset: this.scaleOffset,
    });
    return out;
  }

  protected override fusedLinear(x: Tensor, parts: readonly Tensor[]): Tensor | null {
    const be = this.backend;
    if (!be.linear4bit || x.dtype !== 'f32' || x.backend !== be) return null;
    const [packed, scaleCodes, scaleAbsmax, code4, code8] = parts as [Tensor, Tensor, Tensor, Tensor, Tensor];
    const [n, k] = this.shape;
    const out = Tensor.empty([...x.shape.slice(0, -1), n], 'f32', be);
    const ran = be.linear4bit(x.buffer, packed.buffer, code4.buffer, scaleCodes.buffer, code8.buffer, scaleAbsmax.buffer, out.buffer, {
      m: x.size / k, n, k, blockSize: NF4_BLOCK_SIZE, scaleBlockSize: SCALE_BLOCK_SIZE, scaleOffset: this.scaleOffset,
    });
    if (ran) return out;
    out.dispose();
    return null;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.parts()) t.dispose();
  }
}
