/**
 * SFT sets on disk and in batches. Records are tokenized once into a cache — the ids of
 * every kept example back to back in `<name>.bin` (uint16/uint32), an index
 * `<name>.idx` of [offset, length, first span, span count] per example (float64), the
 * examples' label spans `<name>.spans` ([start, end) pairs, float64), and a JSON sidecar
 * with the sources, tokenizer and chat-template hashes, options and the report — reused
 * until something changes. Training draws examples in a seeded shuffled order per epoch and
 * right-pads each micro-batch to its longest example (rounded up to a multiple of 8, so
 * S²-Attn group sizes stay whole); padding gets label −100 and, being at the end under a
 * causal mask, never reaches a real token.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { tempPathFor, writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';
import { IGNORE_INDEX } from '../nn/loss.js';
import type { ChatTemplate } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { sha256Hex } from '../util/sha256.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';
import { listingNotes, listSources } from './corpus.js';
import { readRecords, RecordErrors, type BadRecords } from './records.js';
import { countSft, emptySftReport, parseSftRecord, SftRecordError, sftLabels, tokenizeSft, type SftExample, type SftOverlong, type SftReport, type SftTemplate } from './sft.js';
import { defaultCacheDir, ensureWritable, readMeta, sourcesMatch, CACHE_FORMAT, type TokenCacheMeta } from './token-cache.js';
import { shuffledOrder, tokenBytes, tokenDTypeFor, TokenFile, TokenWriter, type DataPosition, type TokenDType } from './tokens.js';

/** The sidecar of an SFT cache (`<file>.json`). */
export interface SftCacheMeta {
  format: number;
  kind: 'sft';
  sources: TokenCacheMeta['sources'];
  tokenizer: TokenCacheMeta['tokenizer'];
  /** The layout of the index and spans (SFT_LAYOUT). */
  layout: number;
  template: SftTemplate;
  /** Hash of the chat template the `chat` form renders with (null for llama2, whose template is built in). */
  chatTemplate: string | null;
  maxLen: number;
  overlong: SftOverlong;
  dtype: TokenDType;
  numExamples: number;
  numTokens: number;
  report: SftReport;
  skipped: string;
}

/** Options of `buildSftCache`. */
export interface SftCacheOptions {
  tokenizer: Tokenizer;
  template: SftTemplate;
  /** The chat template of the `chat` form (default: the tokenizer's). */
  chatTemplate?: ChatTemplate | null;
  maxLen: number;
  overlong: SftOverlong;
  badRecords?: BadRecords;
  /** The .bin to write; default `<cacheDir>/<name>-sft-<key>.bin`. */
  output?: string;
  cacheDir?: string;
  force?: boolean;
  out?: ProgressStream;
}

/** A built or reused SFT cache. */
export interface SftCache {
  file: string;
  meta: SftCacheMeta;
  reused: boolean;
  /** What listing the inputs left out (files of other kinds, broken links, files reached twice). */
  notes?: string[];
}

/** The layout of SFT caches: label spans (1 was one prompt length per example). */
const SFT_LAYOUT = 2;

/** The hash that names the chat template of the `chat` form, or null. */
function chatTemplateHash(o: SftCacheOptions): string | null {
  const t = o.template === 'chat' ? o.chatTemplate ?? o.tokenizer.chatTemplate : null;
  return t ? sha256Hex(t.source).slice(0, 16) : null;
}

function defaultPath(inputs: readonly string[], o: SftCacheOptions): string {
  const first = path.resolve(inputs[0]!);
  const dir = o.cacheDir ?? defaultCacheDir(first);
  const key = crypto.createHash('sha256').update(JSON.stringify({
    inputs: inputs.map((i) => path.resolve(i)), tok: o.tokenizer.hash, t: o.template, c: chatTemplateHash(o), n: o.maxLen, o: o.overlong,
  })).digest('hex').slice(0, 16);
  return path.join(dir, `${path.basename(first).replace(/\.[^.]*$/, '') || 'sft'}-sft-${key}.bin`);
}

/** The index and spans files of a cache's .bin. */
function sideFiles(file: string): { idx: string; spans: string } {
  const base = file.replace(/\.bin$/, '');
  return { idx: `${base}.idx`, spans: `${base}.spans` };
}

/** Tokenizes SFT records (JSON array or JSON Lines files, or folders of them) into a cache, or reuses it. */
export async function buildSftCache(inputs: readonly string[], o: SftCacheOptions): Promise<SftCache> {
  const listing = listSources(inputs);
  const { sources } = listing;
  const notes = listingNotes(listing);
  const text = sources.find((s) => s.kind !== 'records');
  if (text) throw new LongLoraError(`${text.path}: SFT data must be JSON or JSON Lines records ({instruction, input, output}, or conversations), not plain text`);
  const file = o.output ?? defaultPath(inputs, o);
  const side = sideFiles(file);
  const chatHash = chatTemplateHash(o);
  const old = readMeta<SftCacheMeta>(file);
  const current = old && old.format === CACHE_FORMAT && old.kind === 'sft' && old.layout === SFT_LAYOUT && sourcesMatch(old.sources, sources) &&
    old.tokenizer.hash === o.tokenizer.hash && old.template === o.template && old.chatTemplate === chatHash && old.maxLen === o.maxLen && old.overlong === o.overlong &&
    fs.existsSync(file) && fs.existsSync(side.idx) && fs.existsSync(side.spans) && fs.statSync(file).size === old.numTokens * tokenBytes(old.dtype);
  if (current && !o.force) return { file, meta: old, reused: true, notes };
  ensureWritable(path.dirname(file));
  const out = o.out ?? process.stderr;
  const errors = new RecordErrors(o.badRecords ?? 'error');
  const report = emptySftReport();
  const dtype = tokenDTypeFor(o.tokenizer.vocabSize);
  const index: number[] = [];
  const spans: number[] = [];
  const totalBytes = sources.reduce((a, s) => a + s.size, 0);
  const bar = new ProgressBar(Math.max(1, Math.ceil(totalBytes / 1e6)), 'MB', 0, out);
  bar.log(`tokenizing SFT records from ${sources.length} file(s) (${o.template} template, ≤ ${o.maxLen} tokens) into ${file}`);
  const tmp = tempPathFor(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    const w = new TokenWriter(fd, dtype);
    let done = 0;
    for (const src of sources) {
      const onBytes = (b: number): void => bar.update(Math.min(bar.total, Math.floor((done + b) / 1e6)), { kept: String(report.kept) });
      for await (const rec of readRecords(src.path, errors, onBytes)) {
        const r = parseSftRecord(rec.value, src.path, rec.line, errors);
        if (!r) continue;
        let t: ReturnType<typeof tokenizeSft>;
        try {
          t = tokenizeSft(r, o.tokenizer, o);
        } catch (e) {
          if (!(e instanceof SftRecordError)) throw e;
          errors.handle(src.path, rec.line, e.message);
          continue;
        }
        const { example, outcome } = t;
        countSft(report, r, example, outcome);
        if (!example) continue;
        index.push(w.count, example.ids.length, spans.length / 2, example.spans.length);
        for (const [a, b] of example.spans) spans.push(a, b);
        w.write(example.ids);
      }
      done += src.size;
    }
    w.flush();
    fs.closeSync(fd);
    bar.update(bar.total, { kept: String(report.kept) });
    report.badRecords = errors.issues.length;
    if (report.kept === 0) {
      throw new LongLoraError(`${inputs.join(', ')}: no usable SFT examples (${report.records} record(s): ${report.tooLong} too long, ${report.noResponse} without room for a response, ${report.badRecords} bad); ` +
        'check the files, raise --seq-len, or use --sft-overlong truncate');
    }
    fs.renameSync(tmp, file);
    writeBytesAtomic(side.idx, new Uint8Array(Float64Array.from(index).buffer));
    writeBytesAtomic(side.spans, new Uint8Array(Float64Array.from(spans).buffer));
    const meta: SftCacheMeta = {
      format: CACHE_FORMAT, kind: 'sft', layout: SFT_LAYOUT,
      sources: sources.map(({ path: p, size, mtimeMs }) => ({ path: p, size, mtimeMs })),
      tokenizer: { source: o.tokenizer.source, hash: o.tokenizer.hash, vocabSize: o.tokenizer.vocabSize, bosId: o.tokenizer.bosId, eosId: o.tokenizer.eosId },
      template: o.template, chatTemplate: chatHash, maxLen: o.maxLen, overlong: o.overlong, dtype,
      numExamples: report.kept, numTokens: w.count, report, skipped: errors.summary(),
    };
    writeJsonAtomic(`${file}.json`, meta);
    return { file, meta, reused: false, notes };
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** A tokenized SFT set opened for reading (examples are read on demand). */
export class SftDataset {
  readonly numExamples: number;
  private readonly tokens: TokenFile;
  private readonly index: Float64Array;
  private readonly spans: Float64Array;

  private constructor(readonly file: string, readonly meta: SftCacheMeta) {
    const side = sideFiles(file);
    for (const f of [side.idx, side.spans]) {
      if (!fs.existsSync(f)) throw new LongLoraError(`${file}: ${path.basename(f)}, written beside it by longlora tokenize --format sft, is missing; tokenize the records again`);
    }
    this.tokens = new TokenFile(file, meta.dtype);
    const f64 = (b: Buffer): Float64Array => new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    this.index = f64(fs.readFileSync(side.idx));
    this.spans = f64(fs.readFileSync(side.spans));
    this.numExamples = this.index.length / 4;
    const last = this.numExamples * 4 - 4;
    if (this.numExamples !== meta.numExamples || (last >= 0 && 2 * (this.index[last + 2]! + this.index[last + 3]!) !== this.spans.length)) {
      throw new LongLoraError(`${file}: the index does not match the sidecar; delete the cache to rebuild it`);
    }
  }

  static open(c: SftCache): SftDataset {
    return new SftDataset(c.file, c.meta);
  }

  /** Example i, its ids checked against the model's vocabulary. */
  get(i: number, vocabSize: number): SftExample {
    const [off, len, first, count] = this.index.subarray(4 * i, 4 * i + 4) as unknown as [number, number, number, number];
    const spans: Array<[number, number]> = [];
    for (let k = first; k < first + count; k++) spans.push([this.spans[2 * k]!, this.spans[2 * k + 1]!]);
    return { ids: this.tokens.read(off, len, vocabSize), spans };
  }

  close(): void {
    this.tokens.close();
  }
}

/** A right-padded batch of SFT examples. */
export interface SftBatch {
  ids: Int32Array;
  labels: Int32Array;
  B: number;
  N: number;
}

/** Right-pads examples into [B, N]: N the longest, rounded up to `multiple`; pad labels −100. */
export function padBatch(examples: readonly SftExample[], padId: number, multiple = 8): SftBatch {
  const longest = Math.max(...examples.map((e) => e.ids.length));
  const N = Math.ceil(longest / multiple) * multiple;
  const B = examples.length;
  const ids = new Int32Array(B * N).fill(padId);
  const labels = new Int32Array(B * N).fill(IGNORE_INDEX);
  examples.forEach((e, b) => {
    ids.set(e.ids, b * N);
    labels.set(sftLabels(e), b * N);
  });
  return { ids, labels, B, N };
}

/** Examples [from, to) of a set in a seeded order per epoch, in padded batches; resumable. */
export class SftSampler {
  private order: Uint32Array;
  private pos: DataPosition;
  readonly count: number;

  constructor(readonly data: SftDataset, readonly from: number, readonly to: number, readonly vocabSize: number, readonly seed: number, readonly padId: number, start: DataPosition = { epoch: 0, index: 0 }) {
    this.count = to - from;
    if (this.count < 1) throw new LongLoraError(`${data.file}: no SFT examples left for training after the held-out split; lower --val-fraction`);
    this.pos = { ...start };
    this.order = shuffledOrder(this.count, seed, start.epoch);
    if (start.index > this.count) throw new LongLoraError(`data position ${start.index} is past the ${this.count} examples of ${data.file}; the data changed since the checkpoint`);
  }

  position(): DataPosition {
    return { ...this.pos };
  }

  /** The next B examples, padded. */
  next(B: number): SftBatch {
    const ex: SftExample[] = [];
    for (let b = 0; b < B; b++) {
      if (this.pos.index >= this.count) {
        this.pos = { epoch: this.pos.epoch + 1, index: 0 };
        this.order = shuffledOrder(this.count, this.seed, this.pos.epoch);
      }
      ex.push(this.data.get(this.from + this.order[this.pos.index++]!, this.vocabSize));
    }
    return padBatch(ex, this.padId);
  }
}
