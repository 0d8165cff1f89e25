/**
 * Rotary position embedding, rotate-half layout (Hugging Face Llama), with the position
 * scalings of rope-scaling.ts: linear interpolation (the angle of position p and frequency
 * i is (p / factor) · theta^(−2i/D), SPEC §3), dynamic NTK, YaRN and Llama 3.1.
 */
import type { Backend } from '../backend/backend.js';
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { fromHost } from '../tensor/ops/create.js';
import { backendOf, computeDType, fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';
import { checkRopeScaling, ropeFrequencies, type RopeScaling } from './rope-scaling.js';

export type { Llama3Scaling, RopeFrequencies, RopeScaling, YarnScaling } from './rope-scaling.js';
export { ropeFrequencies, ropeInvFreq } from './rope-scaling.js';

export interface RopeTables {
  /** [N, D/2] cosines and sines for positions offset..offset+N−1. */
  cos: Tensor;
  sin: Tensor;
}

/**
 * cos and sin tables [N, D/2] (row-major) for positions offset..offset+N−1, multiplied by
 * the scaling's attention factor (YaRN; 1 otherwise) as Hugging Face does. Dynamic NTK
 * uses the current length offset + N. `maxPositionEmbeddings` is the config's value:
 * required for dynamic, the default original length of yarn / llama3.
 */
export function ropeAngles(
  N: number, D: number, theta: number, scaling: RopeScaling, offset = 0, maxPositionEmbeddings?: number,
): { cos: Float64Array; sin: Float64Array } {
  if (D % 2 !== 0) throw new LongLoraError(`RoPE needs an even head dim, got ${D}`);
  const { invFreq, attentionFactor: af } = ropeFrequencies(D, theta, scaling, offset + N, maxPositionEmbeddings);
  const half = D / 2;
  const cos = new Float64Array(N * half);
  const sin = new Float64Array(N * half);
  for (let n = 0; n < N; n++) {
    const p = offset + n;
    for (let i = 0; i < half; i++) {
      const a = p * invFreq[i]!;
      cos[n * half + i] = af * Math.cos(a);
      sin[n * half + i] = af * Math.sin(a);
    }
  }
  return { cos, sin };
}

/**
 * Device cos/sin tables, cached per (N, dtype) for sequences starting at position 0.
 * Owns the cached ones: call `dispose()` when done.
 */
export class RotaryEmbedding {
  private cache = new Map<string, RopeTables>();
  /**
   * `maxPositionEmbeddings` (the config's) is needed by dynamic scaling and is the default
   * original length of yarn / llama3.
   */
  constructor(readonly D: number, readonly theta: number, readonly scaling: RopeScaling, readonly maxPositionEmbeddings?: number) {
    checkRopeScaling(scaling, 'RotaryEmbedding');
    ropeFrequencies(D, theta, scaling, 0, maxPositionEmbeddings); // fail now, not at the first forward
  }

  /**
   * Tables for positions offset..offset+N−1. Those starting at 0 (training, evaluation,
   * a prompt) are cached and owned here; later ones (decoding with a KV cache) are fresh
   * tensors owned by the caller's scope, so decoding does not grow the cache.
   */
  tables(N: number, dtype: 'f32' | 'f64', backend: Backend, offset = 0): RopeTables {
    const key = `${N}:${dtype}:${backend.name}`;
    const hit = offset === 0 ? this.cache.get(key) : undefined;
    if (hit) return hit;
    const { cos, sin } = ropeAngles(N, this.D, this.theta, this.scaling, offset, this.maxPositionEmbeddings);
    const conv = (a: Float64Array): Tensor => fromHost(dtype === 'f32' ? Float32Array.from(a) : a, [N, this.D / 2], dtype, backend);
    const t = { cos: conv(cos), sin: conv(sin) };
    if (offset === 0) {
      t.cos.keep();
      t.sin.keep();
      this.cache.set(key, t);
    }
    return t;
  }

  dispose(): void {
    for (const t of this.cache.values()) { t.cos.dispose(); t.sin.dispose(); }
    this.cache.clear();
  }
}

/** Applies RoPE to x [B, N, H, D] with tables [N, D/2]. */
export function rope(x: Tensor, t: RopeTables): Tensor {
  if (x.rank !== 4) throw new LongLoraError(`rope: expected [B, N, H, D], got ${fmt(x.shape)}`);
  const [B, N, H, D] = x.shape as [number, number, number, number];
  if (t.cos.shape[0] !== N || t.cos.shape[1] !== D / 2) {
    throw new LongLoraError(`rope: tables ${fmt(t.cos.shape)} do not fit input ${fmt(x.shape)} (need [${N}, ${D / 2}])`);
  }
  const be = backendOf('rope', x, t.cos, t.sin);
  computeDType('rope', x, t.cos, t.sin);
  const out = Tensor.empty(x.shape, x.dtype, be);
  be.rope(x.buffer, t.cos.buffer, t.sin.buffer, out.buffer, B, N, H, D, false);
  record('rope', out, [x], [t.cos, t.sin], (g, [c, s]) => {
    const dx = Tensor.empty(x.shape, x.dtype, be);
    be.rope(g.buffer, c!.buffer, s!.buffer, dx.buffer, B, N, H, D, true);
    return [dx];
  });
  return out;
}
