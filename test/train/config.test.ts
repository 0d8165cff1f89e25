import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { applyValues, coerce, defaultTrainConfig, describeConfig, readConfigFile, resumeConflicts } from '../../src/train/config.js';
import { parseTrainArgs } from '../../src/cli/commands/train.js';
import { trainingMask } from '../../src/train/trainer.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('config');

describe('training config', () => {
  it('defaults follow the official recipe', () => {
    const c = defaultTrainConfig();
    assert.deepEqual([c.mode, c.attention, c.s2Form, c.groupRatio, c.loraR, c.loraAlpha, c.loraDropout], ['longlora', 's2', 'segmented', 0.25, 8, 16, 0]);
    assert.deepEqual(c.loraTargets, ['q_proj', 'k_proj', 'v_proj', 'o_proj']);
    assert.deepEqual([c.lr, c.warmupSteps, c.schedule, c.weightDecay, c.maxGradNorm], [2e-5, 20, 'constant', 0, 1]);
  });

  it('converts and checks values by type', () => {
    assert.equal(coerce('seqLen', '8192', 'x'), 8192);
    assert.equal(coerce('lr', '1e-4', 'x'), 1e-4);
    assert.equal(coerce('rslora', 'true', 'x'), true);
    assert.deepEqual(coerce('loraTargets', 'q_proj, v_proj', 'x'), ['q_proj', 'v_proj']);
    assert.equal(coerce('groupSize', 'auto', 'x'), null);
    // every option shown as 'auto' when unset takes 'auto' back (a path named auto is ./auto)
    for (const key of ['tokenizer', 'chatTemplate', 'extras']) assert.equal(coerce(key, 'auto', 'x'), null, key);
    assert.equal(coerce('seqLen', '8k', 'x'), 8192, 'an int written as Nk, as lengths are');
    throwsLL(() => coerce('seqLen', '8q', 'command line'), 'command line: option --seq-len must be a number', '"8q"');
    throwsLL(() => coerce('lr', '1k', 'command line'), 'must be a number', '"1k"'); // only integers take k
    throwsLL(() => coerce('seqLen', 'x', 'run.yaml'), "run.yaml: option 'seqLen' must be a number");
    throwsLL(() => coerce('seqLen', 1.5, 'f'), 'must be an integer');
    throwsLL(() => coerce('mode', 'qlora', 'f'), 'must be one of longlora, lora, full');
    throwsLL(() => coerce('lr', -1, 'f'), 'must be ≥ 0');
    throwsLL(() => coerce('seqLen', null, 'f'), 'cannot be null');
  });

  it('the S²-Attn group from the ratio is the nearest even size where the form shifts by half a group; --group-size is taken as given', () => {
    const c = defaultTrainConfig();
    const group = (o: Partial<typeof c>): unknown => { const m = trainingMask({ ...c, ...o }); return m.kind === 's2' ? m.group : m.kind; };
    assert.equal(group({ seqLen: 8192 }), 2048);
    assert.equal(group({ seqLen: 250 }), 62, '62.5 → 62, not the odd 63 the shift cannot halve');
    assert.equal(group({ seqLen: 260 }), 66, '65 → 66');
    assert.equal(group({ seqLen: 260, s2Form: 'short' }), 65, 'the short form does not shift');
    throwsLL(() => trainingMask({ ...c, seqLen: 260, groupSize: 65 }), 'the group size must be even; got G=65');
  });

  it('a test set left unset is shown as none, and none unsets it', () => {
    assert.match(describeConfig(defaultTrainConfig()), /^  pplData: none$/m);
    assert.match(describeConfig(defaultTrainConfig()), /^  groupSize: auto$/m);
    assert.equal(coerce('pplData', 'none', 'command line'), null);
    assert.equal(coerce('pplData', 'null', 'command line'), null);
    assert.equal(coerce('pplData', 'heldout.bin', 'command line'), 'heldout.bin');
    const c = parseTrainArgs(['--preset', 'quickstart', '--ppl-data', 'none'])!.config;
    assert.equal(c.pplData, null);
  });

  it('unknown keys are errors with a suggestion', () => {
    const dir = fresh();
    const file = path.join(dir, 'run.yaml');
    fs.writeFileSync(file, 'seqLen: 1024\nlearningRate: 1e-4\n');
    throwsLL(() => applyValues(defaultTrainConfig(), readConfigFile(file), file), file, "unknown option 'learningRate'");
    throwsLL(() => applyValues(defaultTrainConfig(), { sequenceLength: 3 }, 'x'), "did you mean 'seqLen'");
  });

  it('file values, then flags: flags win; bool flags have --no- forms', () => {
    const dir = fresh();
    const file = path.join(dir, 'run.json');
    fs.writeFileSync(file, JSON.stringify({ seqLen: 1024, lr: 1e-4, checkpointing: true }));
    const r = parseTrainArgs(['--config', file, '--lr', '3e-4', '--no-checkpointing', '--lora-targets', 'all-linear', '--resume'])!;
    assert.equal(r.config.seqLen, 1024);
    assert.equal(r.config.lr, 3e-4);
    assert.equal(r.config.checkpointing, false);
    assert.deepEqual(r.config.loraTargets, ['all-linear']);
    assert.equal(r.resume, true);
    assert.throws(() => parseTrainArgs(['--sequence-length', '4']), /unknown option '--sequence-length' for longlora train/);
    throwsLL(() => parseTrainArgs(['--checkpointing', '--no-checkpointing']), 'contradict');
  });

  it('a resume may change bookkeeping, not the optimisation', () => {
    const a = defaultTrainConfig();
    assert.deepEqual(resumeConflicts(a, { ...a, steps: 5000, saveEvery: 10, output: 'elsewhere' }), []);
    assert.deepEqual(resumeConflicts(a, { ...a, seqLen: 16384 }), ['seqLen: checkpoint 8192, now 16384']);
  });
});
