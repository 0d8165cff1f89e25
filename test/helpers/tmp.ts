/** Temporary folders for tests: one root per test file, removed after it. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';

/** Registers before/after hooks and returns a function that makes a fresh empty folder. */
export function tempFolders(prefix: string): () => string {
  let root = '';
  let n = 0;
  before(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), `longlora-${prefix}-`)); });
  after(() => { fs.rmSync(root, { recursive: true, force: true }); });
  return () => {
    const d = path.join(root, `t${n++}`);
    fs.mkdirSync(d);
    return d;
  };
}
