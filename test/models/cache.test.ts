/** Generation with a KV cache gives what recomputing the whole sequence gives. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { noGrad } from '../../src/tensor/autograd.js';
import * as op from '../../src/tensor/ops/index.js';
import { tidy } from '../../src/tensor/scope.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { assertClose } from '../helpers/compare.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { throwsLL } from '../helpers/errors.js';

function argmaxLast(logits: ArrayLike<number>, N: number, V: number, b = 0): number {
  let best = 0;
  const o = (b * N + N - 1) * V;
  for (let v = 1; v < V; v++) if (logits[o + v]! > logits[o + best]!) best = v;
  return best;
}

describe('KV cache', () => {
  for (const variant of ['tiny-llama', 'tiny-llama-tied', 'tiny-qwen2', 'tiny-qwen3']) {
    it(`greedy decoding with the cache equals full recomputation (${variant}, B=2, past max_position_embeddings)`, async (t) => {
      const before = cpuBackend().memory().buffers;
      const { model } = await tinyModel(variant);
      const V = model.config.vocabSize;
      const B = 2;
      const prompt = [[5, 17, 3, 88, 41], [60, 2, 9, 9, 70]];
      const seqs = prompt.map((p) => [...p]);
      const cache = model.createCache(B, 24);
      let worst = 0;
      let next = prompt.map((p) => p);
      for (let step = 0; step < 14; step++) {
        const n = next[0]!.length;
        const inc = noGrad(() => tidy(() => model.forward(op.ids(next.flat(), [B, n]), { cache })));
        const incLogits = await inc.floats();
        inc.dispose();
        const L = seqs[0]!.length;
        const full = await logitsOf(model, Int32Array.from(seqs.flat()), B, L);
        for (let b = 0; b < B; b++) {
          const a = incLogits.subarray((b * n + n - 1) * V, (b * n + n) * V);
          const e = full.subarray((b * L + L - 1) * V, (b * L + L) * V);
          worst = Math.max(worst, assertClose(a, e, 1e-5, `step ${step} row ${b}`, () => {}).rel);
        }
        next = seqs.map((_, b) => [argmaxLast(incLogits, n, V, b)]);
        next.forEach((tok, b) => seqs[b]!.push(tok[0]!));
        assert.equal(cache.length, seqs[0]!.length - 1);
      }
      t.diagnostic(`19 positions (max_position_embeddings ${model.config.maxPositionEmbeddings}), worst rel ${worst.toExponential(2)}`);
      throwsLL(() => tidy(() => noGrad(() => model.forward(op.ids(new Array(14).fill(1), [B, 7]), { cache }))), 'KV cache is full', 'capacity 24');
      throwsLL(() => tidy(() => model.forward(op.ids([1, 1], [B, 1]), { cache })), 'run generation under noGrad');
      cache.dispose();
      model.dispose();
      assert.equal(cpuBackend().memory().buffers, before, 'no buffers left behind (decoding does not grow the RoPE cache)');
    });
  }
});
