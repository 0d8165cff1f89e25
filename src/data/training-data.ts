/**
 * What the trainer reads: micro-batches from one of three kinds of data, with an optional
 * held-out split taken from the end, and a position to resume from.
 *  - tokens: a pre-tokenized .bin stream (uint16/uint32), cut into sequences of seqLen.
 *  - text: text files, folders, JSON Lines / JSON with a text field — tokenized once into a
 *    cached .bin (token-cache.ts), then read like tokens.
 *  - sft: instruction records ({instruction, input?, output}) and conversations — tokenized
 *    once with only responses labelled (sft.ts), batched with right padding (sft-data.ts).
 * The held-out part is the last `valFraction` of the sequences (or examples), never trained on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { chatTemplateFrom } from '../tokenizer/chat-files.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import type { ProgressStream } from '../train/progress.js';
import { RECORD_EXTENSIONS } from './corpus.js';
import type { BadRecords } from './records.js';
import { buildSftCache, padBatch, SftDataset, SftSampler, type SftCache, type SftCacheMeta } from './sft-data.js';
import { describeSftReport, type SftOverlong, type SftTemplate } from './sft.js';
import { describeCache, readMeta, tokenizeCorpus, type TokenCacheMeta } from './token-cache.js';
import { SequenceSampler, tokenBytes, TokenFile, type DataPosition, type TokenSource } from './tokens.js';

/** How `--data` is read. */
export type DataFormat = 'auto' | 'tokens' | 'text' | 'sft';

/** The data options of a training config. */
export interface DataSettings {
  model: string | null;
  data: string | null;
  dataFormat: DataFormat;
  dataDtype: 'auto' | 'uint16' | 'uint32';
  tokenizer: string | null;
  textField: string;
  badRecords: BadRecords;
  sftTemplate: SftTemplate;
  chatTemplate: string | null;
  sftOverlong: SftOverlong;
  valFraction: number;
  seqLen: number;
  seed: number;
}

/** One micro-batch: B rows of N ids; labels (−100 = ignored) when they are not the ids. */
export interface TrainingBatch {
  ids: Int32Array;
  labels?: Int32Array;
  B: number;
  N: number;
}

/** Training data as the trainer reads it. */
export interface TrainingData {
  /** Lines for the training log (what was read, reused or built, the split). */
  readonly notes: string[];
  next(B: number): TrainingBatch;
  position(): DataPosition;
  /** The held-out micro-batches (at most `max`), [] when there is no split. */
  heldOut(B: number, max: number): TrainingBatch[];
  close(): void;
}

/** The format `auto` stands for: .bin is tokens, anything else text; SFT is always explicit. */
export function resolveFormat(s: Pick<DataSettings, 'data' | 'dataFormat'>): Exclude<DataFormat, 'auto'> {
  if (s.dataFormat !== 'auto') return s.dataFormat;
  return path.extname(s.data ?? '').toLowerCase() === '.bin' ? 'tokens' : 'text';
}

/** Checks the data options that need no files (before the model is loaded). */
export function checkDataSettings(s: DataSettings, s2Form: string): void {
  const f = resolveFormat(s);
  if (f === 'sft' && s2Form === 'roll') {
    throw new LongLoraError('S²-Attn roll form needs every batch to be a multiple of the group size, but SFT batches vary in length; use --s2-form segmented (the default) for SFT');
  }
  if (f === 'tokens' && RECORD_EXTENSIONS.includes(path.extname(s.data ?? '').toLowerCase())) {
    throw new LongLoraError(`--data-format tokens reads binary token files, but ${s.data} is JSON; use --data-format text (or sft for instruction records and conversations)`);
  }
  if (s.chatTemplate !== null) {
    if (f !== 'sft' || s.sftTemplate !== 'chat') throw new LongLoraError('--chat-template renders SFT conversations: it needs --data-format sft --sft-template chat');
    chatTemplateFrom(s.chatTemplate);
  }
}

function loadTokenizer(s: DataSettings, vocabSize: number): Tokenizer {
  const dir = s.tokenizer ?? s.model;
  if (!dir) throw new LongLoraError('text and SFT data need a tokenizer: set --tokenizer (default: the model folder)');
  const tok = Tokenizer.load(dir);
  tok.checkModel(vocabSize, s.model ?? '');
  return tok;
}

/** The note for a --val-fraction that found nothing to hold out (a single item, which is kept for training). */
function nothingHeldOut(fraction: number, what: string): string {
  return `note: --val-fraction ${fraction} holds nothing out: the data is one ${what}, which is kept for training; ` +
    'use more data (or a shorter --seq-len) for a held-out loss';
}

/** Held-out count of `n` items: none for fraction 0, else at least 1. */
function heldOutCount(n: number, fraction: number): number {
  return fraction > 0 ? Math.max(1, Math.floor(n * fraction)) : 0;
}

/** Sequences of a token file with the last valFraction held out. */
function tokenData(file: TokenFile, s: DataSettings, vocab: number, start: DataPosition | undefined, notes: string[]): TrainingData {
  const total = Math.floor(file.numTokens / s.seqLen);
  const val = total > 1 ? heldOutCount(total, s.valFraction) : 0;
  const train: TokenSource = val > 0 ? file.span(0, (total - val) * s.seqLen) : file;
  const sampler = new SequenceSampler(train, s.seqLen, vocab, s.seed, start);
  notes.push(`data: ${sampler.numSequences.toLocaleString('en-US')} training sequences of ${s.seqLen} tokens${val ? `, ${val} held out` : ''}`);
  if (s.valFraction > 0 && val === 0) notes.push(nothingHeldOut(s.valFraction, `sequence of ${s.seqLen} tokens`));
  return {
    notes,
    next: (B) => ({ ids: sampler.next(B), B, N: s.seqLen }),
    position: () => sampler.position(),
    heldOut: (B, max) => {
      const out: TrainingBatch[] = [];
      for (let i = 0; i < val && out.length < max; i += B) {
        const rows = Math.min(B, val - i);
        out.push({ ids: file.read((total - val + i) * s.seqLen, rows * s.seqLen, vocab), B: rows, N: s.seqLen });
      }
      return out;
    },
    close: () => file.close(),
  };
}

/** The model's tokenizer for checking a token file's sidecar, or null when there is none to load. */
export function tryTokenizer(s: Pick<DataSettings, 'tokenizer' | 'model'>): Tokenizer | null {
  const dir = s.tokenizer ?? s.model;
  try {
    return dir ? Tokenizer.load(dir) : null;
  } catch {
    return null;
  }
}

/**
 * Checks a token file against the sidecar `longlora tokenize` wrote beside it: still the
 * size it records, and made by this model's tokenizer (another vocabulary is an error, the
 * same vocabulary from a tokenizer that differs otherwise a note). Returns the dtype to read.
 */
function checkSidecar(file: string, meta: TokenCacheMeta | SftCacheMeta, s: Pick<DataSettings, 'dataDtype' | 'tokenizer' | 'model'>, tok: Tokenizer | null,
  notes: string[]): TokenCacheMeta['dtype'] {
  const size = fs.statSync(file).size;
  const want = meta.numTokens * tokenBytes(meta.dtype);
  if (size !== want) {
    throw new LongLoraError(`${file} is ${size} bytes, but its sidecar ${path.basename(file)}.json records ${meta.numTokens} ${meta.dtype} tokens (${want} bytes): ` +
      'the file was cut short or replaced after it was written; tokenize the data again (longlora tokenize ... --force), or delete the stale sidecar');
  }
  if (s.dataDtype !== 'auto' && s.dataDtype !== meta.dtype) {
    throw new LongLoraError(`${file} holds ${meta.dtype} tokens (its sidecar says so), not ${s.dataDtype}; drop --data-dtype or set it to ${meta.dtype}`);
  }
  if (tok && meta.tokenizer.hash !== tok.hash) {
    if (meta.tokenizer.vocabSize !== tok.vocabSize) {
      throw new LongLoraError(`${file} was tokenized with ${meta.tokenizer.source} (vocabulary ${meta.tokenizer.vocabSize}), not with the model's tokenizer ${tok.source} (vocabulary ${tok.vocabSize}); ` +
        `tokenize the data again with --tokenizer ${s.tokenizer ?? s.model}`);
    }
    notes.push(`note: ${file} was tokenized with ${meta.tokenizer.source}, whose tokenizer files differ from ${tok.source} (same vocabulary size ${tok.vocabSize}); if the vocabularies differ, tokenize the data again with --tokenizer ${s.tokenizer ?? s.model}`);
  }
  return meta.dtype;
}

/** The sidecar `longlora tokenize` wrote beside a .bin (what it holds and how it was made), or null. */
function sidecarOf(file: string): TokenCacheMeta | SftCacheMeta | null {
  const meta = path.extname(file).toLowerCase() === '.bin' && fs.existsSync(file) ? readMeta<TokenCacheMeta | SftCacheMeta>(file) : null;
  return meta && (meta.kind === 'text' || meta.kind === 'sft') && typeof meta.numTokens === 'number' ? meta : null;
}

/**
 * A token file read as one stream of tokens (training, perplexity, calibration): checked
 * against its sidecar when `longlora tokenize` wrote one (an SFT set is refused: it is
 * examples with labels, not a stream) and every token against the vocabulary.
 */
export function openTokenStream(file: string, s: Pick<DataSettings, 'dataDtype' | 'tokenizer' | 'model'>, vocabSize: number, tok: Tokenizer | null,
  notes: string[]): TokenFile {
  const known = sidecarOf(file);
  if (known?.kind === 'sft') {
    throw new LongLoraError(`${file} is an SFT set written by longlora tokenize --format sft (examples with their labels), not a stream of text tokens; ` +
      'give a token file or the text itself');
  }
  const f = TokenFile.open(file, known ? checkSidecar(file, known, s, tok, notes) : s.dataDtype, vocabSize);
  try {
    f.checkVocabulary(vocabSize);
  } catch (e) {
    f.close();
    throw e;
  }
  return f;
}

/**
 * Opens the training data of a config for a model with `vocabSize` embedding rows,
 * tokenizing text and SFT records first (or reusing their caches). `start` resumes.
 */
export async function openTrainingData(s: DataSettings, vocabSize: number, start: DataPosition | undefined, out: ProgressStream): Promise<TrainingData> {
  if (!s.data) throw new LongLoraError('no training data: set --data to a token file, text/JSONL files or folders, or SFT records');
  const format = resolveFormat(s);
  const notes: string[] = [];
  const known = sidecarOf(s.data);
  if (known?.kind === 'sft' && (format === 'tokens' || format === 'sft')) {
    // an SFT set written by `longlora tokenize --format sft`: examples with their labels, not a token stream
    const tok = tryTokenizer(s);
    checkSidecar(s.data, known, s, tok, notes);
    if (known.maxLen > s.seqLen) {
      throw new LongLoraError(`${s.data} was tokenized for examples of up to ${known.maxLen} tokens, longer than --seq-len ${s.seqLen}; tokenize the records again with --seq-len ${s.seqLen}, or train at --seq-len ${known.maxLen}`);
    }
    const cache: SftCache = { file: s.data, meta: known, reused: true };
    notes.push(`SFT data: ${describeSftReport(known.report, known.maxLen)} (tokenized SFT set ${s.data}: ${known.template} template and overlong ${known.overlong}, as it was tokenized)`);
    if (known.skipped) notes.push(known.skipped);
    return sftData(cache, s, vocabSize, tok?.padId ?? tok?.eosId ?? known.tokenizer.eosId ?? 0, start, notes);
  }
  if (format === 'tokens') return tokenData(openTokenStream(s.data, s, vocabSize, tryTokenizer(s), notes), s, vocabSize, start, notes);
  const tok = loadTokenizer(s, vocabSize);
  notes.push(`tokenizer: ${tok.describe()}`);
  if (format === 'text') {
    const cache = await tokenizeCorpus([s.data], { tokenizer: tok, textField: s.textField, badRecords: s.badRecords, out });
    notes.push(`data: ${describeCache(cache)}`, ...cache.notes);
    if (cache.meta.numTokens < s.seqLen) {
      throw new LongLoraError(`${s.data} holds ${cache.meta.numTokens} tokens (BOS and EOS included), fewer than one training sequence of ${s.seqLen}; use a shorter --seq-len or more data`);
    }
    return tokenData(new TokenFile(cache.file, cache.meta.dtype), s, vocabSize, start, notes);
  }
  const chatTemplate = s.chatTemplate === null ? null : chatTemplateFrom(s.chatTemplate);
  const cache = await buildSftCache([s.data], { tokenizer: tok, template: s.sftTemplate, chatTemplate, maxLen: s.seqLen, overlong: s.sftOverlong, badRecords: s.badRecords, out });
  notes.push(`SFT data: ${describeSftReport(cache.meta.report, s.seqLen)} (${cache.reused ? 'cache reused' : 'built'}: ${cache.file})`, ...cache.notes ?? []);
  if (cache.meta.skipped) notes.push(cache.meta.skipped);
  return sftData(cache, s, vocabSize, tok.padId ?? tok.eosId ?? 0, start, notes);
}

/** An SFT cache as training data, with the last valFraction of the examples held out. */
function sftData(cache: SftCache, s: DataSettings, vocabSize: number, padId: number, start: DataPosition | undefined, notes: string[]): TrainingData {
  const ds = SftDataset.open(cache);
  const n = ds.numExamples;
  const val = n > 1 ? heldOutCount(n, s.valFraction) : 0;
  let sampler: SftSampler;
  try {
    sampler = new SftSampler(ds, 0, n - val, vocabSize, s.seed, padId, start);
  } catch (e) {
    ds.close();
    throw e;
  }
  notes.push(`SFT: ${n - val} training examples${val ? `, ${val} held out` : ''}; right-padded with id ${padId} (label −100)`);
  if (s.valFraction > 0 && val === 0) notes.push(nothingHeldOut(s.valFraction, 'example'));
  return {
    notes,
    next: (B) => sampler.next(B),
    position: () => sampler.position(),
    heldOut: (B, max) => {
      const out: TrainingBatch[] = [];
      for (let i = n - val; i < n && out.length < max; i += B) {
        const ex = [];
        for (let j = i; j < Math.min(n, i + B); j++) ex.push(ds.get(j, vocabSize));
        out.push(padBatch(ex, padId));
      }
      return out;
    },
    close: () => ds.close(),
  };
}
