/**
 * Passkey retrieval: the prompt equals the official script's byte for byte (NumPy's seeded
 * draws reproduced), the ladder and calibration, and the retrieval check on a model that
 * can pass it (a hand-built induction circuit) and on one that cannot (the random tiny model).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';
import { NumpyRandomState } from '../../src/eval/numpy-random.js';
import { fillerCharsFor, passkeyEval, passkeyLadder, passkeyPrompt } from '../../src/eval/passkey.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { tinyModel } from '../helpers/model.js';
import { sink } from '../helpers/train.js';
import { TINY_96 } from '../tokenizer/fixtures.js';
import { inductionModel } from './induction-model.js';

// Written by the official generate_prompt_landmark(300, 3) (numpy 1.24, legacy seeding).
const OFFICIAL_300_SEED3 = 'There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.\n' +
  'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. The grass is green. The sky is blue. The sun is yellow. Here w\n' +
  'The pass key is 11514. Remember it. 11514 is the pass key.\n' +
  'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. The grass is green. The sky is blue. The sun is yellow. He\n' +
  'What is the pass key? The pass key is';

describe('passkey prompts', () => {
  it('NumPy legacy randint reproduced (seed, masked rejection)', () => {
    // numpy.random.seed(s); randint(0, 3072), randint(1, 50000) for s = 0..4
    const want = [[2732, 43568], [1061, 33004], [2575, 6638], [1898, 1689], [1146, 8367]];
    want.forEach(([p, k], s) => { const r = new NumpyRandomState(s); assert.deepEqual([r.randint(0, 3072), r.randint(1, 50000)], [p, k]); });
    const r = new NumpyRandomState(2 ** 32 - 1);
    assert.deepEqual([0, 1, 2, 3, 4].map(() => r.randint(0, 7)), [3, 2, 4, 4, 0]);
    assert.equal(r.randint(0, 2 ** 31), 1202606294);
  });

  it('the prompt equals the official one byte for byte', () => {
    const p = passkeyPrompt(300, 3);
    assert.equal(p.prompt, OFFICIAL_300_SEED3);
    assert.equal(p.passkey, '11514');
    // generate_prompt_landmark(60000, 7): key 49690, 60247 characters, sha256 as below
    const big = passkeyPrompt(60000, 7);
    assert.equal(big.passkey, '49690');
    assert.equal(big.prompt.length, 60247);
    assert.equal(crypto.createHash('sha256').update(big.prompt).digest('hex'), 'fa9a9e33c66bfe2d84921e73c2806a57c775958eddc12d61ecb727c093f4c126');
  });

  it('lengths in tokens: the official ladder and the calibrated filler', () => {
    assert.deepEqual(passkeyLadder(5000, 1000), [1000, 2000, 3000, 4000, 5000]);
    const tok = Tokenizer.load(TINY_96);
    for (const target of [200, 1000]) {
      const n = fillerCharsFor(target, tok);
      const got = tok.encode(passkeyPrompt(n, 0).prompt).length;
      assert.ok(Math.abs(got - target) <= target * 0.05 + 5, `${target} tokens asked, ${got} measured`);
    }
    assert.throws(() => fillerCharsFor(10, tok), /shorter than the prompt without filler/);
  });
});

describe('passkey retrieval', () => {
  const tok = Tokenizer.load(TINY_96);

  it('a model that retrieves passes every trial; its answers are the keys', async () => {
    const model = inductionModel();
    const out = sink();
    const res = await passkeyEval(model, tok, { lengths: [200, 400], trials: 3, out });
    for (const r of res) {
      assert.equal(r.accuracy, 1, JSON.stringify(r.trials));
      for (const t of r.trials) assert.equal(t.answer, t.passkey);
      assert.ok(Math.abs(r.meanTokens - r.targetTokens) < r.targetTokens * 0.1);
    }
    assert.deepEqual(res[0]!.trials.map((t) => t.seed), [0, 1, 2], 'trial i uses seed i, as the official script');
    assert.match(out.text(), /trial 6\/6/);
    model.dispose();
  });

  it('a model that cannot retrieve fails', async () => {
    const { model } = await tinyModel();
    const res = await passkeyEval(model, tok, { lengths: [200], trials: 3, out: sink() });
    assert.equal(res[0]!.accuracy, 0);
    assert.ok(res[0]!.trials.every((t) => !t.passed && t.answer !== t.passkey));
    model.dispose();
  });
});
