/**
 * Tokenizing a text corpus once into a binary token file (the format TokenFile reads:
 * uint16/uint32 little-endian ids) with a JSON sidecar that records what it was built
 * from — every source file with its size and modification time, the tokenizer's hash and
 * the options — so the next run reuses it, and rebuilds it when anything changed. The
 * stream is BOS (when the tokenizer has one), then each document's tokens followed by
 * EOS: the official continued-pretraining layout (documents joined with EOS), written
 * document by document so a corpus larger than memory works.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { removeStaleTemps, tempPathFor, writeJsonAtomic } from '../io/atomic.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';
import { documents, listingNotes, listSources, type SourceFile } from './corpus.js';
import { RecordErrors, type BadRecords } from './records.js';
import { tokenBytes, tokenDTypeFor, TokenWriter, type TokenDType } from './tokens.js';

/**
 * Version of the caches; a cache of another version is rebuilt. 2: a text file's byte
 * order mark is dropped, and a file reached twice is read once.
 */
export const CACHE_FORMAT = 2;

/** The sidecar written next to a token cache (`<file>.json`). */
export interface TokenCacheMeta {
  format: number;
  kind: 'text';
  sources: Array<{ path: string; size: number; mtimeMs: number }>;
  tokenizer: { source: string; hash: string; vocabSize: number; bosId: number | null; eosId: number | null };
  textField: string;
  bos: boolean;
  dtype: TokenDType;
  numTokens: number;
  documents: number;
  emptyDocuments: number;
  skippedRecords: number;
}

/** Options of `tokenizeCorpus`. */
export interface TokenizeOptions {
  tokenizer: Tokenizer;
  /** JSON field holding a document (default "text"). */
  textField?: string;
  badRecords?: BadRecords;
  /** Start the stream with BOS (default true, when the tokenizer has one). */
  bos?: boolean;
  /** The .bin to write; default `<cacheDir>/<name>-<key>.bin`. */
  output?: string;
  /** Folder for caches (default `.longlora-cache` beside the first input). */
  cacheDir?: string;
  /** Rebuild even when the cache is current. */
  force?: boolean;
  /** Progress and messages (default stderr). */
  out?: ProgressStream;
}

/** A built or reused token cache. */
export interface TokenCache {
  file: string;
  meta: TokenCacheMeta;
  /** True when an existing, current cache was used. */
  reused: boolean;
  /** Messages worth showing (skipped files and records). */
  notes: string[];
}

/** `.longlora-cache` inside a folder input, or beside a file input (hidden, so corpus walks skip it). */
export function defaultCacheDir(input: string): string {
  const isDir = fs.existsSync(input) && fs.statSync(input).isDirectory();
  return path.join(isDir ? input : path.dirname(input), '.longlora-cache');
}

/** Where a corpus's cache goes when no output is named: keyed by inputs, tokenizer and options. */
export function defaultCachePath(inputs: readonly string[], tokenizer: Tokenizer, textField: string, bos: boolean, cacheDir?: string): string {
  const first = path.resolve(inputs[0]!);
  const dir = cacheDir ?? defaultCacheDir(first);
  const key = crypto.createHash('sha256')
    .update(JSON.stringify({ inputs: inputs.map((i) => path.resolve(i)), tok: tokenizer.hash, textField, bos })).digest('hex').slice(0, 16);
  return path.join(dir, `${path.basename(first).replace(/\.[^.]*$/, '') || 'corpus'}-${key}.bin`);
}

/** The sidecar of a cache file, or null. */
export function readMeta<T = TokenCacheMeta>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(`${file}.json`, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Why a cache is stale, or null when it can be reused. */
export function staleness(meta: TokenCacheMeta | null, file: string, sources: readonly SourceFile[], tokenizer: Tokenizer, textField: string, bos: boolean): string | null {
  if (!meta) return 'no cache yet';
  if (meta.format !== CACHE_FORMAT) return 'written by another version of longlora';
  if (!fs.existsSync(file)) return 'the token file is missing';
  if (fs.statSync(file).size !== meta.numTokens * tokenBytes(meta.dtype)) return 'the token file has the wrong size';
  if (meta.tokenizer.hash !== tokenizer.hash) return 'the tokenizer changed';
  if (meta.textField !== textField || meta.bos !== bos) return 'the options changed';
  return sourcesMatch(meta.sources, sources) ? null : 'the source files changed';
}

/** Creates the cache folder, or explains how to put the cache elsewhere. */
export function ensureWritable(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    throw new LongLoraError(`cannot write the token cache in ${dir} (${(e as { code?: string }).code ?? String(e)}); pass --output FILE.bin (or a writable cache folder)`);
  }
}

/** Whether recorded sources are the current files (same paths, sizes and modification times). */
export function sourcesMatch(recorded: TokenCacheMeta['sources'], sources: readonly SourceFile[]): boolean {
  return recorded.length === sources.length && recorded.every((s, i) => {
    const t = sources[i]!;
    return s.path === t.path && s.size === t.size && s.mtimeMs === t.mtimeMs;
  });
}

/**
 * Tokenizes `inputs` (files and folders) into a token cache, or reuses a current one.
 * Errors when the corpus has no tokens.
 */
export async function tokenizeCorpus(inputs: readonly string[], opts: TokenizeOptions): Promise<TokenCache> {
  const tok = opts.tokenizer;
  const textField = opts.textField ?? 'text';
  const bos = (opts.bos ?? true) && tok.bosId !== null;
  const out = opts.out ?? process.stderr;
  const listing = listSources(inputs);
  const { sources } = listing;
  const file = opts.output ?? defaultCachePath(inputs, tok, textField, bos, opts.cacheDir);
  const notes = listingNotes(listing);
  const why = opts.force ? 'rebuild asked' : staleness(readMeta(file), file, sources, tok, textField, bos);
  if (why === null) return { file, meta: readMeta(file)!, reused: true, notes };
  if (tok.eosId === null) throw new LongLoraError(`${tok.source}: the tokenizer has no EOS token to join documents with; set eos_token in tokenizer_config.json`);
  ensureWritable(path.dirname(file));
  const dtype = tokenDTypeFor(tok.vocabSize);
  const errors = new RecordErrors(opts.badRecords ?? 'error');
  const totalBytes = sources.reduce((a, s) => a + s.size, 0);
  const bar = new ProgressBar(Math.max(1, Math.ceil(totalBytes / 1e6)), 'MB', 0, out);
  bar.log(`tokenizing ${sources.length} file(s), ${(totalBytes / 1e6).toFixed(1)} MB, into ${file} (${why})`);
  removeStaleTemps(file); // of a run killed while it tokenized
  const tmp = tempPathFor(file);
  const fd = fs.openSync(tmp, 'w');
  let docs = 0;
  let empty = 0;
  const notUtf8: string[] = [];
  try {
    const w = new TokenWriter(fd, dtype);
    if (bos) w.write([tok.bosId!]);
    let doneBytes = 0;
    for (const src of sources) {
      const onBytes = (b: number): void => bar.update(Math.min(bar.total, Math.floor((doneBytes + b) / 1e6)), { tokens: w.count.toLocaleString('en-US') });
      for await (const doc of documents(src, { textField, errors, onBytes })) {
        if (doc.invalidUtf8) notUtf8.push(doc.where);
        if (doc.text.trim() === '') { empty++; continue; }
        w.write(tok.encode(doc.text, { addSpecialTokens: false }));
        w.write([tok.eosId]);
        docs++;
      }
      doneBytes += src.size;
    }
    w.flush();
    bar.update(bar.total, { tokens: w.count.toLocaleString('en-US') });
    fs.closeSync(fd);
    if (docs === 0) {
      throw new LongLoraError(`${inputs.join(', ')}: the corpus has no documents with text (${sources.length} file(s)${empty ? `, ${empty} empty document(s)` : ''}${errors.issues.length ? `, ${errors.issues.length} bad record(s)` : ''}); check the files and --text-field`);
    }
    fs.renameSync(tmp, file);
    const meta: TokenCacheMeta = {
      format: CACHE_FORMAT, kind: 'text',
      sources: sources.map(({ path: p, size, mtimeMs }) => ({ path: p, size, mtimeMs })),
      tokenizer: { source: tok.source, hash: tok.hash, vocabSize: tok.vocabSize, bosId: tok.bosId, eosId: tok.eosId },
      textField, bos, dtype, numTokens: w.count, documents: docs, emptyDocuments: empty, skippedRecords: errors.issues.length,
    };
    writeJsonAtomic(`${file}.json`, meta);
    if (errors.issues.length) notes.push(errors.summary());
    if (empty) notes.push(`${empty} empty document(s) skipped`);
    if (notUtf8.length) {
      notes.push(`note: ${notUtf8.length} text file(s) are not valid UTF-8 (e.g. ${notUtf8[0]}); their invalid bytes were read as U+FFFD. ` +
        'Convert them to UTF-8 (iconv -f LATIN1 -t UTF-8, say) and tokenize again');
    }
    return { file, meta, reused: false, notes };
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** One line about a cache: tokens, documents, file, reused or built. */
export function describeCache(c: TokenCache): string {
  const m = c.meta;
  return `${m.numTokens.toLocaleString('en-US')} tokens from ${m.documents.toLocaleString('en-US')} document(s) in ${c.file} (${m.dtype}; ${c.reused ? 'cache reused' : 'built'})`;
}
