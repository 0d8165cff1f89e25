/**
 * loadLlama on damaged checkpoints, and saveLlama → loadLlama round trips.
 *
 * Every damaged folder is a copy of the tiny-llama fixture in a fresh temporary folder.
 * Each load must fail with one LongLoraError that names the file, the tensor (where there
 * is one) and the problem, and must free every buffer it allocated before failing.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cpuBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { INDEX_FILE, SINGLE_FILE, openCheckpoint } from '../../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors, type TensorEntry } from '../../src/io/safetensors.js';
import { parseLlamaConfig, type LlamaConfig } from '../../src/models/llama/config.js';
import { loadLlama, randomLlama, saveLlama, type LoadOptions } from '../../src/models/llama/load.js';
import { LlamaForCausalLM } from '../../src/models/llama/model.js';
import { fromFloatArray, toFloatArray } from '../../src/tensor/dtype.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { tidy } from '../../src/tensor/scope.js';
import { fromHost } from '../../src/tensor/tensor.js';
import { applyLora, mergeLora } from '../../src/lora/inject.js';
import { LORA_DEFAULTS } from '../../src/lora/lora.js';
import { Rng } from '../../src/tensor/random.js';
import { diff } from '../helpers/compare.js';
import { goldenDir } from '../helpers/fixtures.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('load');

/** A fresh copy of a fixture checkpoint (config.json + model.safetensors). */
function copyFixture(variant = 'tiny-llama'): string {
  const d = fresh();
  for (const f of ['config.json', SINGLE_FILE]) fs.copyFileSync(path.join(goldenDir(variant), f), path.join(d, f));
  return d;
}

/** Every tensor of a safetensors file, read in its stored dtype. */
function readAll(file: string): TensorEntry[] {
  const f = SafetensorsFile.open(file);
  try {
    return f.names().map((name) => {
      const t = f.read(name);
      return { name, dtype: t.dtype, shape: t.shape, data: t.data };
    });
  } finally {
    f.close();
  }
}

/** Rewrites model.safetensors of `dir` through `edit` (with writeSafetensors). */
function rewriteTensors(dir: string, edit: (entries: TensorEntry[]) => TensorEntry[]): string {
  const file = path.join(dir, SINGLE_FILE);
  writeSafetensors(file, edit(readAll(file)), { format: 'pt' });
  return file;
}

/** Rewrites the JSON header of model.safetensors, keeping the data bytes as they are. */
function rewriteHeader(dir: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): string {
  const file = path.join(dir, SINGLE_FILE);
  const bytes = fs.readFileSync(file);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, never>;
  edit(header);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([prefix, Buffer.from(json, 'utf8'), bytes.subarray(8 + len)]));
  return file;
}

/** Rewrites config.json of `dir` through `edit`. */
function editConfig(dir: string, edit: (j: Record<string, unknown>) => void): string {
  const file = path.join(dir, 'config.json');
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j, null, 2));
  return file;
}

/**
 * loadLlama(dir) must reject with one LongLoraError containing every `parts`, and leave
 * the backend with the live buffers it had before the call.
 */
async function loadFails(t: { diagnostic(s: string): void }, dir: string, parts: string[], opts: LoadOptions = {}): Promise<void> {
  const buffers = cpuBackend().memory().buffers;
  await assert.rejects(loadLlama(dir, opts), (err: unknown) => {
    assert.ok(err instanceof LongLoraError, `expected a LongLoraError, got ${String(err)}`);
    for (const p of parts) assert.ok(err.message.includes(p), `message lacks "${p}": ${err.message}`);
    t.diagnostic(err.message);
    return true;
  });
  assert.equal(cpuBackend().memory().buffers, buffers, 'no buffer leaked by the failed load');
}

describe('loadLlama: damaged checkpoints', () => {
  it('a truncated model.safetensors', async (t) => {
    const dir = copyFixture();
    const file = path.join(dir, SINGLE_FILE);
    fs.truncateSync(file, fs.statSync(file).size - 100);
    await loadFails(t, dir, [file, 'tensor "lm_head.weight"', 'past the end', 'truncated']);
  });

  it('a header that lies about a size', async (t) => {
    const dir = copyFixture();
    const file = rewriteHeader(dir, (h) => { h['model.layers.0.self_attn.k_proj.weight']!.shape = [16, 33]; });
    await loadFails(t, dir, [file, 'tensor "model.layers.0.self_attn.k_proj.weight"', 'shape [16, 33]', 'need']);
  });

  it('an unknown dtype in the header', async (t) => {
    const dir = copyFixture();
    const file = rewriteHeader(dir, (h) => { h['model.norm.weight']!.dtype = 'F8_E4M3'; });
    await loadFails(t, dir, [file, 'tensor "model.norm.weight"', 'unknown dtype "F8_E4M3"', 'BF16']);
  });

  it('a weight stored in an integer dtype (a quantized checkpoint), and config.json with quantization_config', async (t) => {
    const dir = copyFixture();
    // bitsandbytes 8-bit keeps the [out, in] shape with I8 codes: read as floats, the model would be garbage.
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const file = rewriteTensors(dir, (es) => es.map((e) => e.name !== name ? e : { ...e, dtype: 'I8', data: new Int8Array(e.shape[0]! * e.shape[1]!) }));
    await loadFails(t, dir, [file, `tensor "${name}" is stored as I8, an integer type`, 'use the unquantized model']);
    const config = editConfig(dir, (j) => { j.quantization_config = { quant_method: 'bitsandbytes', load_in_8bit: true }; });
    await loadFails(t, dir, [config, '"quantization_config" (quant_method "bitsandbytes")', 'unquantized release', '--quantize nf4']);
  });

  it('a missing tensor (after part of the model was built)', async (t) => {
    const dir = copyFixture();
    rewriteTensors(dir, (es) => es.filter((e) => e.name !== 'model.layers.1.mlp.up_proj.weight'));
    // The tensor is looked up by folder (single file or shards); the closest names are listed.
    await loadFails(t, dir, [path.join(dir, 'model.safetensors'), 'no tensor named "model.layers.1.mlp.up_proj.weight"', '"model.layers.0.mlp.up_proj.weight"']);
  });

  it('lm_head missing in an untied checkpoint', async (t) => {
    const dir = copyFixture();
    rewriteTensors(dir, (es) => es.filter((e) => e.name !== 'lm_head.weight'));
    await loadFails(t, dir, [path.join(dir, 'model.safetensors'), '"lm_head.weight"', 'tie_word_embeddings is false']);
  });

  it('a weight beyond f16\'s range, loaded as f16 (it would become inf); as bf16 it loads', async (t) => {
    const dir = copyFixture();
    const name = 'model.layers.1.mlp.down_proj.weight';
    rewriteTensors(dir, (es) => es.map((e) => {
      if (e.name !== name) return e;
      const data = Float32Array.from(e.data as Float32Array);
      data[5] = 70000;
      return { ...e, data };
    }));
    await loadFails(t, dir, [path.join(dir, 'model.safetensors'), `'${name}'`, 'beyond f16\'s range (±65504)', 'dtype bf16'], { dtype: 'f16' });
    (await loadLlama(dir, { dtype: 'bf16' })).dispose();
  });

  it('a shape that disagrees with config.json', async (t) => {
    const dir = copyFixture();
    const config = editConfig(dir, (j) => { j.num_key_value_heads = 4; });
    await loadFails(t, dir, [
      path.join(dir, SINGLE_FILE), 'tensor "model.layers.0.self_attn.k_proj.weight"', 'shape [16, 32]', config,
      'num_key_value_heads=4', 'needs [32, 32]', 'do not belong together',
    ]);
  });

  it('an unsupported model_type', async (t) => {
    const dir = copyFixture();
    const config = editConfig(dir, (j) => { j.model_type = 'gpt2'; });
    await loadFails(t, dir, [config, 'model_type "gpt2"', 'supported: llama']);
  });

  it('a folder that does not exist', async (t) => {
    const dir = path.join(fresh(), 'no-such-model');
    await loadFails(t, dir, [dir, 'does not exist']);
  });

  it('a file instead of a folder', async (t) => {
    const dir = copyFixture();
    const file = path.join(dir, 'config.json');
    await loadFails(t, file, [file, 'not a folder']);
  });

  it('a folder without config.json', async (t) => {
    const dir = copyFixture();
    fs.rmSync(path.join(dir, 'config.json'));
    await loadFails(t, dir, [path.join(dir, 'config.json'), 'not found']);
  });

  it('a folder with config.json but no weights', async (t) => {
    const dir = copyFixture();
    fs.rmSync(path.join(dir, SINGLE_FILE));
    await loadFails(t, dir, [dir, SINGLE_FILE, INDEX_FILE]);
  });
});

describe('loadLlama: warnings', () => {
  async function warningsFor(dir: string): Promise<string[]> {
    const warnings: string[] = [];
    const model = await loadLlama(dir, { onWarning: (m) => warnings.push(m) });
    model.dispose();
    return warnings;
  }

  const extra = (name: string, numel: number): TensorEntry => ({ name, dtype: 'f32', shape: [numel], data: new Float32Array(numel) });

  it('reports a tensor the model does not use', async (t) => {
    const dir = copyFixture();
    rewriteTensors(dir, (es) => [...es, extra('model.layers.0.self_attn.q_norm.weight', 8)]);
    const warnings = await warningsFor(dir);
    assert.equal(warnings.length, 1, `one warning: ${JSON.stringify(warnings)}`);
    assert.ok(warnings[0]!.includes('model.layers.0.self_attn.q_norm.weight'), warnings[0]);
    assert.ok(warnings[0]!.includes(dir), warnings[0]);
    t.diagnostic(warnings[0]!);
  });

  it('stays quiet about rotary_emb.inv_freq, and about the fixture itself', async () => {
    assert.deepEqual(await warningsFor(goldenDir('tiny-llama')), []);
    const dir = copyFixture();
    rewriteTensors(dir, (es) => [...es,
      extra('model.layers.0.self_attn.rotary_emb.inv_freq', 4), extra('model.layers.1.self_attn.rotary_emb.inv_freq', 4)]);
    assert.deepEqual(await warningsFor(dir), []);
  });
});

// ---- round trips ----------------------------------------------------------------------

/** The tiny-llama config with linear RoPE scaling of factor 4. */
function smallConfig(over: Record<string, unknown> = {}): LlamaConfig {
  const j = JSON.parse(fs.readFileSync(path.join(goldenDir('tiny-llama'), 'config.json'), 'utf8')) as Record<string, unknown>;
  return parseLlamaConfig({ ...j, rope_scaling: { type: 'linear', factor: 4 }, ...over }, 'tiny-llama config');
}

const B = 2;
const N = 12;
const IDS = Int32Array.from({ length: B * N }, (_, i) => (i * 37 + 5) % 96);

async function logitsOf(model: LlamaForCausalLM): Promise<Float32Array | Float64Array> {
  const logits = tidy(() => model.forward(idsTensor(IDS, [B, N])));
  const out = await logits.floats();
  logits.dispose();
  return out;
}

/** The same model with every weight rounded to bf16 (held as f32). */
async function bf16Rounded(model: LlamaForCausalLM): Promise<LlamaForCausalLM> {
  const rounded = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) {
    rounded.set(name, toFloatArray(fromFloatArray(await p.floats(), 'bf16'), 'bf16', 'f32') as Float32Array);
  }
  return new LlamaForCausalLM(model.config, (name, shape) => fromHost(rounded.get(name)!, shape, 'f32').keep());
}

function savedConfig(dir: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
}

describe('randomLlama', () => {
  it('refuses a dtype that is no weight dtype, naming it', () => {
    assert.throws(() => randomLlama(smallConfig(), { dtype: 'f8' as 'f16' }), (e: unknown) => e instanceof LongLoraError && /randomLlama: dtype must be f32, f64, bf16, f16, got "f8"/.test(e.message));
  });

  it('with a hostCache, draws once: a second model (any seed, another dtype) takes the f32-rounded weights of the first', async () => {
    const cache = new Map<string, Float32Array>();
    const a = randomLlama(smallConfig(), { seed: 5, std: 0.2, hostCache: cache });
    const b = randomLlama(smallConfig(), { seed: 6, std: 0.2, hostCache: cache, dtype: 'bf16' });
    const plain = randomLlama(smallConfig(), { seed: 5, std: 0.2 });
    const other = randomLlama(smallConfig(), { seed: 6, std: 0.2 });
    try {
      assert.equal(cache.size, a.namedParameters().length);
      const pb = new Map(b.namedParameters());
      const po = new Map(other.namedParameters());
      for (const [name, p] of plain.namedParameters()) {
        const want = Float32Array.from(await p.floats());
        assert.deepEqual(Float32Array.from(await new Map(a.namedParameters()).get(name)!.floats()), want, `${name}: the cached draw is the seed-5 draw, rounded to f32`);
        assert.deepEqual(Float32Array.from(await pb.get(name)!.floats()), toFloatArray(fromFloatArray(want, 'bf16'), 'bf16', 'f32'), `${name}: the second model took it (not seed 6's) as bf16`);
        if (!name.endsWith('norm.weight')) assert.notDeepEqual(Float32Array.from(await po.get(name)!.floats()), want, `${name}: seed 6 draws other values`);
      }
    } finally {
      for (const m of [a, b, plain, other]) m.dispose();
    }
  });
});

describe('saveLlama → loadLlama round trips', () => {
  it('f32: identical logits and config; config.json has rope_scaling with the factor', async (t) => {
    const buffers = cpuBackend().memory().buffers;
    const model = randomLlama(smallConfig(), { seed: 11, std: 0.2 });
    const dir = fresh();
    await saveLlama(model, dir);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', SINGLE_FILE]);
    const hf = savedConfig(dir);
    assert.deepEqual(hf.rope_scaling, { rope_type: 'linear', type: 'linear', factor: 4 });
    assert.equal(hf.torch_dtype, 'float32');
    const loaded = await loadLlama(dir);
    assert.deepEqual(loaded.config, { ...model.config, torchDtype: 'float32' });
    const [a, b] = [await logitsOf(model), await logitsOf(loaded)];
    t.diagnostic(`f32 round trip: max|diff| ${diff(b, a).maxAbs}`);
    assert.deepEqual(b, a, 'bit-identical logits');
    model.dispose();
    loaded.dispose();
    assert.equal(cpuBackend().memory().buffers, buffers, 'every buffer freed');
  });

  it('bf16: the saved file is BF16 and loads (as bf16 or f32) to the bf16-rounded model', async (t) => {
    const buffers = cpuBackend().memory().buffers;
    const model = randomLlama(smallConfig(), { seed: 12, std: 0.2 });
    const dir = fresh();
    await saveLlama(model, dir, { dtype: 'bf16' });
    assert.equal(savedConfig(dir).torch_dtype, 'bfloat16');
    const ck = openCheckpoint(dir);
    for (const name of ck.names()) assert.equal(ck.info(name).dtype, 'BF16', `${name} stored as BF16`);
    ck.close();
    const rounded = await bf16Rounded(model);
    const expected = await logitsOf(rounded);
    const original = await logitsOf(model);
    t.diagnostic(`bf16 rounding moved the logits by rel ${diff(expected, original).rel.toExponential(2)}`);
    assert.notDeepEqual(expected, original, 'rounding to bf16 changed the model');
    for (const dtype of ['bf16', 'f32'] as const) {
      const loaded = await loadLlama(dir, { dtype });
      assert.equal(loaded.model.norm.weight.dtype, dtype);
      assert.deepEqual(await logitsOf(loaded), expected, `loaded as ${dtype}: bit-identical to the bf16-rounded model`);
      loaded.dispose();
    }
    model.dispose();
    rounded.dispose();
    assert.equal(cpuBackend().memory().buffers, buffers, 'every buffer freed');
  });

  it('sharded with a small maxShardBytes: index + shards, identical logits', async (t) => {
    const model = randomLlama(smallConfig(), { seed: 13, std: 0.2 });
    const dir = fresh();
    await saveLlama(model, dir, { maxShardBytes: 16_384 });
    const files = fs.readdirSync(dir).sort();
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    t.diagnostic(`sharded into ${shards.length} files: ${files.join(', ')}`);
    assert.ok(shards.length > 1, 'more than one shard');
    assert.ok(files.includes(INDEX_FILE) && !files.includes(SINGLE_FILE));
    const loaded = await loadLlama(dir);
    assert.deepEqual(await logitsOf(loaded), await logitsOf(model), 'bit-identical logits');
    model.dispose();
    loaded.dispose();
  });

  it('the tied variant writes no lm_head.weight and loads back identical', async () => {
    const model = await loadLlama(goldenDir('tiny-llama-tied'));
    assert.equal(model.lm_head, null);
    const dir = fresh();
    await saveLlama(model, dir);
    const ck = openCheckpoint(dir);
    assert.equal(ck.has('lm_head.weight'), false, 'no lm_head.weight written');
    assert.equal(ck.names().length, 20);
    ck.close();
    assert.equal(savedConfig(dir).tie_word_embeddings, true);
    const loaded = await loadLlama(dir);
    assert.deepEqual(await logitsOf(loaded), await logitsOf(model));
    model.dispose();
    loaded.dispose();
  });

  it('refuses what a model folder cannot hold, and option values it does not know, naming the fix', async () => {
    const model = randomLlama(smallConfig(), { seed: 14, std: 0.2 });
    applyLora(model, ['q_proj'], LORA_DEFAULTS, new Rng(0), { training: false, rng: new Rng(1) });
    const dir = fresh();
    await assert.rejects(saveLlama(model, dir), (e: unknown) => e instanceof LongLoraError &&
      /LoRA adapters \(e\.g\. model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight\).*mergeLora\(model\).*saveAdapter/.test(e.message));
    assert.deepEqual(fs.readdirSync(dir), [], 'nothing written');
    mergeLora(model);
    await assert.rejects(saveLlama(model, dir, { dtype: 'fp16' as 'f16' }), /unknown dtype 'fp16'; use one of f32, bf16, f16/);
    await saveLlama(model, dir);
    await assert.rejects(loadLlama(dir, { quantize: 'int4' as 'nf4' }), /unknown quantize 'int4'; use 'nf4'/);
    model.dispose();
  });
});
