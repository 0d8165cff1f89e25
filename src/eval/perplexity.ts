/**
 * Perplexity of a token stream, by two procedures (always with dense causal attention):
 *
 * - `windowed` — the official LongLoRA eval.py: windows of `seqLen` tokens starting at
 *   `range(0, len − seqLen, step)` (step 256) with the last start dropped; each window's
 *   loss is the Hugging Face causal-LM loss over its tokens (the mean over its seqLen − 1
 *   predictions); the reported loss is the mean over windows; perplexity = e^loss (the
 *   script writes 2.71828^loss, a relative difference below 1e-6 · loss). Tokens are
 *   scored many times, most with little context.
 * - `sliding` — each token after the first is scored exactly once, with up to `seqLen`
 *   tokens of context: windows advance by `stride` and score only their last `stride`
 *   tokens (the first window scores all of its own); loss = total NLL / (len − 1).
 *
 * Both report which procedure and parameters produced each number.
 */
import { LongLoraError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import type { TokenSource } from '../data/tokens.js';
import { IGNORE_INDEX } from '../nn/loss.js';
import { noGrad } from '../tensor/autograd.js';
import { ids as idsTensor } from '../tensor/ops/index.js';
import { tidy } from '../tensor/scope.js';
import type { Precision } from '../tensor/dtype.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';
import { abortedAfterEvents } from '../util/yield.js';

/** Which perplexity procedure. */
export type PplProcedure = 'windowed' | 'sliding';

/** The official window step of eval.py. */
export const OFFICIAL_WINDOW_STEP = 256;

/** One window: where it starts, its length, and which of its positions are scored. */
export interface Window {
  start: number;
  length: number;
  /** Positions [scoreFrom, length) of the window are targets (0 or 1: all predictions). */
  scoreFrom: number;
}

/** The official windows: starts range(0, len − N, step) without the last one. */
export function windowedPlan(numTokens: number, seqLen: number, step = OFFICIAL_WINDOW_STEP): Window[] {
  const starts: number[] = [];
  for (let i = 0; i < numTokens - seqLen; i += step) starts.push(i);
  starts.pop();
  return starts.map((start) => ({ start, length: seqLen, scoreFrom: 1 }));
}

/** Each-token-once windows: every token after the first is a target exactly once. */
export function slidingPlan(numTokens: number, seqLen: number, stride: number): Window[] {
  if (stride < 1 || stride >= seqLen) throw new LongLoraError(`sliding-window perplexity: the stride must be in [1, ${seqLen - 1}] for --seq-len ${seqLen}, got ${stride}`);
  const out: Window[] = [];
  let scored = 1; // tokens [0, scored) are done (token 0 cannot be predicted)
  while (scored < numTokens) {
    const end = out.length === 0 ? Math.min(seqLen, numTokens) : Math.min(scored + stride, numTokens);
    const start = Math.max(0, end - seqLen);
    out.push({ start, length: end - start, scoreFrom: scored - start });
    scored = end;
  }
  return out;
}

/** Evenly spaced `k` of the windows (all when k ≥ their number). */
export function subsample(windows: Window[], k: number | undefined): Window[] {
  if (k === undefined || k >= windows.length) return windows;
  if (k < 1) throw new LongLoraError(`--max-windows must be ≥ 1, got ${k}`);
  return Array.from({ length: k }, (_, i) => windows[Math.floor((i * windows.length) / k)]!);
}

/** One number, with the procedure and settings that produced it. */
export interface PplResult {
  procedure: PplProcedure;
  seqLen: number;
  /** windowed: the window step; sliding: the stride. */
  step: number;
  windows: number;
  /** Windows the full procedure has (windowed with --max-windows evaluates fewer). */
  windowsTotal: number;
  /** Predictions that went into the loss. */
  tokensScored: number;
  loss: number;
  ppl: number;
  seconds: number;
}

/** Options of `perplexity`. */
export interface PplOptions {
  seqLens: readonly number[];
  procedures: readonly PplProcedure[];
  /** windowed: start every `windowStep` tokens (default 256). */
  windowStep?: number;
  /** sliding: advance by `stride` tokens (default seqLen / 2). */
  stride?: number;
  /** windowed: evaluate only this many evenly spaced windows. */
  maxWindows?: number;
  /** Windows per forward pass (default 1). */
  batchSize?: number;
  /**
   * Activations between ops in bf16 or f16 (as in mixed-precision training; the logits and
   * the loss stay f32). Default f32.
   */
  precision?: Precision;
  out?: ProgressStream;
  /**
   * Stops the evaluation between windows (it throws the signal's reason): a Ctrl-C handler
   * gets to run after every window, even on the backends whose awaits resolve at once.
   */
  signal?: AbortSignal;
}

/** Mean loss (over its scored targets) of each window, B windows of one length at a time. */
async function windowLosses(model: LlamaForCausalLM, data: TokenSource, ws: readonly Window[], B: number, precision: Precision, onDone: (n: number) => void,
  signal?: AbortSignal): Promise<Array<{ loss: number; count: number }>> {
  const out: Array<{ loss: number; count: number }> = [];
  for (let i = 0; i < ws.length; i += B) {
    const group = ws.slice(i, i + B);
    const alike = group.every((w) => w.length === group[0]!.length && w.scoreFrom === group[0]!.scoreFrom);
    const parts = alike ? [group] : group.map((w) => [w]);
    for (const g of parts) {
      const N = g[0]!.length;
      const ids = new Int32Array(g.length * N);
      const labels = new Int32Array(g.length * N).fill(IGNORE_INDEX);
      g.forEach((w, b) => {
        const t = data.read(w.start, N, model.config.vocabSize);
        ids.set(t, b * N);
        for (let p = Math.max(1, w.scoreFrom); p < N; p++) labels[b * N + p] = t[p]!;
      });
      const t = noGrad(() => tidy(() => model.loss(idsTensor(ids, [g.length, N]), labels, { precision }).loss));
      const loss = await t.item();
      t.dispose();
      // Windows batched together score equally many targets, so the batch mean is the mean of their means.
      for (const w of g) out.push({ loss, count: w.length - Math.max(1, w.scoreFrom) });
      onDone(g.length);
      if (await abortedAfterEvents(signal)) signal!.throwIfAborted();
    }
  }
  return out;
}

/**
 * Evaluates `data` at every sequence length with every procedure. Windowed batches
 * report the mean over their windows, which equals the mean of the per-window means
 * because windows of one length have equal counts.
 */
export async function perplexity(model: LlamaForCausalLM, data: TokenSource, opts: PplOptions): Promise<PplResult[]> {
  const step = opts.windowStep ?? OFFICIAL_WINDOW_STEP;
  const B = opts.batchSize ?? 1;
  const plans: Array<{ procedure: PplProcedure; seqLen: number; step: number; windows: Window[]; total: number }> = [];
  for (const seqLen of opts.seqLens) {
    if (!Number.isInteger(seqLen) || seqLen < 2) throw new LongLoraError(`--seq-len must be an integer ≥ 2, got ${seqLen}`);
    for (const procedure of opts.procedures) {
      if (procedure === 'windowed') {
        const all = windowedPlan(data.numTokens, seqLen, step);
        if (all.length === 0) {
          throw new LongLoraError(`${data.path} holds ${data.numTokens} tokens: too few for one ${seqLen}-token window of the official procedure ` +
            `(it needs more than ${seqLen + step} tokens); use more data or a shorter --seq-len`);
        }
        plans.push({ procedure, seqLen, step, windows: subsample(all, opts.maxWindows), total: all.length });
      } else {
        if (data.numTokens < 2) throw new LongLoraError(`${data.path} holds ${data.numTokens} token(s); perplexity needs at least 2`);
        const stride = opts.stride ?? Math.max(1, Math.floor(seqLen / 2));
        const windows = slidingPlan(data.numTokens, seqLen, stride);
        plans.push({ procedure, seqLen, step: stride, windows, total: windows.length });
      }
    }
  }
  // Counted in tokens, not windows: a long window costs more than a short one, so the ETA
  // of a run over several lengths holds from the start.
  const bar = new ProgressBar(plans.reduce((a, p) => a + p.windows.length * p.seqLen, 0), 'tokens', 0, opts.out ?? process.stderr);
  let done = 0;
  const results: PplResult[] = [];
  for (const p of plans) {
    const t0 = performance.now();
    const losses = await windowLosses(model, data, p.windows, B, opts.precision ?? 'f32', (n) => {
      done += n * p.seqLen;
      bar.update(done, { seq: String(p.seqLen), proc: p.procedure });
    }, opts.signal);
    let loss: number;
    let scored = 0;
    for (const l of losses) scored += l.count;
    if (p.procedure === 'windowed') loss = losses.reduce((a, l) => a + l.loss, 0) / losses.length;
    else loss = losses.reduce((a, l) => a + l.loss * l.count, 0) / scored;
    results.push({
      procedure: p.procedure, seqLen: p.seqLen, step: p.step, windows: p.windows.length, windowsTotal: p.total,
      tokensScored: scored, loss, ppl: Math.exp(loss), seconds: (performance.now() - t0) / 1000,
    });
  }
  return results;
}

/** What a procedure is, in words (table footnotes and JSON). */
export function describeProcedure(r: Pick<PplResult, 'procedure' | 'step' | 'windows' | 'windowsTotal'>): string {
  if (r.procedure === 'windowed') {
    const sub = r.windows < r.windowsTotal ? ` (${r.windows} of ${r.windowsTotal} windows, evenly spaced)` : '';
    return `official windowed: windows every ${r.step} tokens, mean of per-window losses${sub}`;
  }
  return `sliding: each token scored once, stride ${r.step}`;
}
