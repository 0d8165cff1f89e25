/**
 * Attention composed from plain differentiable ops with an explicit additive mask: the
 * oracle the fused kernels (dense and S²) are tested against. O(N²) memory — tests only.
 *
 * The mask is written straight from the SPEC's definitions (segment ids and the literal
 * roll), independently of the key ranges in mask.ts that the kernels use.
 */
import type { AttentionMask } from '../backend/backend.js';
import { fromHost } from '../tensor/ops/create.js';
import { add, scale } from '../tensor/ops/elementwise.js';
import { matmul } from '../tensor/ops/matmul.js';
import { broadcastTo, permute, reshape, slice } from '../tensor/ops/shape.js';
import { softmax } from '../nn/softmax.js';
import type { Tensor } from '../tensor/tensor.js';
import { attentionArgs, type AttentionOptions } from './attention.js';

/** Whether query position i may see key position j in head h (SPEC §2 definitions). */
export function allowedByDefinition(mask: AttentionMask, H: number, h: number, i: number, j: number, N: number): boolean {
  if (mask.kind === 'causal') return j <= i;
  const G = mask.group;
  const shifted = h >= Math.floor(H / 2) && mask.form !== 'short';
  if (!shifted) return j <= i && Math.floor(j / G) === Math.floor(i / G);
  if (mask.form === 'segmented') return j <= i && Math.floor((j + G / 2) / G) === Math.floor((i + G / 2) / G);
  // roll: the sequence is rolled by −G/2, so original token t sits at (t − G/2) mod N,
  // and attention is causal inside groups of the rolled sequence.
  const pi = (((i - G / 2) % N) + N) % N;
  const pj = (((j - G / 2) % N) + N) % N;
  return pj <= pi && Math.floor(pj / G) === Math.floor(pi / G);
}

/** Additive mask [H, Nq, Nk]: 0 where allowed, −∞ elsewhere. */
export function maskMatrix(mask: AttentionMask, H: number, Nq: number, Nk: number, qOffset: number): Float64Array {
  const m = new Float64Array(H * Nq * Nk);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < Nq; i++) {
      for (let j = 0; j < Nk; j++) {
        if (!allowedByDefinition(mask, H, h, qOffset + i, j, Nk)) m[(h * Nq + i) * Nk + j] = -Infinity;
      }
    }
  }
  return m;
}

/** softmax(q·kᵀ·scale + mask)·v with GQA by repeating kv heads. Same signature as `attention`. */
export function referenceAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const a = attentionArgs(q, k, v, opts);
  const { B, Nq, Nk, H, Hkv, D } = a;
  const rep = H / Hkv;
  const expand = (t: Tensor): Tensor =>
    reshape(broadcastTo(reshape(t, [B, Nk, Hkv, 1, D]), [B, Nk, Hkv, rep, D]), [B, Nk, H, D]);
  const keys = (t: Tensor): Tensor => (a.kvStride > Nk ? slice(t, 1, 0, Nk) : t); // (B, Nk, Hkv, D)
  const qh = permute(q, [0, 2, 1, 3]); // (B, H, Nq, D)
  const kh = permute(expand(keys(k)), [0, 2, 1, 3]); // (B, H, Nk, D)
  const vh = permute(expand(keys(v)), [0, 2, 1, 3]); // (B, H, Nk, D)
  const scores = scale(matmul(qh, kh, { transB: true }), a.scale); // (B, H, Nq, Nk)
  const maskT = fromHost(
    q.dtype === 'f32' ? Float32Array.from(maskMatrix(a.mask, H, Nq, Nk, a.qOffset)) : maskMatrix(a.mask, H, Nq, Nk, a.qOffset),
    [H, Nq, Nk], q.dtype, q.backend);
  const p = softmax(add(scores, maskT)); // (B, H, Nq, Nk)
  const o = matmul(p, vh); // (B, H, Nq, D)
  return permute(o, [0, 2, 1, 3]); // (B, Nq, H, D)
}
