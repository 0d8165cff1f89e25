/**
 * safetensors files on disk (the format itself, shared with the browser build, is in
 * safetensors-format.ts). The reader reads only the header at open time and each tensor
 * with one positioned read; the writer writes a temporary and renames it.
 *
 * fs is used through its default export so tests can count reads with `mock.method`.
 */
import fs from 'node:fs';
import { LongLoraError } from '../errors.js';
import { type StagedFile, stageFile, writeAllSync } from './atomic.js';
import {
  type TensorEntry, type TensorInfo, SafetensorsReader, assertLittleEndian, fail, headerJson, headerLength, layoutSafetensors,
  parseHeader, tensorBytes,
} from './safetensors-format.js';

export * from './safetensors-format.js';

/** Largest single read handed to the OS (readSync is limited to 2 GiB per call). */
const MAX_IO_BYTES = 1 << 30;

/** A safetensors file opened for reading. Call `close()` when done. */
export class SafetensorsFile extends SafetensorsReader {
  private fd: number | null;

  private constructor(path: string, fd: number, metadata: Record<string, string>, entries: Map<string, TensorInfo>) {
    super(path, metadata, entries);
    this.fd = fd;
  }

  /** Opens `path`, reading and validating only the header (never the tensor data). */
  static open(path: string): SafetensorsFile {
    assertLittleEndian();
    const fd = openForRead(path);
    try {
      const size = fs.fstatSync(fd).size;
      const headerLen = headerLength(path, size >= 8 ? readExact(path, fd, 0, 8) : new Uint8Array(8), size);
      const json = headerJson(path, readExact(path, fd, 8, headerLen));
      const { metadata, entries } = parseHeader(path, json, 8 + headerLen, size - 8 - headerLen);
      return new SafetensorsFile(path, fd, metadata, entries);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Exactly the bytes of `name`, read with one positioned read, in a fresh buffer. */
  readRaw(name: string): Uint8Array {
    const info = this.info(name);
    if (this.fd === null) throw new LongLoraError(`${this.path}: cannot read tensor "${name}": the file was closed; open it again`);
    return readExact(this.path, this.fd, info.offset, info.byteLength);
  }

  /** Closes the file; later reads throw. Safe to call twice. */
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function openForRead(path: string): number {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new LongLoraError(`${path}: safetensors file not found; check the path`, { cause: err });
    throw new LongLoraError(`${path}: cannot open safetensors file (${code ?? String(err)}); check the path and permissions`, { cause: err });
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new LongLoraError(`${path}: is a folder, not a safetensors file; pass the .safetensors file (or use openCheckpoint for a model folder)`);
  }
  return fd;
}

/** Reads `length` bytes at `position` into a fresh, 8-byte-aligned buffer. */
function readExact(path: string, fd: number, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, MAX_IO_BYTES), position + done);
    if (n === 0) fail(path, `the file ended at byte ${position + done} while reading ${length} bytes at offset ${position}`, 'the file was truncated or changed after it was opened; re-download or re-export it');
    done += n;
  }
  return out;
}

/**
 * Writes a safetensors file into a temporary next to `path` and returns it staged (see
 * atomic.ts); nothing at `path` changes until `commit()`. Data functions are called once
 * each, in data order, after the header is written.
 */
export function stageSafetensors(path: string, entries: Iterable<TensorEntry>, metadata?: Record<string, string>): StagedFile {
  const { planned, prefix } = layoutSafetensors(path, entries, metadata);
  return stageFile(path, (fd) => {
    writeAllSync(fd, prefix);
    for (const { bytes } of tensorBytes(path, planned)) writeAllSync(fd, bytes);
  });
}

/**
 * Writes a safetensors file atomically: the header is computed from shapes first, then
 * data is written tensor by tensor (functions are called one at a time), into a temporary
 * that replaces `path` only when complete. On any error `path` is left as it was.
 */
export function writeSafetensors(path: string, entries: Iterable<TensorEntry>, metadata?: Record<string, string>): void {
  stageSafetensors(path, entries, metadata).commit();
}
