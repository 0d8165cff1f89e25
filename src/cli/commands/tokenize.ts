/**
 * `longlora tokenize`: tokenize text corpora (files, folders, JSON Lines / JSON with a text
 * field) into a binary token file with a JSON sidecar — the format `train` and `eval ppl`
 * read — or SFT records into an SFT cache. Reuses a current cache; `--force` rebuilds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { checkOutputFile } from '../../io/atomic.js';
import { LongLoraError } from '../../errors.js';
import { buildSftCache } from '../../data/sft-data.js';
import { describeSftReport } from '../../data/sft.js';
import { describeCache, tokenizeCorpus } from '../../data/token-cache.js';
import { chatTemplateFrom } from '../../tokenizer/chat-files.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import { parse, type OptionSpec } from '../args.js';
import { intFlag } from './load-model.js';

const OPTIONS: Record<string, OptionSpec> = {
  tokenizer: { type: 'string', help: 'tokenizer folder (tokenizer.json); a model folder works' },
  output: { type: 'string', help: 'the .bin to write (default: .longlora-cache/ beside the first input)' },
  format: { type: 'string', default: 'text', help: 'text (documents joined with EOS) or sft (instruction records or conversations, only responses labelled)' },
  'text-field': { type: 'string', default: 'text', help: 'JSON field that holds a document' },
  'bad-records': { type: 'string', default: 'error', help: 'malformed JSON records: error (stop, naming file and line) or skip (count and list)' },
  'no-bos': { type: 'boolean', help: 'do not start the stream with BOS' },
  'seq-len': { type: 'string', help: 'sft: the training length (longer examples are truncated or dropped)' },
  'sft-template': { type: 'string', default: 'llama2', help: 'sft: llama2 (official [INST] prompt; Llama-2 chat format for conversations) or chat (the chat template)' },
  'chat-template': { type: 'string', help: 'sft with --sft-template chat: a .jinja file (or llama2) instead of the tokenizer\'s template' },
  'sft-overlong': { type: 'string', default: 'truncate', help: 'sft: truncate (official) or drop examples longer than --seq-len' },
  force: { type: 'boolean', help: 'rebuild even when the cache is current' },
};

function oneOf(v: unknown, flag: string, values: string[]): string {
  if (typeof v !== 'string' || !values.includes(v)) throw new LongLoraError(`--${flag} must be one of ${values.join(', ')}, got ${String(v)}`);
  return v;
}

/** `longlora tokenize`. */
export async function tokenizeCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora tokenize INPUT... --tokenizer DIR [--output FILE.bin] [--format text|sft] [options]', OPTIONS, true);
  if (!args) return;
  const v = args.values;
  if (args.positionals.length === 0) throw new LongLoraError('tokenize: give the text files, JSONL files or folders to tokenize');
  if (typeof v.tokenizer !== 'string') throw new LongLoraError('tokenize: --tokenizer is required (a folder with tokenizer.json, e.g. the model folder)');
  const tokenizer = Tokenizer.load(v.tokenizer);
  const format = oneOf(v.format, 'format', ['text', 'sft']);
  const badRecords = oneOf(v['bad-records'], 'bad-records', ['error', 'skip']) as 'error' | 'skip';
  if (typeof v['chat-template'] === 'string' && (format !== 'sft' || v['sft-template'] !== 'chat')) {
    throw new LongLoraError('--chat-template renders SFT conversations: it needs --format sft --sft-template chat');
  }
  if (typeof v.output === 'string') {
    checkOutputFile(v.output, '--output');
    // a token file written here has its sidecar (FILE.bin.json); anything else is not ours to replace
    if (fs.existsSync(v.output) && !fs.existsSync(`${v.output}.json`)) {
      throw new LongLoraError(`--output ${v.output} exists and is not a token file written by longlora (no ${path.basename(v.output)}.json beside it); choose another path, or delete it first`);
    }
  }
  const common = { tokenizer, badRecords, ...(typeof v.output === 'string' ? { output: v.output } : {}), force: v.force === true };
  if (format === 'text') {
    const c = await tokenizeCorpus(args.positionals, { ...common, textField: String(v['text-field']), bos: v['no-bos'] !== true });
    for (const n of c.notes) process.stderr.write(`${n}\n`);
    console.log(describeCache(c));
    return;
  }
  const maxLen = intFlag(v, 'seq-len', 2);
  if (maxLen === undefined) throw new LongLoraError('tokenize --format sft: --seq-len is required (the training length)');
  const template = oneOf(v['sft-template'], 'sft-template', ['llama2', 'chat']) as 'llama2' | 'chat';
  const c = await buildSftCache(args.positionals, {
    ...common, maxLen, template,
    chatTemplate: typeof v['chat-template'] === 'string' ? chatTemplateFrom(v['chat-template']) : null,
    overlong: oneOf(v['sft-overlong'], 'sft-overlong', ['truncate', 'drop']) as 'truncate' | 'drop',
  });
  for (const n of c.notes ?? []) process.stderr.write(`${n}\n`);
  if (c.meta.skipped) process.stderr.write(`${c.meta.skipped}\n`);
  console.log(`${describeSftReport(c.meta.report, maxLen)}\n${c.meta.numTokens.toLocaleString('en-US')} tokens in ${c.file} (${c.reused ? 'cache reused' : 'built'})`);
}
