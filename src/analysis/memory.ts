/**
 * An estimate of the activation memory of one training micro-batch (B sequences of N
 * tokens): what the backward pass keeps, per decoder layer and token —
 *   RMSNorm inputs and outputs (4C), rotated q and k, v and the attention output
 *   (2·H·D + 2·Hkv·D), the log-sum-exp per head (H), and the MLP's gate, SiLU(gate), up
 *   and their product (4I) —
 * plus, when the attention probabilities are materialised (eager attention), H·N² per
 * layer for dense attention against H·N·G for S²-Attn. A fused kernel (FlashAttention,
 * and this project's attention) keeps only the log-sum-exp, so there S²-Attn saves compute,
 * not memory. With activation checkpointing only each layer's input (C per token) is kept,
 * and one layer's activations exist at a time while it is recomputed. The LM head and loss
 * run in chunks of 1024 rows (logits and their gradient, float32). Weights, gradients and
 * optimizer state are not included.
 */
import type { ModelShape } from './presets.js';

/** What the estimate assumes. */
export interface MemoryOptions {
  /** Sequences per micro-batch (default 1). */
  B?: number;
  /** Bytes per activation (2 for bf16, the official runs; 4 for f32). */
  bytes?: number;
  checkpointing: boolean;
  /** Attention probabilities kept for the backward pass (eager) or not (fused). */
  attention: 'fused' | 'eager';
  /** S²-Attn group size (N: dense). */
  G: number;
  /** Rows of the chunked LM head (default 1024). */
  headChunk?: number;
}

/** Activation bytes, by part. */
export interface MemoryEstimate {
  /** Bytes kept per layer for the backward pass (all of a layer's activations). */
  perLayer: number;
  /** Bytes of the attention probabilities per layer (0 when fused). */
  scoresPerLayer: number;
  /** Bytes kept across all layers at the peak. */
  layers: number;
  /** Embedding output and the chunked head. */
  other: number;
  total: number;
}

/** Activation bytes of one micro-batch at length N. */
export function activationMemory(m: ModelShape, N: number, o: MemoryOptions): MemoryEstimate {
  const B = o.B ?? 1;
  const bytes = o.bytes ?? 2;
  const { hidden: C, intermediate: I, layers: L, heads: H, kvHeads: Hkv, headDim: D, vocab: V } = m;
  const perToken = 4 * C + 2 * H * D + 2 * Hkv * D + 4 * I;
  const lse = B * N * H * 4;
  const scores = o.attention === 'eager' ? B * H * N * Math.min(o.G, N) * bytes : 0;
  const perLayer = B * N * perToken * bytes + lse + scores;
  const layers = o.checkpointing ? L * B * N * C * bytes + perLayer : L * perLayer;
  const other = B * N * C * bytes + 2 * Math.min(o.headChunk ?? 1024, B * N) * V * 4;
  return { perLayer, scoresPerLayer: scores, layers, other, total: layers + other };
}

/** Bytes as GiB (or MiB below 1 GiB). */
export function fmtBytes(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`;
}

/** A table of estimates per length: fused vs eager attention, dense vs S², with and without checkpointing. */
export function formatMemoryTable(m: ModelShape, lengths: readonly number[], groupRatio: number, bytes: number): string {
  const cols = [
    ['fused', false, false], ['fused+ckpt', false, true],
    ['eager dense', true, false], ['eager S²', true, false, 's2'], ['eager dense+ckpt', true, true], ['eager S²+ckpt', true, true, 's2'],
  ] as const;
  const head = ['N', ...cols.map((c) => c[0])];
  const body = lengths.map((N) => [String(N), ...cols.map((c) => {
    const G = c.length > 3 ? Math.max(1, Math.round(N * groupRatio)) : N;
    return fmtBytes(activationMemory(m, N, { bytes, checkpointing: c[2], attention: c[1] ? 'eager' : 'fused', G }).total);
  })]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `${m.name}: activation memory of one training sequence (${bytes === 2 ? 'bf16' : `${bytes}-byte`} activations; weights, gradients and optimizer state not included)`,
    line(head), ...body.map(line),
    'fused: attention keeps only its log-sum-exp (FlashAttention, this project) — the same for dense and S²-Attn; eager: the H·N×N probabilities are kept (H·N×G with S²-Attn). ckpt: activation checkpointing per layer.',
  ].join('\n');
}
