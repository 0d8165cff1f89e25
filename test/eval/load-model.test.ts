/**
 * Loading a model for evaluation and generation (the CLI's loader): an adapter trained on a
 * grown vocabulary (the official [PAD] recipe) loads on the unchanged base, grown the same way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadModel } from '../../src/cli/commands/load-model.js';
import { saveAdapter } from '../../src/io/peft.js';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import { Rng } from '../../src/tensor/random.js';
import { fromHost } from '../../src/tensor/tensor.js';
import { resizeEmbeddings } from '../../src/tokenizer/pad.js';
import { goldenDir } from '../helpers/fixtures.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { TINY_96 } from '../tokenizer/fixtures.js';

const fresh = tempFolders('load-model');

describe('loading base + adapter', () => {
  it('an adapter trained on a grown vocabulary loads on the unchanged base (grown the same way first)', async () => {
    const { model, ids, B, N } = await tinyModel();
    await resizeEmbeddings(model, 97);
    applyLora(model, ['q_proj', 'v_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(1), { training: false, rng: new Rng(2) });
    setTrainable(model, 'longlora', ['embed', 'norm']);
    // "train": move the LoRA B matrices and the embeddings away from their start
    const trained = model.namedParameters().filter(([, t]) => t.requiresGrad);
    const extras = trained.map(([n]) => n).filter((n) => !n.includes('lora_'));
    for (const [name, t] of trained) {
      const v = Float32Array.from(await t.floats(), (x, i) => x + 0.05 * Math.sin(i + name.length));
      model.setAt(name, fromHost(v, t.shape, 'f32', t.backend).keep());
      t.dispose();
    }
    const want = await logitsOf(model, ids, B, N);
    const dir = fresh();
    await saveAdapter(model, dir, { baseModel: goldenDir('tiny-llama'), extras });
    model.dispose();
    const m = await loadModel({ model: goldenDir('tiny-llama'), adapter: dir, tokenizer: TINY_96, backend: 'cpu', dtype: 'f32' });
    assert.equal(m.model.config.vocabSize, 97);
    assert.match(m.notes.join('\n'), /the adapter has 97 embedding rows; the base's 96 were grown to match/);
    const got = await logitsOf(m.model, ids, B, N);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    assert.ok(worst < 1e-5, `max |diff| ${worst}`);
    m.model.dispose();
  });
});
