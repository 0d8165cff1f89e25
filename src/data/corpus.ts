/**
 * Text corpora: files and folders of plain text (one document per file) and JSON Lines /
 * JSON-array files of records with a text field (one document per record). Folders are
 * walked recursively in sorted order (hidden entries skipped); documents are yielded one at
 * a time, so only one document is ever in memory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
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

function walk(dir: string, out: SourceFile[], skipped: string[]): void {
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const p = path.join(dir, name);
    const st = fs.statSync(p);
    if (st.isDirectory()) walk(p, out, skipped);
    else {
      const kind = kindOf(p);
      if (kind) out.push(sourceOf(p, kind));
      else skipped.push(p);
    }
  }
}

/**
 * The files of a corpus given as files and folders. A named file is text unless its
 * extension says JSON records; in folders only known extensions are read (the others are
 * returned as `skipped`).
 */
export function listSources(inputs: readonly string[]): { sources: SourceFile[]; skipped: string[] } {
  const sources: SourceFile[] = [];
  const skipped: string[] = [];
  for (const input of inputs) {
    if (!fs.existsSync(input)) throw new LongLoraError(`${input} not found; pass text files, JSONL files or folders of them`);
    if (fs.statSync(input).isDirectory()) walk(input, sources, skipped);
    else sources.push(sourceOf(input, kindOf(input) ?? 'text'));
  }
  if (sources.length === 0) {
    throw new LongLoraError(`no corpus files in ${inputs.join(', ')}${skipped.length ? ` (skipped ${skipped.length} file(s) with other extensions, e.g. ${skipped[0]})` : ''}; ` +
      `text files need ${TEXT_EXTENSIONS.join('/')}, records ${RECORD_EXTENSIONS.join('/')}`);
  }
  return { sources, skipped };
}

/** The documents of one source file, in order. */
export async function* documents(src: SourceFile, opts: DocumentOptions): AsyncGenerator<Document> {
  if (src.kind === 'text') {
    if (src.size > MAX_TEXT_FILE_BYTES) {
      throw new LongLoraError(`${src.path}: ${(src.size / 2 ** 20).toFixed(0)} MiB is too large for one document; split it into files, or write JSON Lines with one document per line`);
    }
    const text = fs.readFileSync(src.path, 'utf8');
    opts.onBytes?.(src.size);
    yield { text, where: src.path };
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
