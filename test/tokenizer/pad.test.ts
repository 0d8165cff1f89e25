/** Adding a PAD token: mean-initialised new rows in the embeddings and the head (untied and tied). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addPadToken, resizeEmbeddings } from '../../src/tokenizer/pad.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { TINY_96 } from './fixtures.js';

function rowMean(w: ArrayLike<number>, V: number, C: number): Float64Array {
  const m = new Float64Array(C);
  for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) m[c]! += w[v * C + c]! / V;
  return m;
}

describe('resizing the vocabulary', () => {
  for (const variant of ['tiny-llama', 'tiny-llama-tied']) {
    it(`${variant}: 96 → 97 rows at the mean; old logits unchanged`, async () => {
      const { model, ids, B, N } = await tinyModel(variant);
      const C = model.config.hiddenSize;
      const before = await logitsOf(model, ids, B, N);
      const oldEmb = await model.model.embed_tokens.weight.floats();
      const oldHead = model.lm_head ? await model.lm_head.weight.floats() : null;
      const tok = Tokenizer.load(TINY_96);
      const r = await addPadToken(model, tok);
      assert.equal(r.padId, 96);
      assert.equal(r.added, 1);
      assert.equal(r.tokenizer.vocabSize, 97);
      assert.equal(model.config.vocabSize, 97);
      r.tokenizer.checkModel(model.config.vocabSize, variant);
      const emb = await model.model.embed_tokens.weight.floats();
      assert.deepEqual(model.model.embed_tokens.weight.shape, [97, C]);
      assert.deepEqual(Array.from(emb.subarray(0, 96 * C)), Array.from(oldEmb));
      const m = rowMean(oldEmb, 96, C);
      for (let c = 0; c < C; c++) assert.ok(Math.abs(emb[96 * C + c]! - m[c]!) < 1e-6);
      if (oldHead) {
        const head = await model.lm_head!.weight.floats();
        const mh = rowMean(oldHead, 96, C);
        for (let c = 0; c < C; c++) assert.ok(Math.abs(head[96 * C + c]! - mh[c]!) < 1e-6);
      }
      const after = await logitsOf(model, ids, B, N);
      for (let t = 0; t < B * N; t++) {
        for (let v = 0; v < 96; v++) assert.ok(Math.abs(after[t * 97 + v]! - before[t * 96 + v]!) < 1e-5);
      }
      const again = await addPadToken(model, r.tokenizer);
      assert.equal(again.added, 0, 'a tokenizer with a pad token is left alone');
      model.dispose();
    });
  }

  it('the vocabulary only grows', async () => {
    const { model } = await tinyModel();
    await assert.rejects(resizeEmbeddings(model, 90), /can only grow \(96 → 90/);
    assert.equal(await resizeEmbeddings(model, 96), 0);
    model.dispose();
  });
});
