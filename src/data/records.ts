/**
 * Streaming readers for JSON records: JSON Lines (one value per line) and a top-level
 * JSON array (LongAlpaca-12k.json is one, larger than a JavaScript string may be), read
 * chunk by chunk so a file larger than memory works. Every record comes with the line it
 * starts on; a malformed record is an error that names file and line, or — with the
 * "skip" policy — is counted, reported, and skipped.
 */
import fs from 'node:fs';
import { LongLoraError } from '../errors.js';

/** What to do with a malformed or incomplete record. */
export type BadRecords = 'error' | 'skip';

/** A record that was skipped, and why. */
export interface RecordIssue {
  file: string;
  line: number;
  message: string;
}

/** Collects bad records under a policy: throws on the first (error) or keeps a list (skip). */
export class RecordErrors {
  readonly issues: RecordIssue[] = [];

  constructor(readonly policy: BadRecords) {}

  /** Reports one bad record. */
  handle(file: string, line: number, message: string): void {
    if (this.policy === 'error') {
      throw new LongLoraError(`${file}:${line}: ${message}. Fix the record, or pass --bad-records skip to skip such records (they are counted and listed)`);
    }
    this.issues.push({ file, line, message });
  }

  /** "N skipped (file:line: why; ...)" or '' when none. */
  summary(max = 5): string {
    if (this.issues.length === 0) return '';
    const shown = this.issues.slice(0, max).map((i) => `${i.file}:${i.line}: ${i.message}`).join('; ');
    return `${this.issues.length} bad record(s) skipped (${shown}${this.issues.length > max ? '; ...' : ''})`;
  }
}

/** A parsed record and where it starts. */
export interface JsonRecord {
  value: unknown;
  line: number;
}

/** Chunks of a file as text (multi-byte characters are never split), with bytes read so far. */
async function* chunks(file: string, onBytes?: (bytes: number) => void): AsyncGenerator<string> {
  const stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const decoder = new TextDecoder('utf-8');
  let bytes = 0;
  for await (const buf of stream as AsyncIterable<Buffer>) {
    bytes += buf.length;
    onBytes?.(bytes);
    yield decoder.decode(buf, { stream: true });
  }
  const tail = decoder.decode();
  if (tail) yield tail;
}

/** JSON Lines: one value per non-blank line. Unparseable lines go to `errors`. */
async function* jsonLines(file: string, errors: RecordErrors, onBytes?: (bytes: number) => void): AsyncGenerator<JsonRecord> {
  let carry = '';
  let line = 0;
  const parse = function* (text: string): Generator<JsonRecord> {
    line++;
    const t = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (t.trim() === '') return;
    try {
      yield { value: JSON.parse(t), line };
    } catch (e) {
      errors.handle(file, line, `not valid JSON (${(e as Error).message})`);
    }
  };
  for await (const chunk of chunks(file, onBytes)) {
    const parts = (carry + chunk).split('\n');
    carry = parts.pop()!;
    for (const p of parts) yield* parse(p);
  }
  if (carry !== '') yield* parse(carry);
}

/** The elements of a top-level JSON array, one at a time. */
async function* jsonArray(file: string, errors: RecordErrors, onBytes?: (bytes: number) => void): AsyncGenerator<JsonRecord> {
  let depth = 0;
  let inString = false;
  let escape = false;
  let line = 1;
  let started = false;
  let ended = false;
  let parts: string[] = [];
  let elemLine = 0;
  let elemHasText = false;
  const emit = function* (): Generator<JsonRecord> {
    const text = parts.join('');
    parts = [];
    if (!elemHasText) return;
    elemHasText = false;
    try {
      yield { value: JSON.parse(text), line: elemLine };
    } catch (e) {
      errors.handle(file, elemLine, `array element is not valid JSON (${(e as Error).message})`);
    }
  };
  for await (const chunk of chunks(file, onBytes)) {
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c === 10) line++;
      if (inString) {
        if (escape) escape = false;
        else if (c === 92) escape = true;
        else if (c === 34) inString = false;
        continue;
      }
      if (!started) {
        if (c === 91) { started = true; depth = 1; from = i + 1; continue; }
        if (c === 32 || c === 9 || c === 10 || c === 13 || c === 0xfeff) continue;
        throw new LongLoraError(`${file}:${line}: expected a JSON array of records ("[" first) or JSON Lines; name JSON Lines files *.jsonl`);
      }
      if (ended) {
        if (c === 32 || c === 9 || c === 10 || c === 13) continue;
        throw new LongLoraError(`${file}:${line}: text after the end of the JSON array`);
      }
      if (depth === 1 && !elemHasText && c !== 32 && c !== 9 && c !== 10 && c !== 13 && c !== 44 && c !== 93) {
        elemHasText = true;
        elemLine = line;
      }
      if (c === 34) inString = true;
      else if (c === 91 || c === 123) depth++;
      else if (c === 125) depth--;
      else if (c === 93) {
        depth--;
        if (depth === 0) {
          parts.push(chunk.slice(from, i));
          yield* emit();
          ended = true;
          from = i + 1;
        }
      } else if (c === 44 && depth === 1) {
        parts.push(chunk.slice(from, i));
        yield* emit();
        from = i + 1;
      }
      if (depth < 0) throw new LongLoraError(`${file}:${line}: unbalanced brackets in the JSON array; the file is damaged`);
    }
    if (started && !ended) parts.push(chunk.slice(from));
  }
  if (!started) throw new LongLoraError(`${file}: empty file; expected a JSON array of records`);
  if (!ended) throw new LongLoraError(`${file}:${line}: the JSON array is not closed (file truncated?)`);
}

/** Whether a file holds a JSON array (first non-blank character "["), read from its start. */
function startsWithBracket(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const head = buf.subarray(0, n).toString('utf8').replace(/^\uFEFF/, '').trimStart();
    return head.startsWith('[');
  } finally {
    fs.closeSync(fd);
  }
}

/** A .json file that is one JSON object (pretty-printed, say): that object as the only record. */
async function* singleObject(file: string, value: unknown, onBytes?: (bytes: number) => void): AsyncGenerator<JsonRecord> {
  onBytes?.(fs.statSync(file).size);
  yield { value, line: 1 };
}

/** Files up to this size named .json are first tried as one JSON object. */
const SINGLE_OBJECT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The records of a .json / .jsonl file: a JSON array is read element by element; a .json
 * file holding one object is one record; anything else is read as JSON Lines. `onBytes`
 * reports progress in bytes read.
 */
export function readRecords(file: string, errors: RecordErrors, onBytes?: (bytes: number) => void): AsyncGenerator<JsonRecord> {
  if (!fs.existsSync(file)) throw new LongLoraError(`${file} not found`);
  if (startsWithBracket(file)) return jsonArray(file, errors, onBytes);
  if (file.toLowerCase().endsWith('.json') && fs.statSync(file).size <= SINGLE_OBJECT_MAX_BYTES) {
    try {
      const value = JSON.parse(fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, '')) as unknown;
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) return singleObject(file, value, onBytes);
    } catch { /* not one object: JSON Lines */ }
  }
  return jsonLines(file, errors, onBytes);
}

/** The fields a record has, for messages ("fields: a, b"). */
export function describeFields(value: unknown): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return `a ${Array.isArray(value) ? 'list' : value === null ? 'null' : typeof value}, not an object`;
  const keys = Object.keys(value);
  return keys.length ? `fields: ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', ...' : ''}` : 'no fields';
}
