import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadWithAdapter, mergeAdapter } from '../../src/lora/adapted.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { Trainer } from '../../src/train/trainer.js';
import { goldenDir } from '../helpers/fixtures.js';
import { assertClose } from '../helpers/compare.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { Rng } from '../../src/tensor/random.js';

const fresh = tempFolders('merge');

describe('merge', () => {
  it('a trained adapter merges into a checkpoint with the same logits, rope_scaling and tokenizer files', async (t) => {
    const dir = fresh();
    const base = path.join(dir, 'base');
    fs.cpSync(goldenDir('tiny-llama-short'), base, { recursive: true });
    fs.writeFileSync(path.join(base, 'tokenizer.json'), '{"model": {}}');
    const c = tinyConfig(dir, { model: base, steps: 4, lr: 3e-2 });
    const trainer = await Trainer.create(c, { out: sink() });
    await trainer.run();
    trainer.dispose();
    const out = path.join(dir, 'merged');
    const r = await mergeAdapter(base, c.output, out);
    assert.equal(r.merged, 8);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.deepEqual([cfg.rope_scaling.type, cfg.rope_scaling.factor], ['linear', 4]);
    assert.ok(fs.existsSync(path.join(out, 'tokenizer.json')), 'tokenizer files are copied');

    const rng = new Rng(3);
    const [B, N] = [2, 32];
    const ids = Int32Array.from({ length: B * N }, () => rng.int(96));
    const adapted = await loadWithAdapter(base, c.output);
    const want = await logitsOf(adapted, ids, B, N);
    adapted.dispose();
    const merged = await loadLlama(out);
    assertClose(await logitsOf(merged, ids, B, N), want, 1e-5, 'merged checkpoint vs base + adapter', (s) => t.diagnostic(s));
    merged.dispose();
    const plain = await loadLlama(base);
    const before = await logitsOf(plain, ids, B, N);
    plain.dispose();
    assert.ok(before.some((v, i) => Math.abs(v - want[i]!) > 1e-3), 'training changed the model');
  });
});
