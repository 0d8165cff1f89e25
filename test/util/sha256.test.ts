import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Sha256, sha256Hex } from '../../src/util/sha256.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { ROOT } from '../helpers/fixtures.js';
import { Rng } from '../../src/tensor/random.js';

const ref = (...parts: string[]): string => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

describe('sha256 (plain JavaScript)', () => {
  it('matches node:crypto at every padding boundary, on unicode and on a long string', () => {
    const rng = new Rng(4);
    const cases = ['', 'abc', 'é✓𝄞 mixed ünïcode'];
    for (const n of [1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) cases.push('x'.repeat(n));
    cases.push(Array.from({ length: 300_000 }, () => String.fromCharCode(32 + rng.int(0x3000))).join(''));
    for (const c of cases) assert.equal(sha256Hex(c), ref(c), `length ${c.length}`);
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex('ab', 'c'), ref('ab', 'c'));
  });

  it('hashes incrementally: any split of the input into updates gives node:crypto\'s digest', () => {
    const rng = new Rng(9);
    for (const n of [0, 1, 63, 64, 65, 127, 128, 1000, 70_001]) {
      const bytes = Uint8Array.from({ length: n }, () => rng.int(256));
      const want = crypto.createHash('sha256').update(bytes).digest('hex');
      for (let trial = 0; trial < 4; trial++) {
        const h = new Sha256();
        let at = 0;
        while (at < n) {
          const len = Math.min(n - at, trial === 0 ? 1 : 1 + rng.int(trial * 50));
          h.update(bytes.subarray(at, at + len));
          at += len;
        }
        assert.equal(h.hex(), want, `${n} bytes, split ${trial}`);
      }
    }
    const h = new Sha256().update('abc');
    h.hex();
    assert.throws(() => h.update('more'), /update after digest/);
  });

  it('gives the tokenizer the content hash node:crypto gave it (cache keys stay valid)', () => {
    for (const name of ['llama-bpe', 'tiny-96']) {
      const tok = Tokenizer.load(path.join(ROOT, 'test', 'fixtures', 'tokenizer', name));
      assert.equal(tok.hash, ref(JSON.stringify(tok.json), JSON.stringify({ ...tok.config, chat_template: undefined })), name);
    }
  });
});
