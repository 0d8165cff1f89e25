/** Helpers for trainer tests: random token files and a small, fast config. */
import path from 'node:path';
import { writeTokenFile } from '../../src/data/tokens.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { Rng } from '../../src/tensor/random.js';
import { goldenDir } from './fixtures.js';

/** Writes `n` random token ids below `vocab` into dir/tokens.bin. */
export function tokenFile(dir: string, n = 2048, vocab = 96, seed = 0): string {
  const rng = new Rng(seed);
  const file = path.join(dir, 'tokens.bin');
  writeTokenFile(file, Array.from({ length: n }, () => rng.int(vocab)), 'uint16');
  return file;
}

/** A config that trains the tiny short-context model for a few fast steps. */
export function tinyConfig(dir: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return {
    ...defaultTrainConfig(),
    model: goldenDir('tiny-llama-short'),
    data: tokenFile(dir),
    output: path.join(dir, 'run'),
    seqLen: 32,
    steps: 6,
    batchSize: 1,
    gradAccum: 2,
    lr: 1e-2,
    warmupSteps: 2,
    saveEvery: 3,
    loraR: 4,
    loraAlpha: 8,
    backend: 'cpu',
    ...over,
  };
}

/** A progress sink that keeps what was written. */
export function sink(): { write: (s: string) => boolean; text: () => string } {
  const parts: string[] = [];
  return { write: (s: string) => { parts.push(s); return true; }, text: () => parts.join('') };
}
