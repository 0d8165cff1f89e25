/**
 * LongQLoRA end to end on the tiny model: the `longqlora` preset, training with a 4-bit
 * base (exact resume), the base fingerprint in the trainer state and longlora.json, and a
 * mismatched base refused on resume, load and merge; merging writes a normal checkpoint
 * equal to the trained model.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseTrainArgs } from '../../src/cli/commands/train.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { readSidecar } from '../../src/io/peft.js';
import { loadWithAdapter, mergeAdapter } from '../../src/lora/adapted.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { applyPreset, presetNames } from '../../src/train/presets.js';
import { listCheckpoints, readState } from '../../src/train/state.js';
import { Trainer } from '../../src/train/trainer.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { loadModel } from '../../src/cli/commands/load-model.js';
import { TINY_96 } from '../tokenizer/fixtures.js';
import { sink, tinyConfig } from '../helpers/train.js';

const fresh = tempFolders('qlora');
const ALL7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** A copy of the tiny base in `dir` (so a test may damage it). */
function baseCopy(dir: string): string {
  const to = path.join(dir, 'base');
  fs.cpSync(goldenDir('tiny-llama-short'), to, { recursive: true });
  return to;
}

function qloraConfig(dir: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return tinyConfig(dir, { quantize: 'nf4', mode: 'lora', loraTargets: ALL7, loraR: 8, loraAlpha: 16, loraDropout: 0.05, model: baseCopy(dir), ...over });
}

async function train(c: TrainConfig, resume = false): Promise<void> {
  const t = await Trainer.create(c, { out: sink(), resume });
  try { await t.run(); } finally { t.dispose(); }
}

const trainable = (dir: string): Map<string, number[]> => {
  const f = SafetensorsFile.open(path.join(dir, 'trainable.safetensors'));
  const m = new Map(f.names().map((n) => [n, Array.from(f.read(n, 'f64').data as Float64Array)]));
  f.close();
  return m;
};

describe('the longqlora preset', () => {
  it('sets SPEC §4: NF4, LoRA r=64 alpha 16 dropout 0.05 on all seven linear layers, no extras, LR 2e-4, clip 0.3', () => {
    assert.ok(presetNames().includes('longqlora'));
    const c = applyPreset(defaultTrainConfig(), 'longqlora');
    assert.deepEqual(
      [c.quantize, c.mode, c.loraTargets, c.loraR, c.loraAlpha, c.loraDropout, c.lr, c.maxGradNorm, c.extras],
      ['nf4', 'lora', ALL7, 64, 16, 0.05, 2e-4, 0.3, null]);
  });

  it('comes before --config and flags; an unknown preset names the known ones', () => {
    const dir = fresh();
    const file = path.join(dir, 'run.yaml');
    fs.writeFileSync(file, 'loraR: 16\nlr: 1.0e-4\n');
    const r = parseTrainArgs(['--preset', 'longqlora', '--config', file, '--lr', '3e-4'])!;
    assert.deepEqual([r.config.quantize, r.config.loraR, r.config.lr], ['nf4', 16, 3e-4]);
    throwsLL(() => parseTrainArgs(['--preset', 'qlongora']), "unknown preset 'qlongora'", 'longqlora');
  });
});

describe('training on a 4-bit base', () => {
  it('records the base fingerprint, resumes exactly, and refuses a changed base on resume', async () => {
    const dir = fresh();
    const base = qloraConfig(dir, { steps: 4, saveEvery: 2 });
    await train({ ...base, output: path.join(dir, 'straight') });
    const side = readSidecar(path.join(dir, 'straight'))!;
    const q = side.quantization as { format: string; base_fingerprint: string; modules: string[] };
    assert.equal(q.format, 'nf4');
    assert.match(q.base_fingerprint, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(q.modules, ALL7);
    const last = listCheckpoints(path.join(dir, 'straight')).at(-1)!;
    assert.equal(readState(last).quantization?.fingerprint, q.base_fingerprint);

    const split = { ...base, output: path.join(dir, 'split'), steps: 2 };
    await train(split);
    await train({ ...split, steps: 4 }, true);
    const a = trainable(path.join(dir, 'straight', 'checkpoint-000004'));
    const b = trainable(path.join(dir, 'split', 'checkpoint-000004'));
    for (const [n, v] of a) assert.deepEqual(b.get(n), v, `${n}: resumed run equals the straight one`);

    // same shapes, other weights: the fingerprint differs
    fs.copyFileSync(path.join(goldenDir('tiny-llama'), 'model.safetensors'), path.join(base.model!, 'model.safetensors'));
    await assert.rejects(train({ ...split, steps: 6 }, true), (e: unknown) =>
      e instanceof LongLoraError && /is not the base model .* was trained on/.test(e.message) && /fingerprint/.test(e.message));
    assert.equal(cpuBackend().memory().buffers, 0, 'nothing left allocated');
  });

  it('merge writes a normal checkpoint equal to the trained model; a mismatched base is refused', async (t) => {
    const dir = fresh();
    const c = qloraConfig(dir, { steps: 3, lr: 5e-2 });
    await train(c);
    const ids = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 96);
    const adapted = await loadWithAdapter(c.model!, c.output);
    assert.equal(adapted.quantization?.format, 'nf4', 'a QLoRA adapter loads on its 4-bit base by default');
    const want = await logitsOf(adapted, ids, 1, 16);
    adapted.dispose();
    const out = path.join(dir, 'merged');
    const r = await mergeAdapter(c.model!, c.output, out);
    assert.equal(r.merged, 14);
    const merged = await loadLlama(out);
    const names = merged.namedParameters().map(([n]) => n);
    assert.ok(names.includes('model.layers.0.mlp.down_proj.weight') && merged.namedBuffers().length === 0);
    assertClose(await logitsOf(merged, ids, 1, 16), want, 1e-5, 'merged checkpoint vs base(NF4) + adapter', (s) => t.diagnostic(s));
    merged.dispose();

    const other = goldenDir('tiny-llama');
    await assert.rejects(mergeAdapter(other, c.output, path.join(dir, 'bad')), (e: unknown) =>
      e instanceof LongLoraError && e.message.includes(`${other} is not the base model`));
    await assert.rejects(loadWithAdapter(other, c.output), /is not the base model/);
    const unchecked = await loadWithAdapter(other, c.output, { quantize: 'none' });
    assert.equal(unchecked.quantization, null, 'explicitly unquantised: loads, nothing to check');
    unchecked.dispose();
    assert.ok(!fs.existsSync(path.join(dir, 'bad', 'model.safetensors')));
    assert.equal(cpuBackend().memory().buffers, 0, 'nothing left allocated');
  });

  it('full fine-tuning of a 4-bit base is refused before loading', async () => {
    const dir = fresh();
    await assert.rejects(Trainer.create(qloraConfig(dir, { mode: 'full' }), { out: sink() }), (e: unknown) =>
      e instanceof LongLoraError && /--quantize nf4 freezes the base linear layers/.test(e.message));
  });
});

describe('--quantize for eval, generate and chat', () => {
  it('loads any model in NF4 on request, and refuses an unknown format', async () => {
    const quiet = { write: () => true } as unknown as NodeJS.WritableStream;
    const base = { model: goldenDir('tiny-llama'), tokenizer: TINY_96, backend: 'cpu' };
    const r = await loadModel({ ...base, quantize: 'nf4' }, quiet);
    assert.equal(r.model.quantization?.format, 'nf4');
    assert.ok(r.notes.some((n) => n.startsWith('base: NF4')), r.notes.join('\n'));
    r.model.dispose();
    await assert.rejects(loadModel({ ...base, quantize: 'int4' }, quiet), /--quantize must be none or nf4/);
  });
});
