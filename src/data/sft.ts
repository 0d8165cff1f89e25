/**
 * Supervised fine-tuning records: LongAlpaca-style `{instruction, input?, output}`, and
 * conversations (`{messages: [{role, content}]}`, or ShareGPT's `{conversations: [{from,
 * value}]}`), rendered into text, tokenized, and masked so that only what the model should
 * learn to write carries labels. An instruction record's default template is the official
 * LongLoRA one (supervised-fine-tune.py): `[INST]{instruction}[/INST]` when `input` is
 * empty, and the Llama-2 system-prompt form when it is not; the target is `output`
 * followed by EOS; the prompt's tokens (BOS included) get label −100. A conversation is
 * rendered by a chat template (Llama-2's chat format by default) and every assistant turn
 * carries labels. The alternative renders both with the model's own chat template.
 * Over-long examples are truncated (official) or dropped, and counted.
 */
import { IGNORE_INDEX } from '../nn/loss.js';
import { LongLoraError } from '../errors.js';
import { ChatTemplate, LLAMA2_CHAT_TEMPLATE, type ChatMessage } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { describeFields, type RecordErrors } from './records.js';

/** One instruction-following example. */
export interface SftRecord {
  instruction: string;
  /** Extra context; '' when absent. */
  input: string;
  output: string;
}

/** How a record becomes text: the official Llama-2 strings (Llama-2's chat format for conversations), or a chat template. */
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

/** A conversation (`messages`, or ShareGPT's `conversations`): every assistant turn is learnt. */
export interface ConversationRecord {
  messages: ChatMessage[];
}

/** One SFT record: an instruction example or a conversation. */
export type SftItem = SftRecord | ConversationRecord;

/** ShareGPT's speaker names (`from`) as chat roles. */
const SHAREGPT_ROLES: Record<string, string> = {
  human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', model: 'assistant', chatgpt: 'assistant', bard: 'assistant', system: 'system',
};

const RECORD_FORMS = 'SFT records are {instruction, input?, output}, {messages: [{role, content}, ...]} or ShareGPT\'s {conversations: [{from, value}, ...]}';

/** The turns of a `messages` or `conversations` list, or a reason it is unusable. */
function parseTurns(list: unknown, field: 'messages' | 'conversations'): ChatMessage[] | string {
  const [roleKey, textKey] = field === 'messages' ? ['role', 'content'] : ['from', 'value'];
  if (!Array.isArray(list) || list.length === 0) return `"${field}" must be a non-empty list of {${roleKey}, ${textKey}} turns`;
  const turns: ChatMessage[] = [];
  for (const [i, t] of list.entries()) {
    const o = (t !== null && typeof t === 'object' && !Array.isArray(t) ? t : {}) as Record<string, unknown>;
    const who = o[roleKey], text = o[textKey];
    if (typeof who !== 'string' || typeof text !== 'string') {
      return `${field}[${i}] must have a string "${roleKey}" and a string "${textKey}" (${describeFields(t)})`;
    }
    const role = field === 'messages' ? who : SHAREGPT_ROLES[who.toLowerCase()];
    if (role === undefined) return `${field}[${i}]: unknown speaker "${who}" (known: ${Object.keys(SHAREGPT_ROLES).join(', ')})`;
    turns.push({ role, content: text });
  }
  if (!turns.some((t) => t.role === 'assistant')) return `"${field}" has no assistant turn to learn from`;
  return turns;
}

/** Checks a parsed JSON value and returns the record, or reports it (and returns null). */
export function parseSftRecord(value: unknown, file: string, line: number, errors: RecordErrors): SftItem | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    errors.handle(file, line, `an SFT record must be an object (${describeFields(value)}); ${RECORD_FORMS}`);
    return null;
  }
  const v = value as Record<string, unknown>;
  for (const field of ['messages', 'conversations'] as const) {
    if (!(field in v)) continue;
    const turns = parseTurns(v[field], field);
    if (typeof turns === 'string') { errors.handle(file, line, turns); return null; }
    return { messages: turns };
  }
  for (const k of ['instruction', 'output']) {
    if (typeof v[k] !== 'string') {
      errors.handle(file, line, `no "${k}" string field (${describeFields(v)}); ${RECORD_FORMS}`);
      return null;
    }
  }
  if (v.input !== undefined && v.input !== null && typeof v.input !== 'string') {
    errors.handle(file, line, `"input" must be a string, got ${typeof v.input}`);
    return null;
  }
  return { instruction: v.instruction as string, input: (v.input as string | null | undefined) ?? '', output: v.output as string };
}

/**
 * A tokenized example: its ids and the ranges of them that carry labels (the response of
 * an instruction example, every assistant turn of a conversation), in order.
 */
export interface SftExample {
  ids: Int32Array;
  /** Label ranges [start, end) of token positions, ascending and disjoint. */
  spans: ReadonlyArray<readonly [number, number]>;
}

/** Tokens of an example that carry labels. */
export function labelledCount(ex: SftExample): number {
  return ex.spans.reduce((a, [s, e]) => a + e - s, 0);
}

/** Labels of an example: the ids inside its spans, −100 elsewhere. */
export function sftLabels(ex: SftExample): Int32Array {
  const labels = new Int32Array(ex.ids.length).fill(IGNORE_INDEX);
  for (const [s, e] of ex.spans) labels.set(ex.ids.subarray(s, e), s);
  return labels;
}

/** How records become examples. */
export interface SftTokenizeOptions {
  template: SftTemplate;
  /** Longest example kept (the training length). */
  maxLen: number;
  overlong: SftOverlong;
  /** The chat template of the `chat` form (default: the tokenizer's). */
  chatTemplate?: ChatTemplate | null;
}

/** What happened to one record. */
export type SftOutcome = 'kept' | 'truncated' | 'too-long' | 'no-response';

let llama2Chat: ChatTemplate | null = null;

/**
 * The chat template a record is rendered with: for `chat`, the given one or the
 * tokenizer's; for `llama2` (conversations only), Llama-2's chat format, of which the
 * official instruction prompt is the one-turn case.
 */
export function sftChatTemplate(tok: Tokenizer, opts: Pick<SftTokenizeOptions, 'template' | 'chatTemplate'>): ChatTemplate {
  if (opts.template === 'llama2') return (llama2Chat ??= new ChatTemplate(LLAMA2_CHAT_TEMPLATE, 'built-in llama2 chat template'));
  const t = opts.chatTemplate ?? tok.chatTemplate;
  if (!t) throw new LongLoraError(`${tok.source}: the tokenizer has no chat template; use --sft-template llama2 (the official prompt), or pass --chat-template FILE.jinja`);
  return t;
}

/**
 * A record its chat template refuses to render (roles out of order for Llama-2's format,
 * say, or a raise_exception of the template's own): a fault of that record, reported with
 * its file and line, and skipped under --bad-records skip.
 */
export class SftRecordError extends LongLoraError {}

/** The chat template's rendering; its failure is the record's (SftRecordError). */
function renderRecord(chat: ChatTemplate, messages: readonly ChatMessage[], opts: Parameters<ChatTemplate['render']>[1]): string {
  try {
    return chat.render(messages, opts);
  } catch (e) {
    if (e instanceof LongLoraError) throw new SftRecordError(e.message, { cause: e });
    throw e;
  }
}

/**
 * Prompt and full text of an instruction record. llama2: the official strings, tokenized
 * with the tokenizer's own special tokens (BOS); chat: the chat template, whose text has them.
 */
function render(rec: SftRecord, tok: Tokenizer, opts: SftTokenizeOptions): { prompt: string; full: string; addSpecial: boolean; endsWithEos: boolean } {
  if (opts.template === 'llama2') {
    const prompt = rec.input !== '' ? llama2InputPrompt(rec.instruction, rec.input) : llama2Prompt(rec.instruction);
    return { prompt, full: prompt + rec.output, addSpecial: true, endsWithEos: false };
  }
  const chat = sftChatTemplate(tok, opts);
  const user = { role: 'user', content: rec.input !== '' ? `${rec.instruction}\n${rec.input}` : rec.instruction };
  const special = { bosToken: tok.bosToken, eosToken: tok.eosToken };
  const prompt = renderRecord(chat, [user], { ...special, addGenerationPrompt: true });
  const full = renderRecord(chat, [user, { role: 'assistant', content: rec.output }], { ...special, addGenerationPrompt: false });
  if (!full.startsWith(prompt)) {
    throw new LongLoraError(`${chat.where}: the chat template renders the prompt differently with and without the answer, so the prompt cannot be masked; use --sft-template llama2`);
  }
  return { prompt, full, addSpecial: false, endsWithEos: endsWithEos(full, tok) };
}

function endsWithEos(text: string, tok: Tokenizer): boolean {
  return tok.eosToken !== null && text.trimEnd().endsWith(tok.eosToken);
}

function eosId(tok: Tokenizer): number {
  if (tok.eosId === null) throw new LongLoraError(`${tok.source}: the tokenizer has no EOS token to end responses with; set eos_token in tokenizer_config.json`);
  return tok.eosId;
}

/**
 * A conversation rendered by its template, with the character ranges of its assistant
 * turns: turn i runs from the end of the rendering of the turns before it with the
 * generation prompt to the end of the rendering up to and including it (its text and
 * the template's end-of-turn marks). That needs a template that renders each prefix of
 * the conversation as a prefix of the whole; for one that does not (Qwen 3's gives a
 * `<think>` block only to the turns after the last user message), each turn is found by
 * its text followed by the end-of-turn marks the template puts after it, in order.
 */
function renderConversation(messages: readonly ChatMessage[], tok: Tokenizer, chat: ChatTemplate): { text: string; spans: Array<[number, number]> } {
  const render = (upTo: number, addGenerationPrompt: boolean): string =>
    renderRecord(chat, messages.slice(0, upTo), { bosToken: tok.bosToken, eosToken: tok.eosToken, addGenerationPrompt });
  const text = render(messages.length, false);
  // each assistant turn, and the rendering up to and including it
  const turns = messages.flatMap((m, i) => (m.role === 'assistant' ? [{ i, content: m.content, upto: render(i + 1, false) }] : []));
  const spans = prefixTurns(turns, text, (i) => render(i, true)) ?? findTurns(messages, turns, text);
  if (!spans) {
    throw new LongLoraError(`${chat.where}: the chat template does not render a conversation's first turns as the start of the whole, ` +
      'and its assistant turns cannot be found in the rendering by their text either, so they cannot be located for the labels; ' +
      'pass --chat-template with a template that renders each turn on its own');
  }
  return { text, spans };
}

/** An assistant turn of a conversation: its index, text, and the rendering through it. */
interface Turn { i: number; content: string; upto: string }

/**
 * The turns' ranges when each rendering up to a turn is a prefix of the whole: from the
 * end of the rendering before it with the generation prompt (`before`) to the end of its
 * own; adjacent ranges are joined. Null when the template is not prefix-stable.
 */
function prefixTurns(turns: readonly Turn[], text: string, before: (i: number) => string): Array<[number, number]> | null {
  const spans: Array<[number, number]> = [];
  for (const t of turns) {
    const b = before(t.i);
    if (!t.upto.startsWith(b) || !text.startsWith(t.upto) || t.upto.length === b.length) return null;
    const last = spans.at(-1);
    if (last && last[1] === b.length) last[1] = t.upto.length;
    else spans.push([b.length, t.upto.length]);
  }
  return spans;
}

/**
 * The turns found by their text: turn i is its content followed by what the template
 * writes after it when it is the last turn (its end-of-turn marks), searched in order from
 * the end of what came before it. What came before includes the other messages, each found
 * by its content where the template writes it as it is, so that a user message with the
 * same text as the answer after it ("Yes", "Thanks") is not taken for the answer; when a
 * template rewrites them and that search fails, the turns alone are searched. Null when
 * one is not there.
 */
function findTurns(messages: readonly ChatMessage[], turns: readonly Turn[], text: string): Array<[number, number]> | null {
  const search = (anchored: boolean): Array<[number, number]> | null => {
    const spans: Array<[number, number]> = [];
    let from = 0;
    let next = 0;
    for (const [i, m] of messages.entries()) {
      if (m.role !== 'assistant') {
        const at = anchored && m.content !== '' ? text.indexOf(m.content, from) : -1;
        if (at >= 0) from = at + m.content.length;
        continue;
      }
      const t = turns[next++]!;
      if (t.i !== i) return null;
      const end = t.upto.lastIndexOf(t.content);
      if (t.content === '' || end < 0) return null;
      const turn = t.content + t.upto.slice(end + t.content.length);
      const at = text.indexOf(turn, from);
      if (at < 0) return null;
      spans.push([at, at + turn.length]);
      from = at + turn.length;
    }
    return spans;
  };
  return search(true) ?? search(false);
}

/**
 * Token ranges for character ranges of a text. The text is tokenized in pieces cut at the
 * ranges' ends; when the pieces' ids are the whole text's ids the cuts are exact. Otherwise
 * (a tokenizer that marks the start of every piece, as SentencePiece's does) a cut at
 * character c falls after as many tokens as the text up to c has — the official script's
 * rule for the prompt, applied to every cut.
 */
export function tokenSpans(text: string, spans: ReadonlyArray<readonly [number, number]>, tok: Tokenizer): { ids: number[]; spans: Array<[number, number]> } {
  const whole = tok.encode(text, { addSpecialTokens: false });
  const cuts = [...new Set(spans.flat())].sort((a, b) => a - b);
  const at = new Map<number, number>();
  const pieces: number[] = [];
  let from = 0;
  for (const c of [...cuts, text.length]) {
    if (c > from) pieces.push(...tok.encode(text.slice(from, c), { addSpecialTokens: false }));
    at.set(c, pieces.length);
    from = c;
  }
  const exact = pieces.length === whole.length && pieces.every((id, i) => id === whole[i]);
  if (!exact) {
    let prev = 0;
    for (const c of cuts) {
      prev = Math.min(whole.length, Math.max(prev, tok.encode(text.slice(0, c), { addSpecialTokens: false }).length));
      at.set(c, prev);
    }
  }
  const out: Array<[number, number]> = [];
  for (const [s, e] of spans) if (at.get(e)! > at.get(s)!) out.push([at.get(s)!, at.get(e)!]);
  return { ids: whole, spans: out };
}

/**
 * Tokenizes a record. An instruction record as the official script does: the prompt +
 * output text in one pass, then EOS; the first len(tokenize(prompt)) ids are masked. A
 * conversation through its chat template (Llama-2's for `llama2`), labels on every
 * assistant turn with its end-of-turn marks, then EOS when the text does not end with
 * it after an assistant turn. Returns the example (null when dropped) and what happened to it.
 */
export function tokenizeSft(rec: SftItem, tok: Tokenizer, opts: SftTokenizeOptions): { example: SftExample | null; outcome: SftOutcome } {
  let ids: number[];
  let spans: Array<[number, number]>;
  if ('messages' in rec) {
    const r = renderConversation(rec.messages, tok, sftChatTemplate(tok, opts));
    ({ ids, spans } = tokenSpans(r.text, r.spans, tok));
    if (rec.messages.at(-1)!.role === 'assistant' && !endsWithEos(r.text, tok)) {
      ids.push(eosId(tok));
      const last = spans.at(-1);
      if (last && last[1] === ids.length - 1) last[1]++;
      else spans.push([ids.length - 1, ids.length]);
    }
  } else {
    const r = render(rec, tok, opts);
    const promptLen = tok.encode(r.prompt, { addSpecialTokens: r.addSpecial }).length;
    ids = tok.encode(r.full, { addSpecialTokens: r.addSpecial });
    if (!r.endsWithEos) ids.push(eosId(tok));
    spans = [[Math.min(promptLen, ids.length), ids.length]];
  }
  let outcome: SftOutcome = 'kept';
  if (ids.length > opts.maxLen) {
    if (opts.overlong === 'drop') return { example: null, outcome: 'too-long' };
    ids = ids.slice(0, opts.maxLen);
    spans = spans.filter(([s]) => s < opts.maxLen).map(([s, e]) => [s, Math.min(e, opts.maxLen)]);
    outcome = 'truncated';
  }
  spans = spans.filter(([s, e]) => e > s);
  if (spans.length === 0) return { example: null, outcome: 'no-response' };
  return { example: { ids: Int32Array.from(ids), spans }, outcome };
}

/** Counts of what happened to the records of an SFT set. */
export interface SftReport {
  records: number;
  kept: number;
  truncated: number;
  tooLong: number;
  noResponse: number;
  badRecords: number;
  /** Records that were conversations (the rest were instruction records). */
  conversations: number;
  /** Tokens without labels (prompts, user turns) and with them (responses, assistant turns) in the kept examples. */
  promptTokens: number;
  responseTokens: number;
  maxTokens: number;
}

/** A report with every count at zero. */
export function emptySftReport(): SftReport {
  return { records: 0, kept: 0, truncated: 0, tooLong: 0, noResponse: 0, badRecords: 0, conversations: 0, promptTokens: 0, responseTokens: 0, maxTokens: 0 };
}

/** Adds one tokenized record to the report. */
export function countSft(rep: SftReport, rec: SftItem, ex: SftExample | null, outcome: SftOutcome): void {
  rep.records++;
  if ('messages' in rec) rep.conversations++;
  if (outcome === 'truncated') rep.truncated++;
  if (outcome === 'too-long') rep.tooLong++;
  if (outcome === 'no-response') rep.noResponse++;
  if (!ex) return;
  rep.kept++;
  const labelled = labelledCount(ex);
  rep.promptTokens += ex.ids.length - labelled;
  rep.responseTokens += labelled;
  rep.maxTokens = Math.max(rep.maxTokens, ex.ids.length);
}

/** The report as one line, e.g. for the training log. */
export function describeSftReport(r: SftReport, maxLen: number): string {
  const parts = [`${r.kept} of ${r.records} record(s) kept`];
  if (r.conversations) parts.push(`${r.conversations} of the records are conversations`);
  if (r.truncated) parts.push(`${r.truncated} truncated to ${maxLen} tokens`);
  if (r.tooLong) parts.push(`${r.tooLong} dropped as longer than ${maxLen} tokens`);
  if (r.noResponse) parts.push(`${r.noResponse} dropped: no response within the first ${maxLen} tokens`);
  if (r.badRecords) parts.push(`${r.badRecords} bad record(s) skipped`);
  const mean = r.kept ? ((r.promptTokens + r.responseTokens) / r.kept).toFixed(0) : '0';
  parts.push(`mean ${mean} tokens, max ${r.maxTokens}; ${r.responseTokens.toLocaleString('en-US')} response tokens carry labels`);
  return parts.join('; ');
}
