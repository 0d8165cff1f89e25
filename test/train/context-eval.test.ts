import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { LongLoraError } from '../../src/errors.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { TokenFile } from '../../src/data/tokens.js';
import { setBackend } from '../../src/backend/registry.js';
import { contextTable, defaultContextLengths } from '../../src/train/context-eval.js';
import { Trainer } from '../../src/train/trainer.js';
import type { PplResult } from '../../src/eval/perplexity.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig, tokenFile } from '../helpers/train.js';

const fresh = tempFolders('context-eval');

const result = (seqLen: number, ppl: number): PplResult => ({
  procedure: 'windowed', seqLen, step: 256, windows: 2, windowsTotal: 9, tokensScored: 10, loss: Math.log(ppl), ppl, seconds: 0,
});

describe('long-context evaluation in the trainer', () => {
  it('default lengths: the original context doubled up to the training length', () => {
    assert.deepEqual(defaultContextLengths(256, 2048), [256, 512, 1024, 2048]);
    assert.deepEqual(defaultContextLengths(256, 1536), [256, 512, 1024, 1536]);
    assert.deepEqual(defaultContextLengths(4096, 2048), [2048]);
  });

  it('the table has a row per length and a column per measured model', () => {
    const t = contextTable({ interpolated: [result(8, 20), result(16, 30)], trained: [result(8, 10), result(16, 12.345)] }, { seqLens: [8, 16] });
    const lines = t.split('\n');
    assert.match(lines[0]!, /2 evenly spaced windows per length, dense attention/);
    assert.match(lines[1]!, /^tokens\s+base \+ new RoPE, no training\s+after training$/);
    assert.match(lines[2]!, /^8\s+20\.00\s+10\.00$/);
    assert.match(lines[3]!, /^16\s+30\.00\s+12\.35$/);
  });

  it('measures before and after training, writes ppl.json, and merges', async () => {
    const dir = fresh();
    const test = path.join(dir, 'test');
    fs.mkdirSync(test);
    const pplData = tokenFile(test, 1500, 96, 5);
    const c = tinyConfig(dir, { pplData, pplSeqLens: ['8', '32'], pplWindows: 3, merge: true, steps: 4 });
    const out = sink();
    const t = await Trainer.create(c, { out });
    try {
      await t.run();
    } finally {
      t.dispose();
    }
    const j = JSON.parse(fs.readFileSync(path.join(c.output, 'ppl.json'), 'utf8')) as { seqLens: number[]; results: Record<string, PplResult[]> };
    assert.deepEqual(j.seqLens, [8, 32]);
    assert.deepEqual(Object.keys(j.results).sort(), ['base', 'interpolated', 'trained']);
    for (const rs of Object.values(j.results)) {
      assert.deepEqual(rs.map((r) => r.seqLen), [8, 32]);
      for (const r of rs) { assert.equal(r.windows, 3); assert.ok(Number.isFinite(r.ppl) && r.ppl > 1); }
    }
    // The columns are what they claim: recompute two of them independently.
    await setBackend('cpu');
    const data = new TokenFile(pplData, 'uint16');
    const base = await loadLlama(c.model!);
    const merged = await loadLlama(path.join(c.output, 'merged'));
    try {
      const [b8, b32] = await perplexity(base, data, { seqLens: [8, 32], procedures: ['windowed'], maxWindows: 3, out: sink() });
      assert.ok(Math.abs(b8!.ppl - j.results.base![0]!.ppl) < 1e-9 * b8!.ppl);
      assert.ok(Math.abs(b32!.ppl - j.results.base![1]!.ppl) < 1e-9 * b32!.ppl);
      // The merged checkpoint carries the new RoPE (32 / 8 → linear factor 4) and computes the trained column.
      assert.deepEqual(merged.config.ropeScaling, { type: 'linear', factor: 4 });
      const [m8, m32] = await perplexity(merged, data, { seqLens: [8, 32], procedures: ['windowed'], maxWindows: 3, out: sink() });
      assert.ok(Math.abs(m8!.ppl - j.results.trained![0]!.ppl) < 1e-4 * m8!.ppl);
      assert.ok(Math.abs(m32!.ppl - j.results.trained![1]!.ppl) < 1e-4 * m32!.ppl);
    } finally {
      base.dispose();
      merged.dispose();
      data.close();
    }
    assert.match(out.text(), /perplexity by context length[^]*after training/);
  });

  it('evaluates with the activations the run trains with (--precision bf16), and says so in the table', async () => {
    const dir = fresh();
    const test = path.join(dir, 'test');
    fs.mkdirSync(test);
    const pplData = tokenFile(test, 1500, 96, 5);
    const c = tinyConfig(dir, { pplData, pplSeqLens: ['32'], pplWindows: 2, steps: 1, precision: 'bf16' });
    const t = await Trainer.create(c, { out: sink() });
    try {
      await t.run();
    } finally {
      t.dispose();
    }
    const j = JSON.parse(fs.readFileSync(path.join(c.output, 'ppl.json'), 'utf8')) as { table: string; results: Record<string, PplResult[]> };
    assert.match(j.table, /dense attention, bf16 activations/);
    await setBackend('cpu');
    const data = new TokenFile(pplData, 'uint16');
    const base = await loadLlama(c.model!);
    try {
      const opts = { seqLens: [32], procedures: ['windowed' as const], maxWindows: 2, out: sink() };
      const [bf16] = await perplexity(base, data, { ...opts, precision: 'bf16' });
      const [f32] = await perplexity(base, data, opts);
      assert.ok(Math.abs(bf16!.ppl - j.results.base![0]!.ppl) < 1e-9 * bf16!.ppl, `${bf16!.ppl} vs ${j.results.base![0]!.ppl}`);
      assert.ok(Math.abs(f32!.ppl - bf16!.ppl) > 1e-6 * f32!.ppl, 'bf16 activations change the perplexity a little');
    } finally {
      base.dispose();
      data.close();
    }
  });

  it('a test set too short for the longest length fails before the model is loaded', async () => {
    const dir = fresh();
    const test = path.join(dir, 'test');
    fs.mkdirSync(test);
    const c = tinyConfig(dir, { pplData: tokenFile(test, 100, 96, 5), pplSeqLens: ['64'] });
    await assert.rejects(Trainer.create(c, { out: sink() }), (e: unknown) => e instanceof LongLoraError && /holds 100 tokens: too few for one 64-token window/.test(e.message));
    await assert.rejects(Trainer.create({ ...c, pplData: path.join(dir, 'missing.bin') }, { out: sink() }), (e: unknown) => e instanceof LongLoraError && /not found/.test(e.message));
  });
});
