import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { writeTokenFile } from '../../src/data/tokens.js';
import { pretrainCommand } from '../../src/cli/commands/pretrain.js';
import { LongLoraError } from '../../src/errors.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { DEFAULT_ARCHITECTURE, parameterCount, pretrain, pretrainConfig, pretrainTrainConfig } from '../../src/train/pretrain.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { Rng } from '../../src/tensor/random.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink } from '../helpers/train.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const tokDir = path.join(root, 'models', 'tiny-longlora');
const fresh = tempFolders('pretrain');
const arch = { ...DEFAULT_ARCHITECTURE, hiddenSize: 16, numLayers: 1, numHeads: 2, numKvHeads: 2, intermediateSize: 32, context: 32 };

describe('pretrain', () => {
  it('counts parameters as the tensors hold them', () => {
    const cfg = pretrainConfig(DEFAULT_ARCHITECTURE, Tokenizer.load(tokDir), 'float16');
    assert.equal(cfg.vocabSize, 2048);
    // 2 × 2048 × 128 (embeddings, untied) + 4 × (4 × 128² + 3 × 128 × 384 + 2 × 128) + 128
    assert.equal(parameterCount(cfg), 2 * 2048 * 128 + 4 * (4 * 128 * 128 + 3 * 128 * 384 + 2 * 128) + 128);
  });

  it('trains from random weights and releases the model in the asked dtype with its tokenizer', async () => {
    const dir = fresh();
    const rng = new Rng(3);
    const data = path.join(dir, 'train.bin');
    writeTokenFile(data, Array.from({ length: 4000 }, (_, i) => (i % 7 === 0 ? 1 : 3 + rng.int(40))), 'uint16');
    const out = path.join(dir, 'model');
    const train = pretrainTrainConfig({ data, output: path.join(dir, 'run'), seqLen: 32, steps: 6, batchSize: 2, warmupSteps: 1, evalEvery: 0, saveEvery: 6, backend: 'cpu' });
    const progress = sink();
    const r = await pretrain({ arch, tokenizer: tokDir, train, modelOut: out, saveDtype: 'f16', out: progress });
    assert.equal(r.steps, 6);
    assert.ok(Number.isFinite(r.lastLoss!));
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.max_position_embeddings, 32);
    assert.equal(cfg.vocab_size, 2048);
    assert.equal(cfg.hidden_size, 16);
    const f = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      assert.equal(f.info('model.embed_tokens.weight').dtype, 'F16');
    } finally {
      f.close();
    }
    for (const t of ['tokenizer.json', 'tokenizer_config.json']) assert.ok(fs.existsSync(path.join(out, t)));
    const losses = fs.readFileSync(path.join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss?: number }).filter((l) => l.loss !== undefined);
    assert.ok(losses.at(-1)!.loss! < losses[0]!.loss!, 'the loss falls');
  });

  it('the command takes --precision: f16 activations train with a loss scale', async () => {
    const dir = fresh();
    const data = path.join(dir, 'train.bin');
    const rng = new Rng(5);
    writeTokenFile(data, Array.from({ length: 2000 }, () => 3 + rng.int(40)), 'uint16');
    await pretrainCommand(['--tokenizer', tokDir, '--data', data, '--out', path.join(dir, 'model'), '--output', path.join(dir, 'run'),
      '--hidden-size', '16', '--layers', '1', '--heads', '2', '--intermediate-size', '32', '--context', '32',
      '--steps', '2', '--batch-size', '2', '--warmup-steps', '1', '--eval-every', '0', '--backend', 'cpu', '--precision', 'f16']);
    const rows = fs.readFileSync(path.join(dir, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const steps = rows.filter((r) => r.loss !== undefined);
    assert.equal(steps.length, 2);
    for (const r of steps) assert.equal(r.loss_scale, 2 ** 16, 'f16 steps log their loss scale');
    await assert.rejects(pretrainCommand(['--tokenizer', tokDir, '--data', data, '--out', dir, '--precision', 'f8']),
      (e: unknown) => e instanceof LongLoraError && /precision/.test(e.message) && /bf16/.test(e.message));
  });

  it('bad architecture and modes are clear errors', async () => {
    const tok = Tokenizer.load(tokDir);
    assert.throws(() => pretrainConfig({ ...arch, hiddenSize: 15 }, tok, 'float32'), (e: unknown) => e instanceof LongLoraError && /not a multiple of --heads/.test(e.message));
    const dir = fresh();
    const train = pretrainTrainConfig({ data: 'x.bin', output: dir, mode: 'lora' });
    await assert.rejects(pretrain({ arch, tokenizer: tokDir, train, modelOut: dir, saveDtype: 'f32', out: sink() }), (e: unknown) => e instanceof LongLoraError && /every weight/.test(e.message));
    const long = pretrainTrainConfig({ data: 'x.bin', output: dir, seqLen: 64 });
    await assert.rejects(pretrain({ arch, tokenizer: tokDir, train: long, modelOut: dir, saveDtype: 'f32', out: sink() }), (e: unknown) => e instanceof LongLoraError && /longer than the model's context 32/.test(e.message));
  });
});
