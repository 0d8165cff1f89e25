/**
 * The browser entry (src/browser.ts), checked in Node: its module graph has no Node
 * built-ins and no bare package imports (so a page loads it from dist/ as it is), it is
 * part of the Node entry, and its in-memory file formats give exactly what the Node file
 * readers and writers give.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as browser from '../../src/browser.js';
import * as node from '../../src/index.js';
import { SafetensorsBytes, SafetensorsFile, encodeSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { collectAdapter, encodeAdapter, loadAdapter, loadAdapterBytes, writeAdapter } from '../../src/io/peft.js';
import { llamaFromSafetensors, loadLlama } from '../../src/models/llama/load.js';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import { Rng } from '../../src/tensor/random.js';
import { AdamW } from '../../src/train/optim.js';
import { trainStep } from '../../src/train/step.js';
import { fromFloatArray } from '../../src/tensor/dtype.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { ROOT, goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/forward.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('entry');

/** Every module a file imports statically, followed through relative imports. */
function staticImports(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    const outside: string[] = [];
    seen.set(file, outside);
    const src = fs.readFileSync(file, 'utf8');
    for (const m of src.matchAll(/^\s*(?:import|export)\s(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
      else outside.push(spec);
    }
  };
  visit(entry);
  return seen;
}

describe('the browser entry', () => {
  it('imports only relative ES modules: no Node built-ins, no packages (also the WebGPU backend it loads)', () => {
    for (const entry of ['dist/src/browser.js', 'dist/src/backend/webgpu/webgpu.js', 'dist/test/browser/page.js']) {
      const graph = staticImports(path.join(ROOT, entry));
      const bad = [...graph].filter(([, out]) => out.length > 0).map(([f, out]) => `${path.relative(ROOT, f)}: ${out.join(', ')}`);
      assert.deepEqual(bad, [], `${entry} reaches non-relative imports`);
      assert.ok(graph.size > (entry.includes('webgpu') ? 5 : 40), `${entry}: ${graph.size} modules followed`);
    }
    // The text entry adds exactly the two packages a page maps with an import map.
    const text = staticImports(path.join(ROOT, 'dist/src/browser-text.js'));
    const outside = new Set([...text.values()].flat());
    assert.deepEqual([...outside].sort(), ['@huggingface/jinja', '@huggingface/tokenizers']);
    // The parser above does see a Node import (so the check can fail).
    const nodeGraph = staticImports(path.join(ROOT, 'dist/src/index.js'));
    assert.ok([...nodeGraph.values()].some((out) => out.includes('node:fs')));
  });

  it('is part of the Node entry', () => {
    const missing = Object.keys(browser).filter((k) => (node as Record<string, unknown>)[k] !== (browser as Record<string, unknown>)[k]);
    assert.deepEqual(missing, []);
    for (const k of ['loadLlama', 'saveAdapter', 'SafetensorsFile']) assert.ok(!(k in browser) && k in node, k);
    for (const k of ['quantizeModel', 'dequantizeModel', 'Nf4Weight']) assert.ok(k in browser, `${k}: 4-bit bases in the browser entry`);
  });
});

describe('safetensors as bytes', () => {
  const entries = [
    { name: 'w', dtype: 'f32' as const, shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 4, 5, 6]) },
    { name: 'h', dtype: 'bf16' as const, shape: [3], data: fromFloatArray(Float32Array.from([0.5, -1, 2]), 'bf16') },
    { name: 'ids', dtype: 'I64' as const, shape: [2], data: Int32Array.from([7, -1]) },
  ];

  it('encodes exactly the bytes writeSafetensors writes, and reads back what SafetensorsFile reads', () => {
    const file = path.join(fresh(), 'x.safetensors');
    writeSafetensors(file, entries, { format: 'pt' });
    const bytes = encodeSafetensors(entries, { format: 'pt' });
    assert.deepEqual(bytes, new Uint8Array(fs.readFileSync(file)));
    const a = SafetensorsBytes.parse(bytes, 'x');
    const b = SafetensorsFile.open(file);
    assert.deepEqual(a.names(), b.names());
    assert.deepEqual(a.metadata, { format: 'pt' });
    for (const n of a.names()) {
      assert.deepEqual(a.info(n), b.info(n));
      assert.deepEqual(a.read(n), b.read(n));
      assert.deepEqual(a.read(n, 'f64'), b.read(n, 'f64'));
    }
    b.close();
  });

  it('refuses truncated or lying bytes with the problem and the name given', () => {
    const bytes = encodeSafetensors(entries);
    throwsLL(() => SafetensorsBytes.parse(bytes.subarray(0, 5), 'a.safetensors'), 'a.safetensors', 'only 5 bytes');
    throwsLL(() => SafetensorsBytes.parse(bytes.subarray(0, bytes.length - 2), 'a.safetensors'), 'a.safetensors', 'past the end');
    const lying = bytes.slice();
    lying[8] = 0x5b; // '[' instead of '{'
    throwsLL(() => SafetensorsBytes.parse(lying, 'b'), 'b: the', 'not valid JSON');
    throwsLL(() => SafetensorsBytes.parse(bytes).read('nope'), 'no tensor named "nope"', 'closest');
  });
});

describe('models and adapters from bytes', () => {
  const bytesOf = (variant: string): { config: unknown; weights: Uint8Array } => ({
    config: JSON.parse(fs.readFileSync(path.join(goldenDir(variant), 'config.json'), 'utf8')),
    weights: new Uint8Array(fs.readFileSync(path.join(goldenDir(variant), 'model.safetensors'))),
  });
  const ids = Int32Array.from([1, 5, 9, 20, 33, 2, 7, 8]);

  it('llamaFromSafetensors builds the model loadLlama builds', async () => {
    for (const variant of ['tiny-llama', 'tiny-llama-tied', 'tiny-qwen2', 'tiny-qwen3']) {
      const { config, weights } = bytesOf(variant);
      const a = llamaFromSafetensors(config, [weights]);
      const b = await loadLlama(goldenDir(variant));
      assert.deepEqual(a.namedParameters().map(([n]) => n), b.namedParameters().map(([n]) => n));
      assert.deepEqual(await logitsOf(a, ids, 1, 8), await logitsOf(b, ids, 1, 8));
      a.dispose();
      b.dispose();
    }
  });

  it('llamaFromSafetensors names a missing tensor, a wrong shape, a shard given twice and unused tensors', () => {
    const { config, weights } = bytesOf('tiny-llama');
    const f = SafetensorsBytes.parse(weights, 'model.safetensors');
    const drop = (name: string): Uint8Array => encodeSafetensors(f.names().filter((n) => n !== name).map((n) => ({ name: n, dtype: 'f32' as const, shape: f.info(n).shape, data: f.read(n, 'f32').data })));
    throwsLL(() => llamaFromSafetensors(config, [drop('model.norm.weight')]), 'no tensor named "model.norm.weight"');
    throwsLL(() => llamaFromSafetensors({ ...(config as object), hidden_size: 64 }, [weights]), 'has shape', 'hidden_size=64', 'do not belong together');
    throwsLL(() => llamaFromSafetensors(config, [weights, weights]), 'is also in', 'pass each shard once');
    throwsLL(() => llamaFromSafetensors(config, []), 'no safetensors files given');
    const extra = encodeSafetensors([...f.names().map((n) => ({ name: n, dtype: 'f32' as const, shape: f.info(n).shape, data: f.read(n, 'f32').data })),
      { name: 'stray.weight', dtype: 'f32' as const, shape: [1], data: Float32Array.of(1) }]);
    const warnings: string[] = [];
    llamaFromSafetensors(config, [extra], { onWarning: (w) => warnings.push(w) }).dispose();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /1 tensor\(s\) not used by the Llama model: stray\.weight/);
  });

  it('encodeAdapter gives the bytes writeAdapter writes; loadAdapterBytes puts in what loadAdapter does', async () => {
    const { config, weights } = bytesOf('tiny-llama');
    const model = llamaFromSafetensors(config, [weights]);
    const base = await logitsOf(model, ids, 1, 8);
    const runtime = { training: false, rng: new Rng(0) };
    applyLora(model, ['q_proj', 'v_proj'], { r: 2, alpha: 4, dropout: 0, rslora: false }, new Rng(3), runtime);
    const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
    const opt = new AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0 });
    await trainStep(model, opt, [{ ids, B: 1, N: 8 }], 1e-2, { mask: { kind: 'causal' }, maxGradNorm: 1, checkpointing: false });
    opt.dispose();
    const files = await collectAdapter(model, { baseModel: 'tiny', extras: rep.names.filter((n) => !n.includes('.lora_')), sidecar: { seq_len: 16 } });
    const dir = fresh();
    writeAdapter(dir, files);
    const bytes = encodeAdapter(files);
    assert.deepEqual([...bytes.keys()].sort(), fs.readdirSync(dir).sort());
    for (const [name, b] of bytes) assert.deepEqual(b, new Uint8Array(fs.readFileSync(path.join(dir, name))), name);

    const expected = await logitsOf(model, ids, 1, 8);
    assert.notDeepEqual(expected, base, 'the trained adapter changes the model');
    const fromBytes = llamaFromSafetensors(config, [weights]);
    const fromDir = llamaFromSafetensors(config, [weights]);
    assert.deepEqual(loadAdapterBytes(fromBytes, bytes, runtime).replaced, loadAdapter(fromDir, dir, runtime).replaced);
    assertClose(await logitsOf(fromBytes, ids, 1, 8), expected, 1e-6, 'adapter from bytes');
    assert.deepEqual(await logitsOf(fromBytes, ids, 1, 8), await logitsOf(fromDir, ids, 1, 8));
    throwsLL(() => loadAdapterBytes(llamaFromSafetensors(config, [weights]), new Map([['adapter_config.json', bytes.get('adapter_config.json')!]]), runtime, 'upload'),
      'upload: no adapter_model.safetensors');
    throwsLL(() => loadAdapterBytes(llamaFromSafetensors(config, [weights]), new Map([...bytes, ['adapter_config.json', new TextEncoder().encode('{oops')]]), runtime, 'upload'),
      'upload/adapter_config.json: not valid JSON');
    for (const m of [model, fromBytes, fromDir]) m.dispose();
  });
});
