/**
 * The before/after measurement of a context extension: perplexity of a long-document test
 * set (`pplData`) at several lengths with dense attention, for the base model as it is
 * (its own RoPE), for the base with the new position scaling and no fine-tuning (the
 * trainer's model before step 1: LoRA B is zero), and for the fine-tuned model at the
 * end. The official windowed procedure (SPEC §6) is used with `pplWindows` evenly spaced
 * windows per length. Everything that can be checked is checked before training starts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseLength } from '../analysis/presets.js';
import { describeCache, tokenizeCorpus } from '../data/token-cache.js';
import { TokenFile, type TokenSource } from '../data/tokens.js';
import { LongLoraError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { perplexity, windowedPlan, OFFICIAL_WINDOW_STEP, type PplResult } from '../eval/perplexity.js';
import { table } from '../eval/report.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import type { TrainConfig } from './config.js';
import type { Precision } from '../tensor/dtype.js';
import type { ProgressStream } from './progress.js';

/** The columns of the table, in order. */
export type ContextColumn = 'base' | 'interpolated' | 'trained';

export const COLUMN_TITLES: Record<ContextColumn, string> = {
  base: 'base (own RoPE)',
  interpolated: 'base + new RoPE, no training',
  trained: 'after training',
};

/** An opened test set and the lengths to measure it at. */
export interface ContextEvalPlan {
  data: TokenSource;
  seqLens: number[];
  /** Windows per length (undefined: all of them). */
  maxWindows: number | undefined;
  /** Activations between ops, as in training (--precision): a long window fits where the step did. */
  precision: Precision;
  note: string;
  /** Closes the test set's file (once; later calls do nothing). */
  close(): void;
}

/** The lengths measured by default: the original context, doubled until the training length (included). */
export function defaultContextLengths(original: number, seqLen: number): number[] {
  const out: number[] = [];
  for (let n = Math.min(original, seqLen); n < seqLen; n *= 2) out.push(n);
  out.push(seqLen);
  return out;
}

/** Opens `pplData` (a .bin token file, or text tokenized with the run's tokenizer) and checks the lengths against it. */
export async function openContextEval(c: TrainConfig, vocabSize: number, originalContext: number, out: ProgressStream): Promise<ContextEvalPlan> {
  const input = c.pplData!;
  if (!fs.existsSync(input)) throw new LongLoraError(`pplData ${input} not found; pass a long-document test set (.bin tokens or text), or drop --ppl-data`);
  const seqLens = c.pplSeqLens ? c.pplSeqLens.map(parseLength) : defaultContextLengths(originalContext, c.seqLen);
  for (const n of seqLens) if (n < 2) throw new LongLoraError(`pplSeqLens: ${n} is too short; lengths must be ≥ 2`);
  let file: TokenFile;
  let note: string;
  if (path.extname(input).toLowerCase() === '.bin') {
    file = TokenFile.open(input, c.dataDtype, vocabSize);
    note = `${input}: ${file.numTokens.toLocaleString('en-US')} tokens`;
  } else {
    const tokDir = c.tokenizer ?? c.model!;
    if (!fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
      throw new LongLoraError(`pplData ${input} is text, and ${tokDir} has no tokenizer.json; set --tokenizer, or tokenize it first with \`longlora tokenize\``);
    }
    const tc = await tokenizeCorpus([input], { tokenizer: await Tokenizer.load(tokDir), textField: c.textField, badRecords: c.badRecords });
    for (const n of tc.notes) out.write(`${n}\n`);
    file = new TokenFile(tc.file, tc.meta.dtype);
    note = describeCache(tc);
  }
  const longest = Math.max(...seqLens);
  if (windowedPlan(file.numTokens, longest).length === 0) {
    file.close();
    throw new LongLoraError(`pplData ${input} holds ${file.numTokens} tokens: too few for one ${longest}-token window ` +
      `(the windowed procedure needs more than ${longest + OFFICIAL_WINDOW_STEP}); use a longer test set or shorter --ppl-seq-lens`);
  }
  let open = true;
  const close = (): void => { if (open) { open = false; file.close(); } };
  return { data: file, seqLens, maxWindows: c.pplWindows > 0 ? c.pplWindows : undefined, precision: c.precision, note, close };
}

/** Perplexity of `model` at every planned length (dense attention: the model's forward). */
export async function measureContext(model: LlamaForCausalLM, plan: ContextEvalPlan, out: ProgressStream, signal?: AbortSignal): Promise<PplResult[]> {
  return perplexity(model, plan.data, {
    seqLens: plan.seqLens, procedures: ['windowed'], ...(plan.maxWindows !== undefined ? { maxWindows: plan.maxWindows } : {}), out, precision: plan.precision,
    ...(signal ? { signal } : {}),
  });
}

/** Results by column; a column may be missing (not measured). */
export type ContextResults = Partial<Record<ContextColumn, PplResult[]>>;

/** The perplexity table: one row per length, one column per measured model. */
export function contextTable(r: ContextResults, plan: Pick<ContextEvalPlan, 'seqLens'> & { precision?: Precision }): string {
  const cols = (Object.keys(COLUMN_TITLES) as ContextColumn[]).filter((k) => r[k]);
  const rows = plan.seqLens.map((n) => [String(n), ...cols.map((k) => {
    const x = r[k]!.find((p) => p.seqLen === n);
    return x ? x.ppl.toFixed(2) : '-';
  })]);
  const first = Object.values(r).find(Boolean)?.[0];
  const acts = plan.precision && plan.precision !== 'f32' ? `, ${plan.precision} activations` : '';
  const how = first ? `official windowed procedure, ${first.windows < first.windowsTotal ? `${first.windows} evenly spaced windows` : 'every window'} per length, dense attention${acts}` : '';
  return `perplexity by context length (${how})\n${table(['tokens', ...cols.map((k) => COLUMN_TITLES[k])], rows)}`;
}

/** Writes the results (and the table) to `<output>/ppl.json`. */
export function writeContextResults(file: string, c: TrainConfig, plan: ContextEvalPlan, r: ContextResults): void {
  writeJsonAtomic(file, { data: c.pplData, seqLens: plan.seqLens, maxWindows: plan.maxWindows ?? null, columns: COLUMN_TITLES, results: r, table: contextTable(r, plan) });
}

/** Reads results written by `writeContextResults` (a resumed run keeps its "before" columns). */
export function readContextResults(file: string): ContextResults {
  if (!fs.existsSync(file)) return {};
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { results: ContextResults }).results ?? {};
  } catch {
    return {};
  }
}
