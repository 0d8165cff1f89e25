/**
 * Text corpora: files and folders of plain text (one document per file) and JSON Lines /
 * JSON-array files of records with a text field (one document per record). Folders are
 * walked recursively in sorted order (hidden entries skipped); documents are yielded one at
 * a time, so only one document is ever in memory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { decodeUtf8 } from '../util/text.js';
import { describeFields, readRecords, type RecordErrors } from './records.js';

/** Extensions read as plain text (in folders; a file named explicitly is read whatever its name). */
export const TEXT_EXTENSIONS = ['.txt', '.text', '.md'];
/** Extensions read as JSON records. */
export const RECORD_EXTENSIONS = ['.jsonl', '.ndjson', '.json'];
/** A single text document larger than this is refused (split it, or use JSON Lines). */
export const MAX_TEXT_FILE_BYTES = 256 * 1024 * 1024;

/** One input file of a corpus, with what the cache checks it by. */
export interface SourceFile {
  path: string;
  size: number;
  mtimeMs: number;
  kind: 'text' | 'records';
}

/** A document and where it came from ("file" or "file:line"). */
export interface Document {
  text: string;
  where: string;
  /** The file held bytes that are not UTF-8 (each became U+FFFD). */
  invalidUtf8?: boolean;
}

/** How records become documents. */
export interface DocumentOptions {
  /** Field of a JSON record that holds the document. */
  textField: string;
  errors: RecordErrors;
  /** Bytes of the current file read so far (progress). */
  onBytes?: (bytes: number) => void;
}

function kindOf(file: string): SourceFile['kind'] | null {
  const ext = path.extname(file).toLowerCase();
  if (RECORD_EXTENSIONS.includes(ext)) return 'records';
  if (TEXT_EXTENSIONS.includes(ext)) return 'text';
  return null;
}

function sourceOf(file: string, kind: SourceFile['kind']): SourceFile {
  const st = fs.statSync(file);
  return { path: path.resolve(file), size: st.size, mtimeMs: st.mtimeMs, kind };
}

/** What a walk collects: the files, those of other kinds, links that lead nowhere, and files reached twice. */
interface Walk {
  sources: SourceFile[];
  skipped: string[];
  broken: string[];
  duplicates: string[];
  /** Real paths of the files and folders seen (a file or folder reached again is read once). */
  seen: Set<string>;
}

function realPath(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

function walk(dir: string, w: Walk): void {
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const p = path.join(dir, name);
    const real = realPath(p);
    if (real === null) { w.broken.push(p); continue; } // a link to nothing, or a link loop
    if (fs.statSync(real).isDirectory()) {
      if (w.seen.has(real)) continue; // a link back up the tree, or to a folder already read
      w.seen.add(real);
      walk(p, w);
    } else {
      const kind = kindOf(p);
      if (!kind) w.skipped.push(p);
      else add(w, p, real, kind);
    }
  }
}

function add(w: Walk, p: string, real: string, kind: SourceFile['kind']): void {
  if (w.seen.has(real)) { w.duplicates.push(p); return; }
  w.seen.add(real);
  w.sources.push(sourceOf(p, kind));
}

/**
 * The files of a corpus given as files and folders. A named file is text unless its
 * extension says JSON records; in folders only known extensions are read (the others are
 * returned as `skipped`). Links are followed; a file reached twice (named twice, inside a
 * folder also given, or through a link) is read once and listed in `duplicates`, and links
 * that lead nowhere are listed in `broken`.
 */
export function listSources(inputs: readonly string[]): { sources: SourceFile[]; skipped: string[]; broken: string[]; duplicates: string[] } {
  const w: Walk = { sources: [], skipped: [], broken: [], duplicates: [], seen: new Set() };
  for (const input of inputs) {
    const real = realPath(input);
    if (real === null) {
      const link = fs.lstatSync(input, { throwIfNoEntry: false });
      throw new LongLoraError(link ? `${input} is a link that leads nowhere (or in a loop); pass the file it should point to` : `${input} not found; pass text files, JSONL files or folders of them`);
    }
    if (fs.statSync(real).isDirectory()) {
      if (w.seen.has(real)) { w.duplicates.push(input); continue; }
      w.seen.add(real);
      walk(input, w);
    } else add(w, input, real, kindOf(input) ?? 'text');
  }
  const { sources, skipped, broken, duplicates } = w;
  if (sources.length === 0) {
    throw new LongLoraError(`no corpus files in ${inputs.join(', ')}${skipped.length ? ` (skipped ${skipped.length} file(s) with other extensions, e.g. ${skipped[0]})` : ''}; ` +
      `text files need ${TEXT_EXTENSIONS.join('/')}, records ${RECORD_EXTENSIONS.join('/')}`);
  }
  return { sources, skipped, broken, duplicates };
}

/** Lines about what a listing left out (files of other kinds, broken links, files reached twice). */
export function listingNotes(l: { skipped: string[]; broken: string[]; duplicates: string[] }): string[] {
  const notes: string[] = [];
  if (l.skipped.length) notes.push(`skipped ${l.skipped.length} file(s) that are not text or JSON (e.g. ${l.skipped[0]})`);
  if (l.broken.length) notes.push(`skipped ${l.broken.length} link(s) that lead nowhere (e.g. ${l.broken[0]})`);
  if (l.duplicates.length) notes.push(`read ${l.duplicates.length} file(s) or folder(s) once that were reached again (e.g. ${l.duplicates[0]}, named twice or through a link)`);
  return notes;
}

/** The documents of one source file, in order. */
export async function* documents(src: SourceFile, opts: DocumentOptions): AsyncGenerator<Document> {
  if (src.kind === 'text') {
    if (src.size > MAX_TEXT_FILE_BYTES) {
      throw new LongLoraError(`${src.path}: ${(src.size / 2 ** 20).toFixed(0)} MiB is too large for one document; split it into files, or write JSON Lines with one document per line`);
    }
    const { text, valid } = decodeUtf8(fs.readFileSync(src.path)); // a byte order mark is not text
    opts.onBytes?.(src.size);
    yield { text, where: src.path, ...(valid ? {} : { invalidUtf8: true }) };
    return;
  }
  for await (const rec of readRecords(src.path, opts.errors, opts.onBytes)) {
    const v = rec.value;
    const text = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[opts.textField] : undefined;
    if (typeof text !== 'string') {
      const kind = v === null || typeof v !== 'object' ? null : 'instruction' in v && 'output' in v ? 'instruction records' : 'messages' in v || 'conversations' in v ? 'conversations' : null;
      const sft = kind ? `; these look like ${kind}: for supervised fine-tuning use --data-format sft` : '';
      opts.errors.handle(src.path, rec.line, `no "${opts.textField}" text field (${describeFields(v)}); set --text-field${sft}`);
      continue;
    }
    yield { text, where: `${src.path}:${rec.line}` };
  }
}
