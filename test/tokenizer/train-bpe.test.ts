import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BPE_SPECIALS, bpeWords, trainBpe } from '../../src/tokenizer/train-bpe.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { LongLoraError } from '../../src/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('train-bpe');

const CORPUS = [
  'In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.',
  'And God said, Let there be light: and there was light. And God saw the light, that it was good.',
  'And the evening and the morning were the first day. 1 2 3 and 12 and 123.',
];

function write(dir: string, r: ReturnType<typeof trainBpe>): Tokenizer {
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(r.tokenizerJson));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(r.tokenizerConfig));
  return Tokenizer.load(dir);
}

describe('BPE training', () => {
  it('words are "▁"-led, as the Llama normalizer sees them', () => {
    assert.deepEqual(bpeWords('and the  earth'), ['\u2581and', '\u2581the', '\u2581', '\u2581earth']);
    assert.deepEqual(bpeWords(''), []);
  });

  it('lays out specials, bytes, characters and merges as Llama-2 does, deterministically', () => {
    const a = trainBpe(CORPUS, { vocabSize: 320 });
    const b = trainBpe([...CORPUS], { vocabSize: 320 });
    assert.deepEqual(a.vocab, b.vocab);
    assert.deepEqual(a.merges, b.merges);
    assert.deepEqual(a.vocab.slice(0, 3), [...BPE_SPECIALS]);
    assert.equal(a.vocab[3], '<0x00>');
    assert.equal(a.vocab[258], '<0xFF>');
    assert.equal(a.vocab.length, 320);
    assert.equal(new Set(a.vocab).size, a.vocab.length);
    // The most frequent pair in the corpus is merged first; digits and line breaks never are.
    for (const [x, y] of a.merges) assert.ok(!/[\d\n]/.test(x + y), `merged ${x}+${y}`);
    assert.ok(a.vocab.includes('\u2581the') && a.vocab.includes('\u2581and'));
  });

  it('writes a tokenizer.json the tokenizer library loads, which round-trips text it never saw', () => {
    const tok = write(fresh(), trainBpe(CORPUS, { vocabSize: 320 }));
    assert.equal(tok.vocabSize, 320);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    for (const text of [...CORPUS, 'Zebra € ünïcode — and 4096 tokens\n\nnew lines']) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      assert.equal(tok.decode(ids), text);
    }
    assert.equal(tok.encode('the light', { addSpecialTokens: true })[0], 1); // <s> first
    // Frequent words are single tokens after training; unseen characters fall back to bytes.
    assert.equal(tok.encode('the', { addSpecialTokens: false }).length, 1);
    assert.equal(tok.encode('€', { addSpecialTokens: false }).length, 4); // ▁ + 3 UTF-8 bytes
  });

  it('bad settings are clear errors', () => {
    assert.throws(() => trainBpe([], { vocabSize: 300 }), (e: unknown) => e instanceof LongLoraError && /empty/.test(e.message));
    assert.throws(() => trainBpe(CORPUS, { vocabSize: 100 }), (e: unknown) => e instanceof LongLoraError && /do not fit a vocabulary of 100/.test(e.message));
  });
});
