/**
 * Perplexity: both procedures on the tiny golden model against a direct computation from
 * the full logits (log-softmax on the host), the window plans, and the errors.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { perplexity, slidingPlan, subsample, windowedPlan, describeProcedure } from '../../src/eval/perplexity.js';
import { TokenFile, writeTokenFile } from '../../src/data/tokens.js';
import { Rng } from '../../src/tensor/random.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { sink } from '../helpers/train.js';
import { tempFolders } from '../helpers/tmp.js';
import { IGNORE_INDEX } from '../../src/nn/loss.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { tidy } from '../../src/tensor/scope.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';

const fresh = tempFolders('ppl');

/** −log p(ids[t] | ids[<t]) for t = 1..N−1 of one window, from the model's full logits. */
async function directNll(model: Awaited<ReturnType<typeof tinyModel>>['model'], ids: Int32Array): Promise<number[]> {
  const N = ids.length;
  const V = model.config.vocabSize;
  const logits = await logitsOf(model, ids, 1, N);
  const out: number[] = [];
  for (let t = 1; t < N; t++) {
    const row = logits.subarray((t - 1) * V, t * V);
    const m = Math.max(...row);
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    out.push(m + Math.log(s) - row[ids[t]!]!);
  }
  return out;
}

describe('perplexity', () => {
  it('window plans: the official starts, and every token once', () => {
    assert.deepEqual(windowedPlan(1000, 100).map((w) => w.start), [0, 256, 512]); // range(0, 900, 256) = 0..768, last dropped
    assert.deepEqual(windowedPlan(356, 100), []);
    const s = slidingPlan(23, 8, 3);
    const scored = s.flatMap((w) => Array.from({ length: w.length - Math.max(1, w.scoreFrom) }, (_, i) => w.start + Math.max(1, w.scoreFrom) + i));
    assert.deepEqual(scored, Array.from({ length: 22 }, (_, i) => i + 1), 'each token after the first exactly once');
    assert.ok(s.every((w) => w.length <= 8));
    assert.deepEqual(s.slice(1).map((w) => w.scoreFrom), s.slice(1).map((w) => w.length - Math.min(3, w.length - w.scoreFrom)));
    assert.deepEqual(subsample(windowedPlan(5000, 100), 3).map((w) => w.start), [0, 1536, 3072]);
  });

  it('both procedures on the tiny model equal the direct computation', async () => {
    const { model } = await tinyModel();
    const rng = new Rng(11);
    const L = 90;
    const tokens = Array.from({ length: L }, () => rng.int(96));
    const file = path.join(fresh(), 'test.bin');
    writeTokenFile(file, tokens, 'uint16');
    const data = TokenFile.open(file, 'auto', 96);
    const all = Int32Array.from(tokens);
    const out = sink();
    const res = await perplexity(model, data, { seqLens: [12, 20], procedures: ['windowed', 'sliding'], windowStep: 10, stride: 5, batchSize: 3, out });

    for (const N of [12, 20]) {
      // Official: starts range(0, L − N, 10) without the last; each window's mean over its N − 1 predictions; mean over windows.
      const starts: number[] = [];
      for (let i = 0; i < L - N; i += 10) starts.push(i);
      starts.pop();
      const perWindow: number[] = [];
      for (const s0 of starts) {
        const nll = await directNll(model, all.subarray(s0, s0 + N));
        perWindow.push(nll.reduce((a, b) => a + b, 0) / nll.length);
      }
      const wLoss = perWindow.reduce((a, b) => a + b, 0) / perWindow.length;
      const w = res.find((r) => r.procedure === 'windowed' && r.seqLen === N)!;
      assert.equal(w.windows, starts.length);
      assert.equal(w.tokensScored, starts.length * (N - 1));
      assert.ok(Math.abs(w.loss - wLoss) < 1e-5, `windowed N=${N}: ${w.loss} vs ${wLoss}`);
      assert.ok(Math.abs(w.ppl - Math.exp(wLoss)) < 1e-4 * w.ppl);

      // Sliding: token t scored once with context max(0, end − N).. where end advances by the stride.
      let nllSum = 0;
      let scored = 1;
      let first = true;
      while (scored < L) {
        const end = first ? Math.min(N, L) : Math.min(scored + 5, L);
        const start = Math.max(0, end - N);
        const nll = await directNll(model, all.subarray(start, end));
        for (let t = scored; t < end; t++) nllSum += nll[t - start - 1]!;
        scored = end;
        first = false;
      }
      const sl = res.find((r) => r.procedure === 'sliding' && r.seqLen === N)!;
      assert.equal(sl.tokensScored, L - 1);
      assert.ok(Math.abs(sl.loss - nllSum / (L - 1)) < 1e-5, `sliding N=${N}: ${sl.loss} vs ${nllSum / (L - 1)}`);
      assert.match(describeProcedure(sl), /each token scored once, stride 5/);
    }
    assert.match(describeProcedure(res[0]!), /official windowed: windows every 10 tokens/);
    assert.match(out.text(), /tokens \d+\/\d+/);
    data.close();
    model.dispose();
  });

  it('with 16-bit activations: each window is the model\'s own 16-bit loss (not the f32 one)', async () => {
    const { model } = await tinyModel();
    const rng = new Rng(12);
    const tokens = Array.from({ length: 60 }, () => rng.int(96));
    const file = path.join(fresh(), 'test.bin');
    writeTokenFile(file, tokens, 'uint16');
    const data = TokenFile.open(file, 'auto', 96);
    try {
      const N = 16;
      const settings = { seqLens: [N], procedures: ['windowed' as const], windowStep: 10, out: sink() };
      const f32 = (await perplexity(model, data, settings))[0]!;
      for (const precision of ['bf16', 'f16'] as const) {
        const r = (await perplexity(model, data, { ...settings, precision }))[0]!;
        // the same windows (starts 0, 10, 20, 30) through model.loss with that precision
        let sum = 0;
        for (const s0 of [0, 10, 20, 30]) {
          const ids = Int32Array.from(tokens.slice(s0, s0 + N));
          const labels = Int32Array.from(ids, (t, i) => (i === 0 ? IGNORE_INDEX : t));
          const t = noGrad(() => tidy(() => model.loss(idsTensor(ids, [1, N]), labels, { precision }).loss));
          sum += await t.item();
          t.dispose();
        }
        assert.equal(r.windows, 4);
        assert.ok(Math.abs(r.loss - sum / 4) < 1e-6, `${precision}: ${r.loss} vs ${sum / 4}`);
        assert.notEqual(r.loss, f32.loss, `${precision}: the activations were rounded`);
      }
    } finally {
      data.close();
      model.dispose();
    }
  });

  it('a corpus shorter than one window is a clear error', async () => {
    const { model } = await tinyModel();
    const file = path.join(fresh(), 'short.bin');
    writeTokenFile(file, [1, 2, 3, 4, 5], 'uint16');
    const data = TokenFile.open(file, 'auto', 96);
    await assert.rejects(perplexity(model, data, { seqLens: [4], procedures: ['windowed'], out: sink() }), /holds 5 tokens: too few for one 4-token window .*more than 260 tokens/);
    await assert.rejects(perplexity(model, data, { seqLens: [4], procedures: ['sliding'], stride: 4, out: sink() }), /stride must be in \[1, 3\]/);
    const r = await perplexity(model, data, { seqLens: [4], procedures: ['sliding'], out: sink() });
    assert.equal(r[0]!.tokensScored, 4);
    data.close();
    model.dispose();
  });
});
