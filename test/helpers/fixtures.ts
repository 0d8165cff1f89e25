/** Paths to committed fixtures and readers for the golden tensors. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsBytes, SafetensorsFile } from '../../src/io/safetensors.js';
import { loadAdapter } from '../../src/io/peft.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { assertClose } from './compare.js';
import type { GoldenEnv } from './golden-runs.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test/...). */
export const ROOT = path.resolve(here, '..', '..', '..');
export const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'golden');

export function goldenDir(variant: string): string {
  return path.join(GOLDEN, variant);
}

/** The golden tensors of a variant, as float64 (or i32 for ids). */
export class Golden {
  private f: SafetensorsFile;
  constructor(variant: string) {
    this.f = SafetensorsFile.open(path.join(goldenDir(variant), 'golden.safetensors'));
  }
  names(): string[] { return this.f.names(); }
  f64(name: string): Float64Array { return this.f.read(name, 'f64').data as Float64Array; }
  i32(name: string): Int32Array { return this.f.read(name).data as Int32Array; }
  shape(name: string): number[] { return this.f.info(name).shape; }
  close(): void { this.f.close(); }
}

/** The golden runs' environment in Node: fixtures read as files, every comparison asserted at once. */
export function nodeGoldenEnv(log: (line: string) => void): GoldenEnv {
  return {
    golden: async (variant) => SafetensorsBytes.parse(fs.readFileSync(path.join(goldenDir(variant), 'golden.safetensors')), `${variant}/golden.safetensors`),
    model: (variant, opts) => loadLlama(goldenDir(variant), opts),
    adapter: async (model, dir, runtime) => { loadAdapter(model, path.join(GOLDEN, dir), runtime); },
    close: (actual, expected, rtol, label, quiet) => assertClose(actual, expected, rtol, label, quiet ? () => {} : log).rel,
    ok: (value, label) => assert.ok(value, label),
    log,
  };
}
