/**
 * Tensor: a shape, a dtype and a reference-counted device buffer. Row-major, always
 * contiguous. Ownership rules are in scope.ts.
 */
import type { Backend, DeviceBuffer } from '../backend/backend.js';
import { currentBackend } from '../backend/registry.js';
import { InternalError, LongLoraError } from '../errors.js';
import type { DType, HostArray } from './dtype.js';
import { hostMatches, isFloat, toFloatArray } from './dtype.js';
import { setTensorPredicate, track, untrack } from './scope.js';

/** A device buffer shared by a tensor and its views; freed when the last holder releases it. */
export class Storage {
  private refs = 1;
  constructor(readonly backend: Backend, readonly buffer: DeviceBuffer) {}
  get refCount(): number { return this.refs; }
  retain(): this {
    if (this.refs <= 0) throw new InternalError('retain of a freed storage');
    this.refs++;
    return this;
  }
  release(): void {
    if (this.refs <= 0) throw new InternalError('storage released twice');
    if (--this.refs === 0) this.backend.free(this.buffer);
  }
}

export type Shape = readonly number[];

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function checkShape(shape: Shape): void {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new LongLoraError(`invalid shape [${shape.join(', ')}]: dims must be non-negative integers`);
  }
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  /** Gradients flow to this tensor (trainable parameter, or result of an op on one). */
  requiresGrad = false;
  /** False for tensors produced by a recorded op; leaves receive `.grad`. */
  isLeaf = true;
  /** Accumulated gradient of a leaf that requires grad. Kept; owned by the leaf. */
  grad: Tensor | null = null;
  /** Optional name (parameter path) for messages. */
  name: string | undefined;
  /** Exempt from disposal by `tidy` (see scope.ts). */
  kept = false;
  private disposedFlag = false;

  /** Prefer the factories in ops/create.ts; this takes over one reference to `storage`. */
  constructor(readonly storage: Storage, shape: Shape, readonly dtype: DType, tracked = true) {
    if (storage.buffer.dtype !== dtype) throw new InternalError(`tensor dtype ${dtype} over a ${storage.buffer.dtype} buffer`);
    if (numelOf(shape) !== storage.buffer.numel) {
      throw new InternalError(`tensor shape [${shape.join(',')}] over a buffer of ${storage.buffer.numel} elements`);
    }
    this.shape = Object.freeze([...shape]);
    if (tracked) track(this);
  }

  /** A new uninitialised tensor on `backend` (default: the current backend). */
  static empty(shape: Shape, dtype: DType, backend: Backend = currentBackend()): Tensor {
    checkShape(shape);
    return new Tensor(new Storage(backend, backend.alloc(dtype, numelOf(shape))), shape, dtype);
  }

  get backend(): Backend { return this.storage.backend; }
  get buffer(): DeviceBuffer {
    if (this.disposedFlag) throw new LongLoraError(`use of a disposed tensor${this.name ? ` '${this.name}'` : ''} [${this.shape.join(', ')}]`);
    return this.storage.buffer;
  }
  get size(): number { return this.storage.buffer.numel; }
  get rank(): number { return this.shape.length; }
  get disposed(): boolean { return this.disposedFlag; }

  /** Frees this tensor's reference (and its gradient). Idempotent. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    untrack(this);
    this.storage.release();
    this.grad?.dispose();
    this.grad = null;
  }

  /** Exempts this tensor from `tidy` disposal; the caller now owns it. */
  keep(): this {
    this.kept = true;
    untrack(this);
    return this;
  }

  /**
   * A tensor sharing this one's buffer (no copy) with another shape of equal size.
   * Not recorded for autograd: use `reshape` from ops for that.
   */
  view(shape: Shape, tracked = true): Tensor {
    if (numelOf(shape) !== this.size) {
      throw new LongLoraError(`cannot view [${this.shape.join(', ')}] (${this.size} elements) as [${shape.join(', ')}]`);
    }
    void this.buffer; // throws if disposed
    return new Tensor(this.storage.retain(), shape, this.dtype, tracked);
  }

  /** Marks a float tensor as a trainable leaf. */
  requireGrad(): this {
    if (this.dtype !== 'f32' && this.dtype !== 'f64') {
      throw new LongLoraError(`tensor${this.name ? ` '${this.name}'` : ''} is ${this.dtype}; trainable tensors must be f32 (or f64). ` +
        'Load the model with dtype f32 to train this tensor, or keep it frozen and train LoRA adapters on it');
    }
    this.requiresGrad = true;
    return this;
  }

  /** Host copy of the raw storage (f16/bf16 as 16-bit patterns). Async: GPUs read back later. */
  async data(): Promise<HostArray> {
    return this.backend.download(this.buffer);
  }

  /** Host copy as numbers (f16/bf16 converted to f32). */
  async floats(): Promise<Float32Array | Float64Array> {
    const d = await this.data();
    if (this.dtype === 'f64') return d as Float64Array;
    if (this.dtype === 'f32') return d as Float32Array;
    if (isFloat(this.dtype)) return toFloatArray(d, this.dtype, 'f32');
    return Float64Array.from(d);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new LongLoraError(`item() needs a one-element tensor, got shape [${this.shape.join(', ')}]`);
    return (await this.floats())[0]!;
  }

  toString(): string {
    return `Tensor(${this.name ? `${this.name}, ` : ''}[${this.shape.join(', ')}], ${this.dtype})`;
  }
}

setTensorPredicate((v: unknown): v is Tensor => v instanceof Tensor);

/**
 * A tensor holding a copy of host data. Without a dtype it is the array's own: f32, f64,
 * i32 or u8 (a Uint16Array holds bf16 or f16 bits, so it needs one).
 */
export function fromHost(data: HostArray, shape: Shape, dtype?: DType, backend: Backend = currentBackend()): Tensor {
  checkShape(shape);
  dtype ??= dtypeOfArray(data);
  if (!hostMatches(dtype, data)) throw new LongLoraError(`fromHost: ${data.constructor.name} cannot hold ${dtype}`);
  if (data.length !== numelOf(shape)) {
    throw new LongLoraError(`fromHost: ${data.length} values do not fill shape [${shape.join(', ')}] (${numelOf(shape)})`);
  }
  const t = Tensor.empty(shape, dtype, backend);
  backend.upload(t.buffer, data);
  return t;
}

/** The dtype a host array holds by its type (fromHost without a dtype). */
function dtypeOfArray(data: HostArray): DType {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Float64Array) return 'f64';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint8Array) return 'u8';
  throw new LongLoraError(`fromHost: a ${(data as object).constructor.name} holds 16-bit floats as bits; say which: fromHost(data, shape, 'bf16') or 'f16'`);
}
