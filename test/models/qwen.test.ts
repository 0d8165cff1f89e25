/**
 * Qwen 2 and Qwen 3 checkpoints (golden parity with PyTorch is in golden.test.ts). Qwen 2, q, k, v with biases:
 * LoRA wraps a biased projection and merging keeps the bias; a merged or saved model
 * writes Qwen2ForCausalLM with its biases; NF4 keeps the biases in float beside the 4-bit
 * weights with the same fingerprint either way; LongLoRA trains end to end and the adapter
 * loads back; Llama's attention_bias puts biases on q, k, v and o. Qwen 3, an RMSNorm over
 * each q and k head: LongLoRA trains those norms with the others (they are norms) and
 * saves them in the adapter; the config round-trips.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadWithAdapter } from '../../src/lora/adapted.js';
import { applyLora, mergeLora } from '../../src/lora/inject.js';
import type { LoraRuntime } from '../../src/lora/lora.js';
import { llamaConfigToHF, llamaTensorShapes, parseLlamaConfig } from '../../src/models/llama/config.js';
import { loadLlama, saveLlama } from '../../src/models/llama/load.js';
import { Linear, PackedLinear } from '../../src/nn/linear.js';
import { quantizeModel } from '../../src/quant/quantize-model.js';
import { fromHost } from '../../src/tensor/tensor.js';
import { Rng } from '../../src/tensor/random.js';
import { Trainer } from '../../src/train/trainer.js';
import { assertClose } from '../helpers/compare.js';
import { goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';

const fresh = tempFolders('qwen2');
const QWEN = goldenDir('tiny-qwen2');
const runtime = (): LoraRuntime => ({ training: false, rng: new Rng(1) });
const ids = Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 13 + 5) % 96);

describe('Qwen 2', () => {
  it('LoRA over biased projections: merging keeps the bias and the logits; the saved model is Qwen2ForCausalLM with its biases', async (t) => {
    const model = await loadLlama(QWEN);
    const { q_proj, o_proj } = model.model.layers[0]!.self_attn;
    assert.ok(q_proj instanceof Linear && q_proj.bias !== null, 'q_proj has a bias');
    assert.ok(o_proj instanceof Linear && o_proj.bias === null, 'o_proj has none');
    const plain = await logitsOf(model, ids, 2, 10);
    applyLora(model, 'all-linear', { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(0), runtime());
    assert.deepEqual(await logitsOf(model, ids, 2, 10), plain, 'B = 0: LoRA changes nothing, the bias still applies');
    const rng = new Rng(7);
    for (const [n, p] of model.namedParameters()) {
      if (!n.endsWith('lora_B.weight')) continue;
      model.setAt(n, fromHost(Float32Array.from({ length: p.size }, () => rng.normal() * 0.05), p.shape, 'f32', p.backend).keep());
      p.dispose();
    }
    const adapted = await logitsOf(model, ids, 2, 10);
    assert.equal(mergeLora(model), 14);
    assertClose(await logitsOf(model, ids, 2, 10), adapted, 1e-5, 'merged vs adapted', (s) => t.diagnostic(s));
    const names = model.namedParameters().map(([n]) => n);
    assert.ok(names.includes('model.layers.1.self_attn.k_proj.bias'));
    const out = path.join(fresh(), 'merged');
    await saveLlama(model, out);
    model.dispose();
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([cfg.model_type, cfg.architectures, cfg.use_sliding_window], ['qwen2', ['Qwen2ForCausalLM'], false]);
    const back = await loadLlama(out);
    assertClose(await logitsOf(back, ids, 2, 10), adapted, 1e-5, 'saved and reloaded', (s) => t.diagnostic(s));
    back.dispose();
  });

  it('NF4: the biases stay float beside the 4-bit weights, with one fingerprint whichever way it is quantised', async () => {
    const loaded = await loadLlama(QWEN, { quantize: 'nf4' });
    const q = loaded.model.layers[1]!.self_attn.v_proj;
    assert.ok(q instanceof PackedLinear && q.bias !== null && q.bias.dtype === 'f32');
    const plain = await loadLlama(QWEN);
    const info = await quantizeModel(plain);
    assert.equal(info.fingerprint, loaded.quantization!.fingerprint);
    assert.deepEqual(Array.from(await logitsOf(plain, ids, 2, 10)), Array.from(await logitsOf(loaded, ids, 2, 10)));
    plain.dispose();
    loaded.dispose();
  });

  it('LongLoRA trains it; the adapter loads back on the base and its biases', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { model: QWEN, steps: 2 });
    const trainer = await Trainer.create(c, { out: sink() });
    await trainer.run();
    const trained = await logitsOf(trainer.model, ids, 2, 10);
    trainer.dispose();
    const again = await loadWithAdapter(QWEN, c.output);
    assertClose(await logitsOf(again, ids, 2, 10), trained, 1e-6, 'adapter on the base', () => {});
    again.dispose();
  });

  it('Llama attention_bias: biases on q, k, v and o', () => {
    const c = parseLlamaConfig({ model_type: 'llama', vocab_size: 8, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, attention_bias: true }, 'config.json');
    const biases = [...llamaTensorShapes(c).keys()].filter((n) => n.endsWith('.bias'));
    assert.deepEqual(biases.map((n) => n.split('.')[4]), ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
  });
});

describe('Qwen 3', () => {
  it('the config: head norms of head_dim, no biases unless attention_bias, Qwen3ForCausalLM back', () => {
    const j = JSON.parse(fs.readFileSync(path.join(goldenDir('tiny-qwen3'), 'config.json'), 'utf8')) as Record<string, unknown>;
    const c = parseLlamaConfig(j, 'config.json');
    assert.deepEqual([c.qkNorm, c.qkvBias, c.oBias, c.headDim], [true, false, false, 16]);
    const shapes = llamaTensorShapes(c);
    assert.deepEqual([shapes.get('model.layers.1.self_attn.q_norm.weight'), shapes.get('model.layers.1.self_attn.k_norm.weight')], [[16], [16]]);
    assert.deepEqual(parseLlamaConfig(llamaConfigToHF(c), 'config.json'), c);
    const biased = parseLlamaConfig({ ...j, attention_bias: true }, 'config.json');
    assert.deepEqual([biased.qkvBias, biased.oBias], [true, true]);
  });

  it('LongLoRA trains the head norms with the other norms, saves them in the adapter, and it loads back', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { model: goldenDir('tiny-qwen3'), steps: 2 });
    const trainer = await Trainer.create(c, { out: sink() });
    await trainer.run();
    const trained = await logitsOf(trainer.model, ids, 2, 10);
    const trainable = trainer.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
    trainer.dispose();
    assert.ok(trainable.includes('model.layers.0.self_attn.q_norm.weight') && trainable.includes('model.layers.1.self_attn.k_norm.weight'), trainable.join(', '));
    const cfg = JSON.parse(fs.readFileSync(path.join(c.output, 'adapter_config.json'), 'utf8')) as { modules_to_save: string[] };
    assert.ok(cfg.modules_to_save.includes('q_norm') && cfg.modules_to_save.includes('k_norm'), cfg.modules_to_save.join(', '));
    const base = await loadLlama(goldenDir('tiny-qwen3'));
    const before = await logitsOf(base, ids, 2, 10);
    base.dispose();
    const again = await loadWithAdapter(goldenDir('tiny-qwen3'), c.output);
    const after = await logitsOf(again, ids, 2, 10);
    again.dispose();
    assertClose(after, trained, 1e-6, 'adapter on the base', () => {});
    assert.notDeepEqual(after, before, 'training changed the model');
  });
});
