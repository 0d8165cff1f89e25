/**
 * The importance matrix (src/models/llama/importance.ts) and what it does to quantising:
 * every linear layer's input columns' mean square, as an independent computation of the
 * first layer's input gives it; layers that read the same input get the same; the weighted
 * fits lower the error that matters (the output's) at the cost of the weights' own; and
 * an export with it stays a valid file that loads back.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { TokenSource } from '../../src/data/tokens.js';
import { dequantize, quantize, type QuantType } from '../../src/io/ggml-quants.js';
import { QuantPool } from '../../src/io/quant-pool.js';
import { exportGguf } from '../../src/models/llama/gguf.js';
import { loadLlamaGguf } from '../../src/models/llama/gguf-load.js';
import { importanceMatrix } from '../../src/models/llama/importance.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { ROOT } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('importance');
const TINY = path.join(ROOT, 'models', 'tiny-longlora');

/** `period` token ids repeated to `n`: every window that starts at a multiple of the period reads the same ids. */
function periodic(period: Int32Array, n: number): TokenSource {
  return { path: 'periodic', numTokens: n, read: (start, count) => Int32Array.from({ length: count }, (_, i) => period[(start + i) % period.length]!) };
}

describe('importance matrix', () => {
  it('each linear layer\'s input columns\' mean square: the first layer\'s as computed by hand; q, k and v (and gate and up) alike', async () => {
    const model = await loadLlama(TINY, { dtype: 'f32' });
    const rng = new Rng(5);
    const period = Int32Array.from({ length: 256 }, () => 3 + rng.int(2000));
    const imp = await importanceMatrix(model, periodic(period, 256 * 8), { seqLen: 256, tokens: 1024, out: { write: () => true } as never });
    const C = model.config.hiddenSize;
    assert.equal(imp.tokens, 1024);
    assert.equal(imp.weights.size, 4 * 7 + 1, 'every projection and the output layer');
    const x = noGrad(() => tidy(() => model.model.layers[0]!.input_layernorm.forward(model.model.embed_tokens.forward(idsTensor(period, [1, 256])))));
    const h = await x.floats();
    x.dispose();
    const want = Float64Array.from({ length: C }, (_, c) => { let s = 0; for (let t = 0; t < 256; t++) s += h[t * C + c]! ** 2; return s / 256; });
    const got = imp.weights.get('model.layers.0.self_attn.q_proj.weight')!;
    for (let c = 0; c < C; c++) assert.ok(Math.abs(got[c]! - want[c]!) <= 1e-5 * want[c]! + 1e-9, `column ${c}: ${got[c]} vs ${want[c]}`);
    for (let l = 0; l < 4; l++) {
      const w = (p: string): number[] => [...imp.weights.get(`model.layers.${l}.${p}.weight`)!];
      assert.deepEqual(w('self_attn.k_proj'), w('self_attn.q_proj'));
      assert.deepEqual(w('self_attn.v_proj'), w('self_attn.q_proj'));
      assert.deepEqual(w('mlp.up_proj'), w('mlp.gate_proj'));
      assert.equal(w('mlp.down_proj').length, model.config.intermediateSize);
      assert.ok(w('mlp.down_proj').every((v) => v >= 0) && w('mlp.down_proj').some((v) => v > 0));
    }
    assert.ok(!model.model.layers[0]!.self_attn.q_proj.hasOwnProperty('forward'), 'the layers are as they were');
    await assert.rejects(importanceMatrix(model, periodic(period, 700), { seqLen: 512 }),
      /importance matrix: periodic holds 700 tokens, too few for one window of 512 \(more than 768 are needed\); give more calibration text or a shorter sequence length/);
    model.dispose();
  });

  it('weighted fits: the importance-weighted error falls; IQ4 takes no importance; several threads, the same bytes', () => {
    const rng = new Rng(8);
    const cols = 512;
    const x = Float32Array.from({ length: cols * 64 }, () => rng.normal() * 0.02);
    // a few columns matter far more than the rest, as in a real layer's activations
    const weights = Float32Array.from({ length: cols }, () => (rng.uniform() < 0.05 ? 100 : 1) * rng.uniform());
    const err = (y: Float32Array, w: Float32Array | null): number => {
      let e = 0;
      for (let i = 0; i < x.length; i++) e += (w ? w[i % cols]! : 1) * (x[i]! - y[i]!) ** 2;
      return e;
    };
    const pool = new QuantPool(3, 1000);
    try {
      for (const type of ['Q4_0', 'Q4_1', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as QuantType[]) {
        const plain = dequantize(type, quantize(type, x), x.length);
        const bytes = quantize(type, x, { weights });
        const weighted = dequantize(type, bytes, x.length);
        assert.ok(err(weighted, weights) < err(plain, weights), `${type}: weighted error ${err(weighted, weights)} vs ${err(plain, weights)}`);
        assert.ok(err(weighted, null) > err(plain, null) * 0.99, `${type}: the unweighted error, which the plain fit minimises`);
        assert.deepEqual(pool.quantize(type, x, { weights }), bytes, `${type}: threads`);
        assert.deepEqual(quantize(type, x, { weights: new Float32Array(cols) }), quantize(type, x), `${type}: all-zero importance is none`);
      }
      for (const type of ['IQ4_NL', 'IQ4_XS'] as QuantType[]) assert.deepEqual(quantize(type, x, { weights }), quantize(type, x), type);
    } finally {
      pool.dispose();
    }
    assert.throws(() => quantize('Q4_K', x, { weights: new Float32Array(cols).fill(-1) }), /importance weights must be finite and ≥ 0/);
  });

  it('an export with it: other bytes, a valid file that loads back, and an importance of the wrong width refused', async () => {
    const model = await loadLlama(TINY, { dtype: 'f32' });
    const rng = new Rng(6);
    const imp = await importanceMatrix(model, periodic(Int32Array.from({ length: 256 }, () => 3 + rng.int(2000)), 256 * 8), { seqLen: 256, tokens: 512, out: { write: () => true } as never });
    model.dispose();
    const [a, b] = [path.join(fresh(), 'a.gguf'), path.join(fresh(), 'b.gguf')];
    exportGguf(TINY, a, { dtype: 'q4_0', modelfile: false });
    exportGguf(TINY, b, { dtype: 'q4_0', modelfile: false, importance: imp.weights });
    assert.notDeepEqual(fs.readFileSync(a), fs.readFileSync(b));
    const m = await loadLlamaGguf(b);
    const logits = await logitsOf(m, Int32Array.from([1, 80, 412, 7]), 1, 4);
    assert.ok(logits.every(Number.isFinite));
    m.dispose();
    const wrong = new Map([['model.layers.0.self_attn.q_proj.weight', new Float32Array(7)]]);
    assert.throws(() => exportGguf(TINY, path.join(fresh(), 'c.gguf'), { dtype: 'q4_0', modelfile: false, importance: wrong }),
      /the importance of model\.layers\.0\.self_attn\.q_proj\.weight has 7 columns, the tensor 128; compute it for this model/);
  });
});
