/**
 * Attention as one differentiable op over the backend's fused kernel: dense causal for
 * evaluation and generation, S²-Attn for training (mask.ts). Memory of the reference
 * kernel is O(N) per query row; fused kernels on fast backends are O(N·D) per head.
 */
import type { AttentionArgs, AttentionMask } from '../backend/backend.js';
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { backendOf, computeDType, fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';
import { validateMask } from './mask.js';

export interface AttentionOptions {
  mask?: AttentionMask;
  /** Softmax scale; default 1/√D. */
  scale?: number;
  /** Absolute position of the first query (generation with a KV cache). */
  qOffset?: number;
  /** Valid keys when k and v are a preallocated cache with more rows (default: all rows). */
  kvLength?: number;
}

export const CAUSAL: AttentionMask = { kind: 'causal' };

/** Validates shapes and builds the kernel arguments. */
export function attentionArgs(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): AttentionArgs {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new LongLoraError(`attention: expected q [B, N, H, D], k and v [B, N, Hkv, D], got ${fmt(q.shape)}, ${fmt(k.shape)}, ${fmt(v.shape)}`);
  }
  const [B, Nq, H, D] = q.shape as [number, number, number, number];
  const [Bk, kvStride, Hkv, Dk] = k.shape as [number, number, number, number];
  const Nk = opts.kvLength ?? kvStride;
  if (!Number.isInteger(Nk) || Nk < 1 || Nk > kvStride) throw new LongLoraError(`attention: kvLength ${Nk} must be in [1, ${kvStride}] (the rows of k and v)`);
  if (Bk !== B || Dk !== D || v.shape.some((s, i) => s !== k.shape[i])) {
    throw new LongLoraError(`attention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} do not agree`);
  }
  if (H % Hkv !== 0) throw new LongLoraError(`attention: ${H} query heads are not a multiple of ${Hkv} key/value heads`);
  const mask = opts.mask ?? CAUSAL;
  const qOffset = opts.qOffset ?? 0;
  if (mask.kind === 's2' && (qOffset !== 0 || Nq !== Nk)) {
    throw new LongLoraError('attention: S²-Attn is for training (aligned queries and keys); use dense causal attention with a KV cache');
  }
  validateMask(mask, Nq);
  if (qOffset + Nq > Nk) throw new LongLoraError(`attention: queries reach position ${qOffset + Nq - 1} but only ${Nk} keys exist`);
  return { B, Nq, Nk, kvStride, H, Hkv, D, scale: opts.scale ?? 1 / Math.sqrt(D), qOffset, mask };
}

/** q [B, Nq, H, D], k and v [B, Nk, Hkv, D] → [B, Nq, H, D]. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const args = attentionArgs(q, k, v, opts);
  const be = backendOf('attention', q, k, v);
  const dt = computeDType('attention', q, k, v);
  const out = Tensor.empty(q.shape, q.dtype, be);
  const lse = Tensor.empty([args.B, args.H, args.Nq], dt, be); // f32 even for 16-bit q, k, v
  be.attention(q.buffer, k.buffer, v.buffer, out.buffer, lse.buffer, args);
  record('attention', out, [q, k, v], [q, k, v, out, lse], (g, [sq, sk, sv, so, sl], needs) => {
    const dq = Tensor.empty(q.shape, q.dtype, be);
    const dk = Tensor.empty(k.shape, k.dtype, be);
    const dv = Tensor.empty(v.shape, v.dtype, be);
    be.attentionBackward(sq!.buffer, sk!.buffer, sv!.buffer, so!.buffer, sl!.buffer, g.buffer,
      dq.buffer, dk.buffer, dv.buffer, args);
    return [needs[0] ? dq : null, needs[1] ? dk : null, needs[2] ? dv : null];
  });
  lse.dispose();
  return out;
}
