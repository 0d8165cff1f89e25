/**
 * The main job's pipeline (`npm start` = `longlora train --preset quickstart`) end to end
 * on a few steps: the shipped model and data, the before/after perplexity table, the
 * adapter and the merged model — through the real command-line entry, with the preset's
 * values shortened by flags.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parseLlamaConfig } from '../../src/models/llama/config.js';
import { presetValues } from '../../src/train/presets.js';
import { tempFolders } from '../helpers/tmp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const fresh = tempFolders('main-job');

describe('the main job', () => {
  it('the preset names the shipped model and data, and extends the context 8×', () => {
    const v = presetValues('quickstart');
    const cfg = parseLlamaConfig(JSON.parse(fs.readFileSync(path.join(String(v.model), 'config.json'), 'utf8')), 'shipped model');
    assert.equal(cfg.maxPositionEmbeddings, 256);
    assert.equal(v.seqLen, 2048);
    for (const k of ['data', 'pplData']) assert.ok(fs.existsSync(String(v[k])), `${k} ${String(v[k])} is shipped`);
    const weights = fs.statSync(path.join(String(v.model), 'model.safetensors')).size;
    assert.ok(weights <= 16 * 2 ** 20, `the shipped checkpoint is ${weights} bytes`);
  });

  it('runs end to end on a few steps from another working folder', () => {
    const cwd = fresh();
    const args = [cli, 'train', '--preset', 'quickstart', '--steps', '2', '--seq-len', '512', '--batch-size', '1', '--warmup-steps', '1',
      '--ppl-seq-lens', '256,512', '--ppl-windows', '2', '--save-every', '2', '--output', 'run'];
    const p = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 300_000 });
    assert.equal(p.status, 0, p.stderr);
    const log = p.stderr;
    assert.match(log, /trainable: [\d,]+ of [\d,]+ parameters/);
    assert.match(log, /S²-Attn/);
    assert.match(log, /wrote \S*model\.gguf \(39 tensors, f16, context 512\) for llama\.cpp, and \S*model\.Modelfile for ollama/);
    const table = /perplexity by context length[^\n]*\ntokens\s+base \(own RoPE\)\s+base \+ new RoPE, no training\s+after training\n256\s+[\d.]+\s+[\d.]+\s+[\d.]+\n512\s+[\d.]+\s+[\d.]+\s+[\d.]+/.exec(log);
    assert.ok(table, `no before/after table in:\n${log.slice(-2000)}`);
    const run = path.join(cwd, 'run');
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'trainable_params.safetensors', 'ppl.json', 'metrics.jsonl', 'merged/config.json', 'merged/model.safetensors', 'merged/tokenizer.json', 'model.gguf', 'model.Modelfile']) {
      assert.ok(fs.existsSync(path.join(run, f)), `${f} written`);
    }
    const merged = JSON.parse(fs.readFileSync(path.join(run, 'merged', 'config.json'), 'utf8')) as { rope_scaling: { type?: string; rope_type?: string; factor: number } };
    assert.equal(merged.rope_scaling.factor, 2);
    const info = spawnSync(process.execPath, [cli, 'info', path.join(run, 'model.gguf')], { encoding: 'utf8' });
    assert.match(info.stdout, /llama "tiny-longlora-512", 4 layers.*\n  context 512, RoPE base 10000, scaling linear ×2/);
  });
});
