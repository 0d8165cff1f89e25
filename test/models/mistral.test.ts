/**
 * Mistral checkpoints: the Llama computation within the sliding window (the same weights
 * give the same logits under either model_type), a clear refusal beyond it (forward,
 * generation with a cache, training) naming the fix, no limit with sliding_window null,
 * and a saved model keeps its type and window.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadLlama, saveLlama } from '../../src/models/llama/load.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { Trainer } from '../../src/train/trainer.js';
import { goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { throwsLL } from '../helpers/errors.js';

const fresh = tempFolders('mistral');

/** The tiny golden Llama's weights under a Mistral config.json. */
function mistralCopy(slidingWindow: number | null): string {
  const dir = path.join(fresh(), 'mistral');
  fs.cpSync(goldenDir('tiny-llama'), dir, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: slidingWindow }));
  return dir;
}

const WINDOW_FIX = 'set "sliding_window": null';

describe('Mistral', () => {
  it('within the window: the same logits as the Llama config of the same weights; beyond it: refused with the fix', async () => {
    const llama = await loadLlama(goldenDir('tiny-llama'));
    const mistral = await loadLlama(mistralCopy(16));
    const ids = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7 + 3) % 96);
    assert.deepEqual(await logitsOf(mistral, ids, 2, 16), await logitsOf(llama, ids, 2, 16));
    const long = Int32Array.from({ length: 17 }, (_, i) => i % 96);
    throwsLL(() => noGrad(() => mistral.forward(idsTensor(long, [1, 17])).dispose()), '17 tokens exceed the model\'s sliding_window (16)', WINDOW_FIX);
    const cache = mistral.createCache(1, 32);
    noGrad(() => mistral.forward(idsTensor(long.subarray(0, 16), [1, 16]), { cache }).dispose());
    throwsLL(() => noGrad(() => mistral.forward(idsTensor(long.subarray(16), [1, 1]), { cache }).dispose()), '17 tokens exceed');
    cache.dispose();
    llama.dispose();
    mistral.dispose();
  });

  it('with sliding_window null any length runs; saving keeps model_type and window', async () => {
    const model = await loadLlama(mistralCopy(null));
    const ids = Int32Array.from({ length: 40 }, (_, i) => i % 96);
    assert.equal((await logitsOf(model, ids, 1, 40)).length, 40 * 96);
    const out = path.join(fresh(), 'saved');
    await saveLlama(model, out);
    model.dispose();
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([cfg.model_type, cfg.architectures, cfg.sliding_window], ['mistral', ['MistralForCausalLM'], null]);
  });

  it('training past the window is refused before anything loads', async () => {
    const dir = fresh();
    await assert.rejects(Trainer.create(tinyConfig(dir, { model: mistralCopy(16), seqLen: 32 }), { out: sink() }), (e: Error) => {
      assert.match(e.message, /--seq-len 32: 32 tokens exceed the model's sliding_window \(16\)/);
      assert.ok(e.message.includes(WINDOW_FIX));
      return true;
    });
  });
});
