import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, mock } from 'node:test';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { listCheckpoints, readState } from '../../src/train/state.js';
import { Trainer, type TrainerOptions } from '../../src/train/trainer.js';
import type { TrainConfig } from '../../src/train/config.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { goldenDir } from '../helpers/fixtures.js';

const fresh = tempFolders('trainer');

async function train(c: TrainConfig, opts: TrainerOptions = {}): Promise<Awaited<ReturnType<Trainer['run']>>> {
  const t = await Trainer.create(c, { out: sink(), ...opts });
  try {
    return await t.run();
  } finally {
    t.dispose();
  }
}

function tensors(file: string): Map<string, number[]> {
  const f = SafetensorsFile.open(file);
  const m = new Map(f.names().map((n) => [n, Array.from(f.read(n, 'f64').data as Float64Array)]));
  f.close();
  return m;
}

describe('trainer', () => {
  it('10 steps straight equal 5 steps, a stop, a resume and 5 more (with dropout)', async () => {
    const dir = fresh();
    const base = tinyConfig(dir, { steps: 10, saveEvery: 100, loraDropout: 0.1, schedule: 'cosine' });
    await train({ ...base, output: path.join(dir, 'straight') });
    let trainer: Trainer | null = null;
    const stopAt5 = (s: number): void => { if (s === 5) trainer!.requestStop(); };
    trainer = await Trainer.create({ ...base, output: path.join(dir, 'split') }, { out: sink(), onStep: stopAt5 });
    const first = await trainer.run();
    trainer.dispose();
    assert.deepEqual([first.steps, first.stopped], [5, true]);
    const second = await train({ ...base, output: path.join(dir, 'split') }, { resume: true });
    assert.deepEqual([second.steps, second.stopped], [10, false]);
    const a = tensors(path.join(dir, 'straight', 'checkpoint-000010', 'trainable.safetensors'));
    const b = tensors(path.join(dir, 'split', 'checkpoint-000010', 'trainable.safetensors'));
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [n, v] of a) assert.deepEqual(b.get(n), v, `${n} identical`);
    const losses = (run: string): number[] => fs.readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    assert.deepEqual(losses('split'), losses('straight'));
    assert.equal(losses('straight').length, 10);
    assert.equal(cpuBackend().memory().buffers, 0, 'trainer.dispose frees everything');
  });

  it('writes checkpoints every saveEvery steps, keeps the newest, and the PEFT adapter at the end', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { steps: 6, saveEvery: 2, keepCheckpoints: 2 });
    await train(c);
    assert.deepEqual(listCheckpoints(c.output).map((d) => path.basename(d)), ['checkpoint-000004', 'checkpoint-000006']);
    const state = readState(path.join(c.output, 'checkpoint-000006'));
    assert.equal(state.step, 6);
    assert.deepEqual(state.config, c);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'trainable_params.safetensors', 'longlora.json', 'metrics.jsonl', 'train_config.json']) {
      assert.ok(fs.existsSync(path.join(c.output, f)), f);
    }
    const side = JSON.parse(fs.readFileSync(path.join(c.output, 'longlora.json'), 'utf8'));
    assert.equal(side.rope_scaling.factor, 4, 'seqLen 32 over max_position_embeddings 8: linear factor 4');
    const line = JSON.parse(fs.readFileSync(path.join(c.output, 'metrics.jsonl'), 'utf8').split('\n')[0]!);
    for (const k of ['step', 'loss', 'lr', 'grad_norm', 'tokens', 'tokens_per_s', 'elapsed_s']) assert.ok(k in line, k);
    // A second run into the same folder without --resume says that it starts over.
    const out = sink();
    await train({ ...c, steps: 2 }, { out });
    assert.match(out.text(), /holds checkpoints of an earlier run \(latest checkpoint-000006\); starting over — pass --resume/);
  });

  it('plain LoRA writes no trainable extras; full fine-tuning writes a model with rope_scaling', async () => {
    const dir = fresh();
    const lora = tinyConfig(dir, { mode: 'lora', steps: 2, output: path.join(dir, 'lora') });
    await train(lora);
    assert.ok(!fs.existsSync(path.join(lora.output, 'trainable_params.safetensors')));
    assert.equal(JSON.parse(fs.readFileSync(path.join(lora.output, 'adapter_config.json'), 'utf8')).modules_to_save, null);
    const full = tinyConfig(dir, { mode: 'full', steps: 2, output: path.join(dir, 'full') });
    await train(full);
    const cfg = JSON.parse(fs.readFileSync(path.join(full.output, 'model', 'config.json'), 'utf8'));
    assert.equal(cfg.rope_scaling.factor, 4);
  });

  it('a failed checkpoint write leaves the previous checkpoint intact and resumable', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { steps: 4, saveEvery: 2 });
    const realRename = fs.renameSync.bind(fs);
    const renames = mock.method(fs, 'renameSync', (from: fs.PathLike, to: fs.PathLike) => {
      if (String(to).endsWith('checkpoint-000004')) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
      realRename(from, to);
    });
    try {
      await assert.rejects(train(c), /cannot move .*checkpoint-000004/);
    } finally {
      renames.mock.restore();
    }
    assert.deepEqual(listCheckpoints(c.output).map((d) => path.basename(d)), ['checkpoint-000002']);
    assert.deepEqual(fs.readdirSync(c.output).filter((n) => n.startsWith('.')), [], 'no temporary folder left');
    assert.equal(readState(path.join(c.output, 'checkpoint-000002')).step, 2);
    const r = await train(c, { resume: true });
    assert.equal(r.steps, 4);
  });
});

describe('trainer: bad input fails before any work', () => {
  const fails = async (c: TrainConfig, parts: string[], opts: TrainerOptions = {}): Promise<void> => {
    await assert.rejects(Trainer.create(c, { out: sink(), ...opts }), (e: unknown) => {
      assert.ok(e instanceof LongLoraError, String(e));
      for (const p of parts) assert.ok(e.message.includes(p), `message lacks "${p}": ${e.message}`);
      return true;
    });
    assert.ok(!fs.existsSync(c.output) || opts.resume, 'nothing written');
    assert.equal(cpuBackend().memory().buffers, 0, 'nothing loaded');
  };

  it('tensor cores asked of a backend that has none', async () => {
    await fails(tinyConfig(fresh(), { tensorCores: true }), ['--tensor-cores', 'webgpu', 'not cpu']);
  });

  it('a group size that does not fit the form', async () => {
    const dir = fresh();
    await fails(tinyConfig(dir, { s2Form: 'roll', groupSize: 6 }), ['roll form', 'multiple of the group size', 'N=32, G=6']);
    await fails(tinyConfig(dir, { groupSize: 5 }), ['must be even', 'G=5']);
  });

  it('an output folder that is the base model\'s, or another model\'s: refused, nothing written there', async () => {
    const c = tinyConfig(fresh());
    const other = path.join(fresh(), 'other-model');
    fs.cpSync(c.model!, other, { recursive: true });
    for (const [output, part] of [[c.model!, 'is the base model\'s folder'], [other, 'holds a model (config.json), not a training run']] as const) {
      const before = fs.readdirSync(output).sort();
      await assert.rejects(Trainer.create({ ...c, output }, { out: sink() }), (e: unknown) => e instanceof LongLoraError && e.message.includes(part) && e.message.includes('choose'));
      assert.deepEqual(fs.readdirSync(output).sort(), before, `${output}: nothing written`);
    }
  });

  it('a LoRA target module that does not exist', async () => {
    await fails(tinyConfig(fresh(), { loraTargets: ['q_proj', 'query'] }), ["LoRA target 'query' matches no module", 'q_proj, k_proj']);
  });

  it('a context longer than the data', async () => {
    await fails(tinyConfig(fresh(), { seqLen: 4096 }), ['tokens.bin holds 2048 tokens', 'fewer than one training sequence of 4096']);
  });

  it('a resume from a different config, and a resume with nothing to resume', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { steps: 2, saveEvery: 2 });
    await train(c);
    await fails({ ...c, lr: 5e-3, loraR: 8 }, ['cannot resume', 'the config differs', 'loraR: checkpoint 4, now 8', 'lr: checkpoint 0.01, now 0.005'], { resume: true });
    await fails({ ...c, steps: 1 }, ['is at step 2, past --steps 1'], { resume: true });
    // at the last step: nothing to train, the end of the run (the adapter) is written again
    fs.rmSync(path.join(c.output, 'adapter_model.safetensors'));
    const out = sink();
    const t = await Trainer.create(c, { resume: true, out });
    const r = await t.run();
    t.dispose();
    assert.deepEqual([r.steps, r.stopped], [2, false]);
    assert.match(out.text(), /is at the last step \(2\); finishing the run/);
    assert.ok(fs.existsSync(path.join(c.output, 'adapter_model.safetensors')), 'the adapter written again');
    const other = tinyConfig(fresh());
    await fails(other, ['no checkpoint in'], { resume: true });
  });

  it('a damaged checkpoint: a clear error, and nothing left allocated', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { steps: 2, saveEvery: 2 });
    await train(c);
    const file = path.join(c.output, 'checkpoint-000002', 'trainable.safetensors');
    const f = SafetensorsFile.open(file);
    const keep = f.names().filter((n) => !n.endsWith('model.norm.weight')).map((n) => ({ name: n, ...f.read(n) }));
    f.close();
    writeSafetensors(file, keep);
    await fails({ ...c, steps: 4 }, ['trainable.safetensors', 'no tensor "model.norm.weight"'], { resume: true });
  });

  it('missing model or data, and a model folder that is not one', async () => {
    const dir = fresh();
    await fails({ ...tinyConfig(dir), model: null }, ['no base model', '--model']);
    await fails({ ...tinyConfig(dir), data: null }, ['no training data', '--data']);
    await fails({ ...tinyConfig(dir), model: dir }, ['config.json not found']);
  });
});

describe('Trainer: extending a model\'s own RoPE scaling', () => {
  it('--rope-type yarn on a yarn model keeps its original length and compounds its factor', async () => {
    const dir = fresh();
    const model = path.join(dir, 'yarn-model');
    fs.cpSync(goldenDir('tiny-llama-short'), model, { recursive: true });
    const cfgPath = path.join(model, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    // max_position_embeddings 8; yarn ×2 over an original 4 covers 8 positions
    fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, rope_scaling: { rope_type: 'yarn', factor: 2, original_max_position_embeddings: 4 } }));
    const base = tinyConfig(dir, { model, steps: 1, gradAccum: 1, warmupSteps: 0, seqLen: 32 });
    await assert.rejects(Trainer.create(base, { out: sink() }), (e: Error) =>
      e instanceof LongLoraError && /override of type yarn with a larger factor \(e\.g\. 8;.*--rope-type yarn\)/.test(e.message) && !/linear with factor/.test(e.message));
    const out = sink();
    const t = await Trainer.create({ ...base, ropeType: 'yarn' }, { out });
    t.dispose();
    // 32 / 8 = 4× the covered context: factor 2 × 4, over the model's own original length (not max_position_embeddings)
    assert.match(out.text(), /context: explicit RoPE scaling override: yarn ×8 \(original 4\)\./);
    const explicit = sink();
    (await Trainer.create({ ...base, ropeType: 'yarn', ropeFactor: 16 }, { out: explicit })).dispose();
    assert.match(explicit.text(), /yarn ×16 \(original 4\)/);
  });
});
