/**
 * The per-layer path: embedding then layers[0] run by hand must give the golden residual
 * stream after layer 0 (`hidden.layer0.out`, float64 from PyTorch), and continuing by hand
 * through the remaining layers, the final norm and the head must give forward()'s logits.
 * This is what a trainer that checkpoints activations per layer relies on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAUSAL } from '../../src/attention/attention.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { mlpBlockRows, type LayerContext } from '../../src/models/llama/model.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { Rng } from '../../src/tensor/random.js';
import { fromHost, type Tensor } from '../../src/tensor/tensor.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { tidy } from '../../src/tensor/scope.js';
import { assertClose } from '../helpers/compare.js';
import { Golden, goldenDir } from '../helpers/fixtures.js';

const TOL_F64 = 1e-10;

for (const variant of ['tiny-llama', 'tiny-llama-tied', 'tiny-llama-bf16', 'tiny-qwen2', 'tiny-qwen3']) {
  describe(`per-layer path: ${variant} in f64`, () => {
    it('embed + layers[0] gives hidden.layer0.out; the rest by hand gives forward()', async (t) => {
      const log = (s: string): void => t.diagnostic(s);
      const before = cpuBackend().memory().buffers;
      const g = new Golden(variant);
      const model = await loadLlama(goldenDir(variant), { dtype: 'f64' });
      const [B, N] = g.shape('input_ids') as [number, number];
      const C = model.config.hiddenSize;
      assert.deepEqual(g.shape('hidden.layer0.out'), [B, N, C]);
      const { layer0, byHand, logits } = tidy(() => {
        const ids = idsTensor(g.i32('input_ids'), [B, N]);
        const ctx: LayerContext = { rope: model.rotary.tables(N, 'f64', ids.backend), mask: CAUSAL };
        let x = model.model.embed_tokens.forward(ids); // (B, N, C)
        assert.equal(x.dtype, 'f64');
        const [first, ...rest] = model.model.layers;
        assert.ok(first, 'the model has a layer 0');
        x = first.forward(x, ctx); // (B, N, C)
        const layer0 = x;
        for (const layer of rest) x = layer.forward(x, ctx);
        return { layer0, byHand: model.head(model.model.norm.forward(x)), logits: model.forward(ids) };
      });
      assert.deepEqual(layer0.shape, [B, N, C]);
      assertClose(await layer0.floats(), g.f64('hidden.layer0.out'), TOL_F64, 'hidden.layer0.out', log);
      assertClose(await byHand.floats(), g.f64('logits'), TOL_F64, 'logits by hand', log);
      assert.deepEqual(await byHand.floats(), await logits.floats(), 'by hand is bit-identical to forward()');
      for (const x of [layer0, byHand, logits]) x.dispose();
      model.dispose();
      g.close();
      assert.equal(cpuBackend().memory().buffers, before, 'every buffer freed');
    });
  });
}

describe('the MLP without gradients', () => {
  it('runs many rows a block at a time, bit-identical to all at once, with less memory held', async () => {
    const model = await loadLlama(goldenDir('tiny-llama'));
    const mlp = model.model.layers[0]!.mlp;
    const C = model.config.hiddenSize;
    const rows = 2 * mlpBlockRows(model.config.intermediateSize) + 37; // two whole blocks and a part
    const rng = new Rng(3);
    const x = fromHost(Float32Array.from({ length: rows * C }, () => rng.normal()), [1, rows, C], 'f32');
    const be = cpuBackend();
    const peakOf = (f: () => Tensor): { out: Tensor; peak: number } => {
      const base = be.memory().bytes;
      be.resetPeak();
      const out = f();
      return { out, peak: be.memory().peakBytes - base };
    };
    const whole = peakOf(() => tidy(() => mlp.forward(x))); // gradients on: the whole at once
    const blocks = peakOf(() => noGrad(() => tidy(() => mlp.forward(x))));
    assert.deepEqual(blocks.out.shape, [1, rows, C]);
    assert.deepEqual(await blocks.out.floats(), await whole.out.floats());
    // (this model's MLP is only twice its width: the blocks save more where it is wider, as in Llama)
    assert.ok(blocks.peak < 0.75 * whole.peak, `peak ${blocks.peak} bytes in blocks, ${whole.peak} at once`);
    for (const t of [x, whole.out, blocks.out]) t.dispose();
    model.dispose();
  });
});

describe('model input', () => {
  it('forward and loss take i32 ids [B, N]; anything else is refused naming the shape they need', async () => {
    const model = await loadLlama(goldenDir('tiny-llama'));
    const tokens = Int32Array.from([1, 2, 3, 4]);
    const want = /model input must be i32 token ids \[B, N\] \(ids\(values, \[B, N\]\)\), got i32 \[4\]/;
    assert.throws(() => tidy(() => model.loss(idsTensor(tokens, [4]), tokens)), want);
    assert.throws(() => tidy(() => model.forward(idsTensor(tokens, [4]))), want);
    model.dispose();
  });
});
