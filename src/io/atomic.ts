/**
 * Atomic file and folder writes. A file is written under a temporary name in the same
 * folder, flushed to disk (fsync) and renamed over the target, so a reader sees either
 * the old file or the complete new one, never a partial file. On any error the temporary
 * is removed and the previous file is left untouched.
 *
 * Several files that must change together (the shards of a checkpoint) are written in
 * two phases: `stageFile` writes and flushes each temporary, and only when all of them
 * succeeded does the caller `commit` them one by one (a rename each), the index last.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LongLoraError } from '../errors.js';

/** Largest single write handed to the OS (writeSync is limited to 2 GiB per call). */
const MAX_IO_BYTES = 1 << 30;

/** A fully written and flushed temporary file, waiting to be renamed over `path`. */
export interface StagedFile {
  /** The final path. */
  readonly path: string;
  /** The temporary path in the same folder. */
  readonly tempPath: string;
  /** Renames the temporary over `path` (atomic on POSIX filesystems). */
  commit(): void;
  /** Removes the temporary; safe to call more than once and after a failed commit. */
  discard(): void;
}

/** A temporary name next to `target`: hidden, unique to this process and call. */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `.${base}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * Fails at once, before long work whose results would then be lost, when `target` cannot be
 * written as a file: it is an existing folder, or its folder does not exist. `flag` names
 * the option that gave it.
 */
export function checkOutputFile(target: string, flag: string): void {
  const dir = path.dirname(path.resolve(target));
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
    throw new LongLoraError(`${flag} ${target} is a folder; give a file path in it (e.g. ${path.join(target, 'results.json')})`);
  }
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new LongLoraError(`${flag} ${target}: the folder ${dir} does not exist; create it first (mkdir -p) or choose another path`);
  }
}

/**
 * Fails at once when `dir` cannot be made a folder to write into: it is a file, a file
 * stands where one of its parents would go, or the nearest existing parent is not
 * writable. Nothing is created.
 */
export function checkOutputFolder(dir: string, flag: string): void {
  const abs = path.resolve(dir);
  if (fs.existsSync(abs) && !fs.statSync(abs).isDirectory()) throw new LongLoraError(`${flag} ${dir} is a file; give a folder (it is created if missing)`);
  let up = abs;
  while (!fs.existsSync(up)) up = path.dirname(up);
  if (!fs.statSync(up).isDirectory()) throw new LongLoraError(`${flag} ${dir}: ${up} is a file, so the folder cannot be created there; choose another path`);
  try {
    fs.accessSync(up, fs.constants.W_OK);
  } catch {
    throw new LongLoraError(`${flag} ${dir}: ${up} is not writable; choose a folder you can write to`);
  }
}

/**
 * Removes the temporaries of `target` (tempPathFor's names) that processes no longer
 * running left behind (a killed run): the next write of a large file cleans up after the
 * last. Temporaries of running processes are left alone.
 */
export function removeStaleTemps(target: string): void {
  const dir = path.dirname(target);
  const prefix = `.${path.basename(target)}.tmp-`;
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return; }
  for (const name of names) {
    const m = name.startsWith(prefix) ? /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try { process.kill(pid, 0); } catch (e) { alive = (e as NodeJS.ErrnoException).code === 'EPERM'; }
    if (!alive) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/** Writes all of `bytes` to `fd`, looping over short writes. */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    const len = Math.min(bytes.length - done, MAX_IO_BYTES);
    done += fs.writeSync(fd, bytes, done, len);
  }
}

/**
 * Writes a temporary file next to `target` with `write(fd)`, fsyncs and closes it, and
 * returns it staged (not yet renamed). If `write` throws, the temporary is removed and
 * the error is rethrown; `target` is never touched.
 */
export function stageFile(target: string, write: (fd: number) => void): StagedFile {
  const tempPath = tempPathFor(target);
  let fd: number | null = null;
  try {
    fd = openForWrite(tempPath, target);
    write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
  } catch (err) {
    if (fd !== null) closeQuietly(fd);
    removeQuietly(tempPath);
    throw err;
  }
  return makeStaged(target, tempPath);
}

/** Writes `target` atomically: `write(fd)` fills a temporary that is then renamed over it. */
export function writeFileAtomic(target: string, write: (fd: number) => void): void {
  stageFile(target, write).commit();
}

/** Writes bytes or UTF-8 text to `target` atomically. */
export function writeBytesAtomic(target: string, data: Uint8Array | string): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  writeFileAtomic(target, (fd) => writeAllSync(fd, bytes));
}

/** Writes `value` as JSON (2-space indent, trailing newline) to `target` atomically. */
export function writeJsonAtomic(target: string, value: unknown): void {
  writeBytesAtomic(target, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Writes a whole folder atomically: `fill(tempDir)` populates a temporary folder next to
 * `dir`, which then replaces `dir` (an existing `dir` is moved aside first and restored if
 * the final rename fails, then deleted). If `fill` throws, the temporary folder is removed
 * and `dir` is left as it was. The swap is two renames, so a crash between them leaves the
 * old folder under a hidden `.NAME.old-*` name rather than at `dir`.
 */
export function writeDirAtomic(dir: string, fill: (tempDir: string) => void): void {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tempDir = tempPathFor(dir);
  try {
    fs.mkdirSync(tempDir);
    fill(tempDir);
    fsyncFilesIn(tempDir);
  } catch (err) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    throw err;
  }
  try {
    swapDir(dir, tempDir);
  } catch (err) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    throw err;
  }
  fsyncDir(parent);
}

/** Moves `tempDir` to `dir`, replacing an existing `dir`. */
function swapDir(dir: string, tempDir: string): void {
  if (!fs.existsSync(dir)) {
    renameOrFail(tempDir, dir);
    return;
  }
  const old = path.join(path.dirname(dir), `.${path.basename(dir)}.old-${process.pid}-${randomBytes(6).toString('hex')}`);
  renameOrFail(dir, old);
  try {
    renameOrFail(tempDir, dir);
  } catch (err) {
    fs.renameSync(old, dir);
    fs.rmSync(tempDir, { recursive: true, force: true });
    throw err;
  }
  fs.rmSync(old, { recursive: true, force: true });
}

function makeStaged(target: string, tempPath: string): StagedFile {
  let done = false;
  return {
    path: target,
    tempPath,
    commit(): void {
      if (done) return;
      try {
        renameOrFail(tempPath, target);
      } catch (err) {
        removeQuietly(tempPath);
        throw err;
      }
      done = true;
      fsyncDir(path.dirname(target));
    },
    discard(): void {
      if (done) return;
      removeQuietly(tempPath);
      done = true;
    },
  };
}

function openForWrite(tempPath: string, target: string): number {
  try {
    return fs.openSync(tempPath, 'wx');
  } catch (err) {
    throw new LongLoraError(
      `cannot write ${target}: creating the temporary file ${tempPath} failed (${errCode(err)}); ` +
        'check that the folder exists and is writable and that the disk is not full',
      { cause: err },
    );
  }
}

function renameOrFail(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (err) {
    throw new LongLoraError(
      `cannot move ${from} to ${to} (${errCode(err)}); check permissions and that ${to} is not open in another program`,
      { cause: err },
    );
  }
}

/** fsyncs every regular file directly inside `dir` (best effort for nested folders). */
function fsyncFilesIn(dir: string): void {
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) fsyncFilesIn(p);
    else if (ent.isFile()) {
      const fd = fs.openSync(p, 'r+');
      try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    }
  }
  fsyncDir(dir);
}

/** Flushes a folder's entries (the rename) to disk; not possible on every OS, so best effort. */
function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Windows and some filesystems refuse to open or fsync a folder; the rename still happened.
  } finally {
    if (fd !== null) closeQuietly(fd);
  }
}

function closeQuietly(fd: number): void {
  try { fs.closeSync(fd); } catch { /* already closed */ }
}

function removeQuietly(p: string): void {
  try { fs.rmSync(p, { force: true }); } catch { /* nothing left to clean */ }
}

function errCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err) return String((err as { code: unknown }).code);
  return err instanceof Error ? err.message : String(err);
}
