import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadWithAdapter, mergeAdapter } from '../../src/lora/adapted.js';
import { addLoraDelta } from '../../src/lora/delta.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { Trainer } from '../../src/train/trainer.js';
import { goldenDir } from '../helpers/fixtures.js';
import { assertClose } from '../helpers/compare.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { Rng } from '../../src/tensor/random.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';

const fresh = tempFolders('merge');

/** W + s·B·A one element at a time: the f64 dot product over the ranks in order, rounded to f32. */
function naiveDelta(W: Float32Array, B: Float32Array, A: Float32Array, out: number, inF: number, r: number, s: number): Float32Array {
  const y = new Float32Array(W.length);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      let dot = 0;
      for (let k = 0; k < r; k++) dot += B[o * r + k]! * A[k * inF + i]!;
      y[o * inF + i] = Math.fround(W[o * inF + i]! + Math.fround(s * Math.fround(dot)));
    }
  }
  return y;
}

describe('merge', () => {
  it('W + s·B·A is bit-identical to the element-by-element f64 dot product, for odd row counts and ranks not a multiple of four', () => {
    const rng = new Rng(11);
    const rand = (n: number, zeros = 0): Float32Array => Float32Array.from({ length: n }, () => (rng.uniform() < zeros ? 0 : rng.normal()));
    for (const [out, inF, r] of [[1, 3, 1], [5, 7, 6], [4, 9, 8], [7, 16, 3], [6, 33, 13]] as const) {
      const W = rand(out * inF);
      const B = rand(out * r, r > 1 ? 0.3 : 0);
      const A = rand(r * inF);
      const want = naiveDelta(W, B, A, out, inF, r, 0.75);
      const got = addLoraDelta(W.slice(), B, A, out, inF, r, 0.75);
      assert.deepEqual(got, want, `[${out}, ${inF}] rank ${r}`);
      assert.ok(got.some((v, i) => v !== W[i]), 'the update changes W');
    }
  });

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

  it('refuses to write into the adapter\'s folder, and names a model folder given as the adapter', async () => {
    const dir = fresh();
    const base = path.join(dir, 'base');
    fs.cpSync(goldenDir('tiny-llama-short'), base, { recursive: true });
    const c = tinyConfig(dir, { model: base, steps: 1 });
    const trainer = await Trainer.create(c, { out: sink() });
    await trainer.run();
    trainer.dispose();
    const before = fs.readdirSync(c.output).sort();
    await assert.rejects(mergeAdapter(base, c.output, c.output), /the output folder \S+ holds an adapter; write the merged model to a folder of its own/);
    assert.deepEqual(fs.readdirSync(c.output).sort(), before, 'nothing written into the adapter folder');
    await assert.rejects(mergeAdapter(base, base, path.join(dir, 'm')), /has no adapter_config\.json, so it is not an adapter .*; it holds a model \(config\.json\): pass it as the base model instead/);
  });

  it('one tensor at a time gives the tensors the in-memory merge gives (all-linear LoRA, trained embeddings and norms, rsLoRA), in another dtype too', async (t) => {
    const dir = fresh();
    const base = path.join(dir, 'base');
    fs.cpSync(goldenDir('tiny-llama'), base, { recursive: true });
    const c = tinyConfig(dir, { model: base, steps: 2, lr: 3e-2, loraTargets: ['all-linear'], rslora: true });
    const trainer = await Trainer.create(c, { out: sink() });
    await trainer.run();
    trainer.dispose();
    for (const dtype of ['f32', 'bf16'] as const) {
      const a = path.join(dir, `stream-${dtype}`);
      const b = path.join(dir, `memory-${dtype}`);
      assert.deepEqual(await mergeAdapter(base, c.output, a, { dtype }), { merged: 14, dtype });
      assert.deepEqual(await mergeAdapter(base, c.output, b, { dtype, inMemory: true }), { merged: 14, dtype });
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(a, 'config.json'), 'utf8')), JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8')));
      const fa = SafetensorsFile.open(path.join(a, 'model.safetensors'));
      const fb = SafetensorsFile.open(path.join(b, 'model.safetensors'));
      assert.deepEqual(fa.names().sort(), fb.names().sort());
      let worst = 0;
      for (const n of fa.names()) {
        assert.equal(fa.info(n).dtype, fb.info(n).dtype, n);
        const x = fa.read(n, 'f32').data as Float32Array;
        const y = fb.read(n, 'f32').data as Float32Array;
        let scale = 0;
        for (const v of y) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / scale);
      }
      fa.close();
      fb.close();
      t.diagnostic(`${dtype}: streamed vs in-memory merge, worst difference ${worst.toExponential(2)} of a tensor's largest value`);
      assert.ok(worst <= (dtype === 'f32' ? 1e-6 : 2 ** -8), `${worst}`);
    }
  });
});

