/**
 * Result tables and JSON for the evaluation commands. Every perplexity row says which
 * procedure produced it; JSON reports carry the same numbers with the settings that
 * produced them, written atomically.
 */
import { writeJsonAtomic } from '../io/atomic.js';
import { describeProcedure, type PplResult } from './perplexity.js';
import type { PasskeyLength } from './passkey.js';

/** Columns padded to their widest cell; the first left-aligned, the rest right-aligned. */
export function table(head: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** Perplexity results, one row per (procedure, length), with the procedures explained below. */
export function pplTable(results: readonly PplResult[]): string {
  const rows = results.map((r) => [
    r.procedure, String(r.seqLen), r.procedure === 'windowed' ? `step ${r.step}` : `stride ${r.step}`,
    r.ppl.toFixed(3), r.loss.toFixed(4), r.windows < r.windowsTotal ? `${r.windows}/${r.windowsTotal}` : String(r.windows),
    r.tokensScored.toLocaleString('en-US'), `${r.seconds.toFixed(1)}s`,
  ]);
  const notes: string[] = [];
  if (results.some((r) => r.procedure === 'windowed')) {
    notes.push('  windowed: the official eval.py — windows of seq_len starting every step tokens (last start dropped); loss = mean of the windows\' mean losses; ppl = e^loss');
  }
  if (results.some((r) => r.procedure === 'sliding')) notes.push('  sliding: each token scored once, with up to seq_len tokens of context (windows advance by stride); loss = total NLL / tokens');
  return `${table(['procedure', 'seq_len', 'setting', 'ppl', 'loss', 'windows', 'scored', 'time'], rows)}\n${notes.join('\n')}`;
}

/** Passkey accuracy per length. */
export function passkeyTable(results: readonly PasskeyLength[]): string {
  const rows = results.map((r) => [
    String(r.targetTokens), r.meanTokens.toFixed(0), `${r.passed}/${r.trials.length}`, r.accuracy.toFixed(2),
    r.trials.filter((t) => !t.passed).slice(0, 3).map((t) => `${t.passkey}→${JSON.stringify(t.answer)}`).join(' '),
  ]);
  return table(['tokens', 'mean tokens', 'passed', 'accuracy', 'failures (key→answer)'], rows);
}

/** Writes `{command, settings, results}` as JSON. */
export function writeReport(file: string, command: string, settings: Record<string, unknown>, results: unknown): void {
  writeJsonAtomic(file, { command, created: new Date().toISOString(), settings, results });
}

/** Perplexity results as plain objects with the procedure spelled out. */
export function pplJson(results: readonly PplResult[]): unknown[] {
  return results.map((r) => ({ ...r, description: describeProcedure(r) }));
}
