/**
 * The key/value cache for generation: per layer, K and V [B, capacity, Hkv, D] after
 * RoPE, filled as tokens are decoded, so each new token costs attention over the cache
 * instead of recomputing the whole sequence. It holds f32 (the activations' dtype) or,
 * for half the memory at long contexts, bf16 or f16: new keys and values are rounded to
 * it as they are written, and the attention kernels read it as it is stored.
 */
import type { Backend } from '../../backend/backend.js';
import { LongLoraError } from '../../errors.js';
import { zeros } from '../../tensor/ops/create.js';
import { cast } from '../../tensor/ops/elementwise.js';
import { isPrecision, itemSize, type Precision } from '../../tensor/dtype.js';
import type { Tensor } from '../../tensor/tensor.js';
import { stridesOf } from '../../tensor/ops/util.js';
import type { LlamaConfig } from './config.js';

/** What a KV cache may hold: f32, or 16 bits for half the memory (f64 for gradient-check models). */
export type KVCacheDType = Precision | 'f64';

export class KVCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /** Tokens already in the cache (the position of the next one). */
  length = 0;

  constructor(config: LlamaConfig, readonly B: number, readonly capacity: number, readonly dtype: KVCacheDType, backend: Backend) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new LongLoraError(`KV cache capacity must be a positive integer, got ${capacity}`);
    if (!isPrecision(dtype) && dtype !== 'f64') throw new LongLoraError(`KV cache dtype must be f32, bf16 or f16, got ${dtype}`);
    const shape = [B, capacity, config.numKvHeads, config.headDim];
    for (let i = 0; i < config.numLayers; i++) {
      this.k.push(zeros(shape, dtype, backend).keep());
      this.v.push(zeros(shape, dtype, backend).keep());
    }
  }

  /** Checks that N more tokens fit. */
  reserve(N: number): void {
    if (this.length + N > this.capacity) {
      throw new LongLoraError(`KV cache is full: ${this.length} + ${N} tokens exceed its capacity ${this.capacity}; create a larger cache (e.g. prompt + max new tokens)`);
    }
  }

  /** Bytes the cache holds. */
  get bytes(): number {
    return this.k.reduce((s, t) => s + 2 * t.size * itemSize(this.dtype), 0);
  }

  /** Writes k, v [B, N, Hkv, D] of `layer` at rows [length, length + N), rounded to the cache's dtype. */
  write(layer: number, k: Tensor, v: Tensor): void {
    const [B, N, Hkv, D] = k.shape as [number, number, number, number];
    const dst = this.k[layer]!;
    if (k.dtype !== this.dtype) {
      const [k16, v16] = [cast(k, this.dtype), cast(v, this.dtype)];
      this.write(layer, k16, v16);
      k16.dispose();
      v16.dispose();
      return;
    }
    const args = {
      shape: [B, N * Hkv * D],
      srcOffset: 0, srcStrides: stridesOf([B, N * Hkv * D]),
      dstOffset: this.length * Hkv * D, dstStrides: [this.capacity * Hkv * D, 1],
      accumulate: false,
    };
    dst.backend.copy(k.buffer, dst.buffer, args);
    dst.backend.copy(v.buffer, this.v[layer]!.buffer, args);
  }

  /** Forgets the cached tokens (the buffers are reused). */
  reset(): void {
    this.length = 0;
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}
