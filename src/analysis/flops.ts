/**
 * Forward FLOPs of a Llama by component, in the convention of the LongLoRA paper's table
 * (SPEC §8): one sequence of N tokens, every matmul of [m, k]·[k, n] counted as 2·m·n·k,
 * attention counted over the full N×N score matrix (QKᵀ and AV, no causal halving),
 * "other" the LM head (RMSNorm, RoPE, softmax and SiLU are below 0.1% and left out).
 * With S²-Attn every head attends inside N/G groups of G×G (the paper's roll form; the
 * segmented form's shifted heads have one group fewer and two half groups, NG − G²/2
 * instead of NG per head, a difference that vanishes as N/G grows). This convention
 * reproduces the paper's anchors for Llama-2 7B: 24.5% attention at 8k, 72.2% at 64k
 * (65,536), and 39.4% at 64k with S²-Attn.
 */
import type { ModelShape } from './presets.js';

/** Forward FLOPs of one sequence by component. */
export interface FlopsBreakdown {
  N: number;
  /** Group size (N for dense attention). */
  G: number;
  /** QKᵀ and AV, all layers. */
  attention: number;
  /** q, k, v, o projections, all layers. */
  projections: number;
  /** gate, up, down, all layers. */
  ffn: number;
  /** The LM head. */
  other: number;
  total: number;
  /** attention / total. */
  attentionShare: number;
}

/** Forward FLOPs for one sequence of N tokens; `G` the S²-Attn group size (default N: dense). */
export function forwardFlops(m: ModelShape, N: number, G = N): FlopsBreakdown {
  const { hidden: C, intermediate: I, layers: L, heads: H, kvHeads: Hkv, headDim: D, vocab: V } = m;
  const proj = 2 * N * C * (H * D) + 2 * 2 * N * C * (Hkv * D) + 2 * N * (H * D) * C; // q, k + v, o
  const attn = 2 * 2 * N * Math.min(G, N) * H * D; // QKᵀ and AV over N/G groups of G×G
  const ffn = 3 * 2 * N * C * I;
  const other = 2 * N * C * V;
  const attention = L * attn;
  const projections = L * proj;
  const f = L * ffn;
  const total = attention + projections + f + other;
  return { N, G: Math.min(G, N), attention, projections, ffn: f, other, total, attentionShare: attention / total };
}

/** Dense and S²-Attn (group = ratio · N) breakdowns at each length. */
export function flopsTable(m: ModelShape, lengths: readonly number[], groupRatio = 0.25): Array<{ dense: FlopsBreakdown; s2: FlopsBreakdown }> {
  return lengths.map((N) => ({ dense: forwardFlops(m, N), s2: forwardFlops(m, N, Math.max(1, Math.round(N * groupRatio))) }));
}

/** FLOPs as a short string in T (10^12) or G. */
export function fmtFlops(x: number): string {
  if (x >= 1e15) return `${(x / 1e15).toFixed(2)}P`;
  if (x >= 1e12) return `${(x / 1e12).toFixed(1)}T`;
  return `${(x / 1e9).toFixed(1)}G`;
}

/** The breakdown table as text: one row per length, dense and S²-Attn. */
export function formatFlopsTable(m: ModelShape, rows: ReturnType<typeof flopsTable>, groupRatio: number): string {
  const head = ['N', 'total', 'attention', 'proj', 'FFN', 'other', 'attn %', `S² total`, 'S² attn %'];
  const body = rows.map(({ dense: d, s2 }) => [
    String(d.N), fmtFlops(d.total), fmtFlops(d.attention), fmtFlops(d.projections), fmtFlops(d.ffn), fmtFlops(d.other),
    `${(100 * d.attentionShare).toFixed(1)}%`, fmtFlops(s2.total), `${(100 * s2.attentionShare).toFixed(1)}%`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `${m.name}: forward FLOPs of one sequence (C ${m.hidden}, I ${m.intermediate}, L ${m.layers}, H ${m.heads}, Hkv ${m.kvHeads}, D ${m.headDim}, V ${m.vocab})`,
    line(head),
    ...body.map(line),
    `convention: each matmul 2·m·n·k; attention = QKᵀ + AV over the full N×N (no causal halving); other = LM head; S²-Attn: group ${groupRatio} · N, N/G groups of G×G per head.`,
    'A training step costs about 3× the forward (4× with activation checkpointing).',
  ].join('\n');
}
