import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import type { LoraRuntime } from '../../src/lora/lora.js';
import { loadAdapter, readAdapterConfig, readSidecar, saveAdapter } from '../../src/io/peft.js';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { loraLayers } from '../../src/lora/inject.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { Rng } from '../../src/tensor/random.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('peft');
const rt = (): LoraRuntime => ({ training: false, rng: new Rng(0) });

/** A tiny model with a trained-looking LongLoRA adapter (random B, perturbed embed/norms). */
async function adapted(): Promise<Awaited<ReturnType<typeof tinyModel>>> {
  const m = await tinyModel();
  applyLora(m.model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0.05, rslora: false }, new Rng(1), rt());
  const rep = setTrainable(m.model, 'longlora', ['embed', 'norm']);
  const rng = new Rng(2);
  for (const [n, p] of m.model.namedParameters()) {
    if (!rep.names.includes(n)) continue;
    const host = await p.floats();
    cpuBackend().upload(p.buffer, Float32Array.from(host, (v) => v + 0.05 * rng.normal()));
  }
  return m;
}

describe('PEFT adapters', () => {
  it('writes the PEFT layout and loads back to the same logits', async (t) => {
    const { model, ids, B, N } = await adapted();
    const dir = fresh();
    const extras = setTrainable(model, 'longlora', ['embed', 'norm']).names.filter((n) => !n.includes('lora_'));
    await saveAdapter(model, dir, { baseModel: 'tiny-llama', extras, sidecar: { rope_scaling: { type: 'linear', factor: 2 } } });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.task_type, 'CAUSAL_LM');
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.equal(cfg.lora_dropout, 0.05);
    assert.deepEqual(cfg.target_modules, ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
    assert.deepEqual(cfg.modules_to_save, ['embed_tokens', 'input_layernorm', 'post_attention_layernorm', 'norm']);
    assert.equal(cfg.bias, 'none');
    assert.equal(cfg.fan_in_fan_out, false);
    assert.equal(cfg.use_rslora, false);
    assert.equal(cfg.use_dora, false);
    const st = SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors'));
    assert.deepEqual(st.info('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight').shape, [4, 32]);
    assert.deepEqual(st.info('base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight').shape, [32, 4]);
    assert.ok(st.has('base_model.model.model.embed_tokens.weight'));
    assert.ok(st.has('base_model.model.model.layers.1.post_attention_layernorm.weight'));
    assert.ok(st.has('base_model.model.model.norm.weight'));
    assert.equal(st.names().length, 16 + extras.length);
    st.close();
    const split = SafetensorsFile.open(path.join(dir, 'trainable_params.safetensors'));
    assert.deepEqual(split.names().sort(), [...extras].sort(), 'the official split uses plain HF names');
    split.close();
    assert.deepEqual(readSidecar(dir), { format: 1, rope_scaling: { type: 'linear', factor: 2 } });

    const want = await logitsOf(model, ids, B, N);
    model.dispose();
    const base = (await tinyModel()).model;
    const { config, replaced } = loadAdapter(base, dir, rt());
    assert.equal(config.lora.r, 4);
    assert.equal(replaced.length, extras.length);
    assertClose(await logitsOf(base, ids, B, N), want, 0, 'base + loaded adapter vs the trained model', (s) => t.diagnostic(s));
    base.dispose();
  });

  it('a tied model whose embeddings train asks PEFT to keep lm_head tied to them (ensure_weight_tying)', async () => {
    const written = async (variant: string, extrasOf: string[]): Promise<Record<string, unknown>> => {
      const { model } = await tinyModel(variant);
      applyLora(model, ['q_proj', 'v_proj'], { r: 2, alpha: 4, dropout: 0, rslora: false }, new Rng(1), rt());
      const extras = setTrainable(model, 'longlora', extrasOf).names.filter((n) => !n.includes('lora_'));
      const dir = fresh();
      await saveAdapter(model, dir, { baseModel: variant, extras });
      model.dispose();
      return JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    };
    const tied = await written('tiny-llama-tied', ['embed', 'norm']);
    assert.deepEqual(tied.modules_to_save, ['embed_tokens', 'input_layernorm', 'post_attention_layernorm', 'norm']);
    assert.equal(tied.ensure_weight_tying, true, 'without it PEFT wraps embed_tokens alone and lm_head keeps the base embeddings');
    assert.equal((await written('tiny-llama-tied', ['norm'])).ensure_weight_tying, undefined, 'embeddings frozen: nothing to tie');
    assert.equal((await written('tiny-llama', ['embed', 'norm'])).ensure_weight_tying, undefined, 'untied model');
  });

  it('reads modules_to_save as PEFT does: "norm" selects every norm by plain suffix', async (t) => {
    const { model, ids, B, N } = await adapted();
    const dir = fresh();
    const extras = setTrainable(model, 'longlora', ['embed', 'norm']).names.filter((n) => !n.includes('lora_'));
    await saveAdapter(model, dir, { baseModel: 'tiny-llama', extras });
    const want = await logitsOf(model, ids, B, N);
    model.dispose();
    const cfgPath = path.join(dir, 'adapter_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    // What PEFT writes for modules_to_save=["embed_tokens", "norm"]: the same tensors (the layer norms included).
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, modules_to_save: ['embed_tokens', 'norm'] }));
    const base = (await tinyModel()).model;
    const { replaced } = loadAdapter(base, dir, rt());
    assert.equal(replaced.length, extras.length);
    assertClose(await logitsOf(base, ids, B, N), want, 0, 'base + adapter with short modules_to_save', (s) => t.diagnostic(s));
    base.dispose();
  });

  it('reads target_modules as PEFT does: a regular expression, all-linear, layers_to_transform, exclude_modules', async (t) => {
    const { model, ids, B, N } = await adapted();
    const dir = fresh();
    await saveAdapter(model, dir, { baseModel: 'tiny-llama', extras: [] });
    model.dispose();
    const cfgPath = path.join(dir, 'adapter_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    const write = (extra: Record<string, unknown>): void => fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, ...extra }));
    const loadInto = async (): Promise<{ layers: string[]; logits: Float32Array | Float64Array }> => {
      const base = (await tinyModel()).model;
      loadAdapter(base, dir, rt());
      const out = { layers: loraLayers(base).map(([p]) => p), logits: await logitsOf(base, ids, B, N) };
      base.dispose();
      return out;
    };
    const want = await loadInto();
    assert.equal(want.layers.length, 8);

    write({ target_modules: 'model\\.layers\\.\\d+\\.self_attn\\.(q|k|v|o)_proj' });
    const regex = await loadInto();
    assert.deepEqual(regex.layers, want.layers);
    assertClose(regex.logits, want.logits, 0, 'regex target_modules', (s) => t.diagnostic(s));
    write({ target_modules: 'All-Linear' });
    assert.equal(readAdapterConfig(dir).targetModules, 'all-linear');
    write({ target_modules: '(unclosed' });
    throwsLL(() => readAdapterConfig(dir), 'target_modules "(unclosed" is a regular expression this reader cannot compile');

    // layers_to_transform [0]: PEFT saves (and loads) LoRA on layer 0 only.
    const file = path.join(dir, 'adapter_model.safetensors');
    const st = SafetensorsFile.open(file);
    const keep = st.names().filter((n) => !n.includes('.layers.1.')).map((n) => ({ name: n, ...st.read(n) }));
    st.close();
    writeSafetensors(file, keep, { format: 'pt' });
    write({ layers_to_transform: [0] });
    assert.deepEqual((await loadInto()).layers, want.layers.filter((p) => p.includes('.layers.0.')));
    write({ layers_to_transform: 0, layers_pattern: 'layers' });
    assert.equal((await loadInto()).layers.length, 4);
    write({ exclude_modules: ['layers.1.self_attn.q_proj', 'layers.1.self_attn.k_proj', 'layers.1.self_attn.v_proj', 'layers.1.self_attn.o_proj'] });
    assert.equal((await loadInto()).layers.length, 4);
    write({ layers_to_transform: [7] });
    const base = (await tinyModel()).model;
    throwsLL(() => loadAdapter(base, dir, rt()), 'layers_to_transform [7]', 'match no module');
    base.dispose();
  });

  it('refuses adapters it cannot compute, and a wrong shape, without touching the model', async () => {
    const { model, ids, B, N } = await adapted();
    const dir = fresh();
    await saveAdapter(model, dir, { baseModel: 'x', extras: [] });
    model.dispose();
    const cfgPath = path.join(dir, 'adapter_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, use_dora: true }));
    throwsLL(() => readAdapterConfig(dir), 'adapter_config.json', 'DoRA');
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, r: 8 }));
    const base = (await tinyModel()).model;
    const before = await logitsOf(base, ids, B, N);
    throwsLL(() => loadAdapter(base, dir, rt()), 'adapter_model.safetensors', 'lora_A.weight', 'has shape [4, 32]', 'needs [8, 32]');
    assert.deepEqual(await logitsOf(base, ids, B, N), before, 'the model is unchanged');
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: ['q_proj'] }));
    throwsLL(() => loadAdapter(base, dir, rt()), 'match nothing in the model');
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    const file = path.join(dir, 'adapter_model.safetensors');
    const st = SafetensorsFile.open(file);
    const entries = st.names().map((n) => ({ name: n, ...st.read(n) }));
    st.close();
    const a = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
    writeSafetensors(file, entries.map((e) => e.name !== a ? e : { ...e, dtype: 'I32' as const, data: new Int32Array(e.data.length) }), { format: 'pt' });
    throwsLL(() => loadAdapter(base, dir, rt()), `tensor "${a}" is stored as I32, an integer type`);
    assert.deepEqual(await logitsOf(base, ids, B, N), before, 'the model is unchanged');
    base.dispose();
    throwsLL(() => readAdapterConfig(fresh()), 'has no adapter_config.json, so it is not an adapter');
    const gguf = path.join(fresh(), 'lora.gguf');
    fs.writeFileSync(gguf, 'GGUF');
    throwsLL(() => readAdapterConfig(gguf), 'lora.gguf is a GGUF file: a GGUF LoRA applies to a GGUF base (--model FILE.gguf)');
  });
});
