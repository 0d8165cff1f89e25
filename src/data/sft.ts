/**
 * Supervised fine-tuning records (LongAlpaca style): `{instruction, input?, output}`
 * rendered into a prompt, tokenized with the response, and masked so that only the
 * response carries labels. The default template is the official LongLoRA one
 * (supervised-fine-tune.py): `[INST]{instruction}[/INST]` when `input` is empty, and the
 * Llama-2 system-prompt form when it is not; the target is `output` followed by EOS; the
 * prompt's tokens (BOS included) get label −100. The alternative renders the model's own
 * chat template. Over-long examples are truncated (official) or dropped, and counted.
 */
import { IGNORE_INDEX } from '../nn/loss.js';
import { LongLoraError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { describeFields, type RecordErrors } from './records.js';

/** One instruction-following example. */
export interface SftRecord {
  instruction: string;
  /** Extra context; '' when absent. */
  input: string;
  output: string;
}

/** How a record becomes a prompt: the official Llama-2 strings, or the tokenizer's chat template. */
export type SftTemplate = 'llama2' | 'chat';

/** What to do with an example longer than the training length. */
export type SftOverlong = 'truncate' | 'drop';

/** The Llama-2 system prompt exactly as the official script has it (note the two spaces after "safe."). */
export const LLAMA2_SYSTEM_PROMPT =
  'You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  ' +
  'Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. ' +
  'Please ensure that your responses are socially unbiased and positive in nature.\n\n' +
  'If a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. ' +
  'If you don\'t know the answer to a question, please don\'t share false information.\n';

/** The official prompt without input: `[INST]{instruction}[/INST]` (PROMPT_DICT["prompt_llama2"]). */
export function llama2Prompt(instruction: string): string {
  return `[INST]${instruction}[/INST]`;
}

/** The official prompt with input (PROMPT_DICT["prompt_input_llama2"]). */
export function llama2InputPrompt(instruction: string, input: string): string {
  return `[INST] <<SYS>>\n${LLAMA2_SYSTEM_PROMPT}<</SYS>> \n\n ${instruction} \n${input} [/INST]`;
}

/** Checks a parsed JSON value and returns the record, or reports it (and returns null). */
export function parseSftRecord(value: unknown, file: string, line: number, errors: RecordErrors): SftRecord | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    errors.handle(file, line, `an SFT record must be an object with "instruction" and "output" (${describeFields(value)})`);
    return null;
  }
  const v = value as Record<string, unknown>;
  for (const k of ['instruction', 'output']) {
    if (typeof v[k] !== 'string') {
      errors.handle(file, line, `no "${k}" string field (${describeFields(v)}); SFT records need instruction, output and optionally input`);
      return null;
    }
  }
  if (v.input !== undefined && v.input !== null && typeof v.input !== 'string') {
    errors.handle(file, line, `"input" must be a string, got ${typeof v.input}`);
    return null;
  }
  return { instruction: v.instruction as string, input: (v.input as string | null | undefined) ?? '', output: v.output as string };
}

/** A tokenized example: the ids and how many of them (from the start) are prompt. */
export interface SftExample {
  ids: Int32Array;
  promptLen: number;
}

/** Labels of an example: −100 over the prompt, the ids over the response. */
export function sftLabels(ex: SftExample): Int32Array {
  const labels = Int32Array.from(ex.ids);
  labels.fill(IGNORE_INDEX, 0, Math.min(ex.promptLen, labels.length));
  return labels;
}

/** How records become examples. */
export interface SftTokenizeOptions {
  template: SftTemplate;
  /** Longest example kept (the training length). */
  maxLen: number;
  overlong: SftOverlong;
}

/** What happened to one record. */
export type SftOutcome = 'kept' | 'truncated' | 'too-long' | 'no-response';

/**
 * Prompt and full text of a record. llama2: the official strings, tokenized with the
 * tokenizer's own special tokens (BOS); chat: the chat template, whose text has them.
 */
function render(rec: SftRecord, tok: Tokenizer, template: SftTemplate): { prompt: string; full: string; addSpecial: boolean; endsWithEos: boolean } {
  if (template === 'llama2') {
    const prompt = rec.input !== '' ? llama2InputPrompt(rec.instruction, rec.input) : llama2Prompt(rec.instruction);
    return { prompt, full: prompt + rec.output, addSpecial: true, endsWithEos: false };
  }
  if (!tok.chatTemplate) throw new LongLoraError(`${tok.source}: the tokenizer has no chat template; use --sft-template llama2 (the official prompt)`);
  const user = { role: 'user', content: rec.input !== '' ? `${rec.instruction}\n${rec.input}` : rec.instruction };
  const special = { bosToken: tok.bosToken, eosToken: tok.eosToken };
  const prompt = tok.chatTemplate.render([user], { ...special, addGenerationPrompt: true });
  const full = tok.chatTemplate.render([user, { role: 'assistant', content: rec.output }], { ...special, addGenerationPrompt: false });
  if (!full.startsWith(prompt)) {
    throw new LongLoraError(`${tok.chatTemplate.where}: the chat template renders the prompt differently with and without the answer, so the prompt cannot be masked; use --sft-template llama2`);
  }
  return { prompt, full, addSpecial: false, endsWithEos: tok.eosToken !== null && full.trimEnd().endsWith(tok.eosToken) };
}

/**
 * Tokenizes a record as the official script does: the prompt + output text in one pass,
 * then EOS; the first len(tokenize(prompt)) ids are masked. Returns the example (null
 * when dropped) and what happened to it.
 */
export function tokenizeSft(rec: SftRecord, tok: Tokenizer, opts: SftTokenizeOptions): { example: SftExample | null; outcome: SftOutcome } {
  const r = render(rec, tok, opts.template);
  const promptIds = tok.encode(r.prompt, { addSpecialTokens: r.addSpecial });
  let ids = tok.encode(r.full, { addSpecialTokens: r.addSpecial });
  if (!r.endsWithEos) {
    if (tok.eosId === null) throw new LongLoraError(`${tok.source}: the tokenizer has no EOS token to end responses with; set eos_token in tokenizer_config.json`);
    ids = [...ids, tok.eosId];
  }
  const promptLen = promptIds.length;
  let outcome: SftOutcome = 'kept';
  if (ids.length > opts.maxLen) {
    if (opts.overlong === 'drop') return { example: null, outcome: 'too-long' };
    ids = ids.slice(0, opts.maxLen);
    outcome = 'truncated';
  }
  if (promptLen >= ids.length) return { example: null, outcome: 'no-response' };
  return { example: { ids: Int32Array.from(ids), promptLen }, outcome };
}

/** Counts of what happened to the records of an SFT set. */
export interface SftReport {
  records: number;
  kept: number;
  truncated: number;
  tooLong: number;
  noResponse: number;
  badRecords: number;
  promptTokens: number;
  responseTokens: number;
  maxTokens: number;
}

/** A report with every count at zero. */
export function emptySftReport(): SftReport {
  return { records: 0, kept: 0, truncated: 0, tooLong: 0, noResponse: 0, badRecords: 0, promptTokens: 0, responseTokens: 0, maxTokens: 0 };
}

/** Adds one tokenized record to the report. */
export function countSft(rep: SftReport, ex: SftExample | null, outcome: SftOutcome): void {
  rep.records++;
  if (outcome === 'truncated') rep.truncated++;
  if (outcome === 'too-long') rep.tooLong++;
  if (outcome === 'no-response') rep.noResponse++;
  if (!ex) return;
  rep.kept++;
  rep.promptTokens += ex.promptLen;
  rep.responseTokens += ex.ids.length - ex.promptLen;
  rep.maxTokens = Math.max(rep.maxTokens, ex.ids.length);
}

/** The report as one line, e.g. for the training log. */
export function describeSftReport(r: SftReport, maxLen: number): string {
  const parts = [`${r.kept} of ${r.records} record(s) kept`];
  if (r.truncated) parts.push(`${r.truncated} truncated to ${maxLen} tokens`);
  if (r.tooLong) parts.push(`${r.tooLong} dropped as longer than ${maxLen} tokens`);
  if (r.noResponse) parts.push(`${r.noResponse} dropped: the prompt alone fills ${maxLen} tokens`);
  if (r.badRecords) parts.push(`${r.badRecords} bad record(s) skipped`);
  const mean = r.kept ? ((r.promptTokens + r.responseTokens) / r.kept).toFixed(0) : '0';
  parts.push(`mean ${mean} tokens, max ${r.maxTokens}; ${r.responseTokens.toLocaleString('en-US')} response tokens carry labels`);
  return parts.join('; ');
}
