/**
 * `longlora eval ppl` and `longlora eval passkey`: perplexity of a long-document test set
 * (official windowed and each-token-once sliding procedures, several lengths in one run)
 * and passkey retrieval accuracy per length. Tables go to stdout, progress to stderr, and
 * `--json FILE` writes the numbers with the settings that produced them.
 */
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { tokenizeCorpus, describeCache } from '../../data/token-cache.js';
import { TokenFile, type TokenSource } from '../../data/tokens.js';
import { openTokenStream } from '../../data/training-data.js';
import { passkeyEval, passkeyLadder } from '../../eval/passkey.js';
import { perplexity, type PplProcedure } from '../../eval/perplexity.js';
import { passkeyTable, pplJson, pplTable, writeReport } from '../../eval/report.js';
import { ropeContextLength } from '../../nn/rope-scaling.js';
import { parseLength } from '../../analysis/presets.js';
import { parse, UsageError, type OptionSpec } from '../args.js';
import { intFlag, loadModel, MODEL_OPTIONS, warnContext, type LoadedModel } from './load-model.js';
import { checkOutputFile } from '../../io/atomic.js';
import { CACHE_OPTIONS, cacheFlags } from './generate.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';
import { PRECISIONS, type Precision } from '../../tensor/dtype.js';

const PPL_OPTIONS: Record<string, OptionSpec> = {
  ...MODEL_OPTIONS,
  data: { type: 'string', help: 'test set: a .bin token file, or text / JSONL files or folders (tokenized once, cached)' },
  'data-format': { type: 'string', default: 'auto', help: 'tokens or text (auto: .bin is tokens)' },
  'data-dtype': { type: 'string', default: 'auto', help: 'token file element type: uint16, uint32 or auto' },
  'text-field': { type: 'string', default: 'text', help: 'JSON field that holds a document' },
  'bad-records': { type: 'string', default: 'error', help: 'malformed JSON records: error or skip' },
  'seq-len': { type: 'string', help: 'evaluation lengths, comma-separated (e.g. 4096,8k,16k)' },
  procedure: { type: 'string', default: 'windowed,sliding', help: 'windowed (official eval.py), sliding (each token once), or both' },
  'window-step': { type: 'string', default: '256', help: 'windowed: a window starts every N tokens (official 256)' },
  stride: { type: 'string', help: 'sliding: advance by N tokens (default seq-len / 2)' },
  'max-windows': { type: 'string', help: 'windowed: evaluate only N evenly spaced windows (a quick estimate; 0: every window)' },
  'max-tokens': { type: 'string', help: 'use only the first N tokens of the test set' },
  'batch-size': { type: 'string', default: '1', help: 'windows per forward pass' },
  precision: { type: 'string', default: 'f32', help: 'activations between ops: f32, bf16 or f16 (half the memory; logits and loss stay f32)' },
  'tensor-cores': { type: 'boolean', help: 'webgpu: run f16 · f16 products on the GPU\'s tensor cores (experimental; with --dtype f16 --precision f16)' },
  json: { type: 'string', help: 'also write the results as JSON to this file' },
};

const PASSKEY_OPTIONS: Record<string, OptionSpec> = {
  ...MODEL_OPTIONS,
  lengths: { type: 'string', help: 'prompt lengths in tokens, comma-separated (e.g. 1000,2000,4k)' },
  'max-tokens': { type: 'string', help: 'ladder up to this many tokens (default: the context the model covers)' },
  interval: { type: 'string', default: '1000', help: 'ladder step in tokens (official 1000)' },
  trials: { type: 'string', default: '10', help: 'trials per length (official 10)' },
  seed: { type: 'string', default: '0', help: 'trial i uses seed + i (official: 0)' },
  json: { type: 'string', help: 'also write the results as JSON to this file' },
  ...CACHE_OPTIONS,
};

function list(s: string | undefined, what: string): number[] {
  if (!s) throw new LongLoraError(`${what} is required (comma-separated lengths, e.g. 4096,8k)`);
  return s.split(',').map((x) => parseLength(x));
}

async function testSet(v: Record<string, string | boolean | undefined>, m: LoadedModel<Tokenizer | null>): Promise<{ data: TokenSource; close: () => void; note: string }> {
  const input = String(v.data ?? '');
  if (!input) throw new LongLoraError('--data is required: a .bin token file or text / JSONL files');
  const fmt = String(v['data-format']);
  if (!['auto', 'tokens', 'text'].includes(fmt)) throw new LongLoraError(`--data-format must be auto, tokens or text, got ${fmt}`);
  const tokens = fmt === 'tokens' || (fmt === 'auto' && path.extname(input).toLowerCase() === '.bin');
  let file: TokenFile;
  let note: string;
  if (tokens) {
    const dt = String(v['data-dtype']);
    if (!['auto', 'uint16', 'uint32'].includes(dt)) throw new LongLoraError(`--data-dtype must be auto, uint16 or uint32, got ${dt}`);
    const notes: string[] = [];
    file = openTokenStream(input, { dataDtype: dt as 'auto', tokenizer: typeof v.tokenizer === 'string' ? v.tokenizer : null, model: m.dir }, m.model.config.vocabSize, m.tokenizer, notes);
    for (const n of notes) process.stderr.write(`${n}\n`);
    note = `${input}: ${file.numTokens.toLocaleString('en-US')} tokens (${file.dtype})`;
  } else {
    const br = String(v['bad-records']);
    if (br !== 'error' && br !== 'skip') throw new LongLoraError(`--bad-records must be error or skip, got ${br}`);
    if (!m.tokenizer) throw new LongLoraError(`${m.dir} has no tokenizer.json to tokenize ${input}; pass --tokenizer, or a pre-tokenized .bin test set`);
    const c = await tokenizeCorpus([input], { tokenizer: m.tokenizer, textField: String(v['text-field']), badRecords: br });
    for (const n of c.notes) process.stderr.write(`${n}\n`);
    file = new TokenFile(c.file, c.meta.dtype);
    note = describeCache(c);
  }
  const max = intFlag(v, 'max-tokens');
  const data = max !== undefined && max < file.numTokens ? file.span(0, max) : file;
  return { data, close: () => file.close(), note: max !== undefined ? `${note}; first ${data.numTokens} used` : note };
}

async function ppl(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora eval ppl --model DIR|org/name|FILE.gguf [--adapter DIR] --data TEST.bin|TEXT --seq-len 4096,8192 [options]', PPL_OPTIONS);
  if (!args) return;
  const v = args.values;
  const seqLens = list(v['seq-len'] as string | undefined, '--seq-len');
  const procedures = String(v.procedure).split(',').map((p) => p.trim());
  for (const p of procedures) if (p !== 'windowed' && p !== 'sliding') throw new LongLoraError(`--procedure takes windowed and/or sliding, got ${p}`);
  const precision = String(v.precision) as Precision;
  if (!PRECISIONS.includes(precision)) throw new LongLoraError(`--precision must be one of ${PRECISIONS.join(', ')}, got ${precision}`);
  if (typeof v.json === 'string') checkOutputFile(v.json, '--json');
  // every number flag before the model is loaded, so a typo costs nothing
  const stride = intFlag(v, 'stride');
  const maxWindows = intFlag(v, 'max-windows', 0); // 0: every window (as train --ppl-windows)
  const windowStep = intFlag(v, 'window-step')!;
  const batchSize = intFlag(v, 'batch-size')!;
  const m = await loadModel(v, process.stderr, { optionalTokenizer: true });
  try {
    for (const n of m.notes) process.stderr.write(`${n}\n`);
    warnContext(m.model.config, Math.max(...seqLens));
    const t = await testSet(v, m);
    process.stderr.write(`test set: ${t.note}\n`);
    try {
      const settings = {
        seqLens, procedures: procedures as PplProcedure[], windowStep, batchSize, precision,
        ...(stride !== undefined ? { stride } : {}), ...(maxWindows ? { maxWindows } : {}),
      };
      const results = await perplexity(m.model, t.data, settings);
      console.log(pplTable(results));
      if (typeof v.json === 'string') {
        writeReport(v.json, 'eval ppl', { model: v.model, adapter: v.adapter ?? null, data: v.data, tokens: t.data.numTokens, ...settings }, pplJson(results));
        process.stderr.write(`wrote ${v.json}\n`);
      }
    } finally {
      t.close();
    }
  } finally {
    m.model.dispose();
  }
}

async function passkey(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora eval passkey --model DIR|org/name|FILE.gguf [--adapter DIR] [--lengths 1000,2000 | --max-tokens N --interval 1000] [--trials 10]', PASSKEY_OPTIONS);
  if (!args) return;
  const v = args.values;
  const cache = cacheFlags(v);
  if (typeof v.json === 'string') checkOutputFile(v.json, '--json');
  const given = typeof v.lengths === 'string' ? list(v.lengths, '--lengths') : null;
  if (given && v['max-tokens'] !== undefined) throw new LongLoraError('give --lengths, or --max-tokens (with --interval) for the official ladder, not both');
  const [maxTokens, interval] = [intFlag(v, 'max-tokens'), intFlag(v, 'interval')!];
  const [trials, seed] = [intFlag(v, 'trials')!, intFlag(v, 'seed', 0)!];
  const m = await loadModel(v);
  try {
    for (const n of m.notes) process.stderr.write(`${n}\n`);
    const covered = ropeContextLength(m.model.config.ropeScaling, m.model.config.maxPositionEmbeddings);
    if (!given && maxTokens === undefined && covered < interval) {
      throw new LongLoraError(`passkey: the model covers ${covered} positions, less than one step of the ladder (--interval ${interval}); pass --lengths (e.g. ${Math.max(1, Math.floor(covered / 2))},${covered}), a smaller --interval, or --max-tokens`);
    }
    const lengths = given ?? passkeyLadder(maxTokens ?? covered, interval);
    warnContext(m.model.config, Math.max(...lengths));
    const settings = { lengths, trials, seed, ...cache };
    const results = await passkeyEval(m.model, m.tokenizer, settings);
    console.log(passkeyTable(results));
    if (typeof v.json === 'string') {
      writeReport(v.json, 'eval passkey', { model: v.model, adapter: v.adapter ?? null, ...settings }, results);
      process.stderr.write(`wrote ${v.json}\n`);
    }
  } finally {
    m.model.dispose();
  }
}

/** `longlora eval <ppl|passkey> ...` */
export async function evaluate(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'ppl') return ppl(rest);
  if (sub === 'passkey') return passkey(rest);
  const help = 'usage: longlora eval <ppl|passkey> [options]\n\n  ppl      perplexity of a long-document test set (official windowed and sliding procedures)\n  passkey  passkey retrieval accuracy per prompt length\n\nRun `longlora eval <ppl|passkey> --help` for the options.';
  if (sub === '--help' || sub === '-h') {
    console.log(help);
    return;
  }
  if (!sub) throw new UsageError(`eval needs an evaluation: ppl or passkey\n\n${help}`);
  throw new UsageError(`eval: unknown evaluation '${sub}'; use ppl or passkey`);
}
