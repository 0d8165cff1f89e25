/**
 * Tokenizers: a table of text → pieces → ids → text on the committed Llama-style fixture
 * (byte fallback, special tokens, unicode), BOS/EOS rules, the vocabulary check against a
 * model, chat templates, streaming decoding, and adding a PAD token.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { StreamDecoder } from '../../src/tokenizer/stream.js';
import { chatTemplateFrom } from '../../src/tokenizer/chat-files.js';
import { LLAMA_BPE, TINY_96 } from './fixtures.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('tokenizer');

/** The vocabulary as written in tokenizer.json, read independently of the tokenizer library. */
function vocabOf(dir: string): Map<string, number> {
  const j = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
  return new Map(Object.entries(j.model.vocab));
}

const S = '\u2581';
/** text → the pieces a Llama-2 tokenizer.json gives (after <s>), by hand from the merges and UTF-8. */
const TABLE: Array<[string, string[]]> = [
  ['Hello world!', [`${S}He`, 'llo', `${S}wor`, 'l', 'd', '!']],
  ['The pass key is 4821.', [`${S}The`, `${S}pass`, `${S}key`, `${S}is`, S, '4', '8', '2', '1', '.']], // digits split
  ['café', [S, 'c', 'a', 'f', 'é']], // é is a vocabulary piece
  ['naïve', [S, 'n', 'a', '<0xC3>', '<0xAF>', 'v', 'e']], // ï = C3 AF by byte fallback
  ['日本', [S, '<0xE6>', '<0x97>', '<0xA5>', '<0xE6>', '<0x9C>', '<0xAC>']], // 3-byte characters
  ['🦙', [S, '<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']], // 4 bytes, outside the BMP
  ['a</s>b', [`${S}a`, '</s>', `${S}b`]], // a special token inside text is one id; "▁" after it (legacy Llama)
  [' lead', [S, S, 'le', 'ad']], // a leading space survives
  ['line one\nline two', [`${S}l`, 'in', 'e', S, 'on', 'e', '<0x0A>', 'l', 'in', 'e', `${S}t`, 'w', 'o']],
];

describe('tokenizer.json (Llama-2 style fixture)', () => {
  const tok = Tokenizer.load(LLAMA_BPE);
  const vocab = vocabOf(LLAMA_BPE);

  for (const [text, pieces] of TABLE) {
    it(`${JSON.stringify(text)} → ${pieces.length} pieces → ids → text`, () => {
      const ids = tok.encode(text);
      const want = [1, ...pieces.map((p) => { const id = vocab.get(p) ?? (p === '</s>' ? 2 : undefined); assert.ok(id !== undefined, p); return id; })];
      assert.deepEqual(ids, want, `pieces ${ids.map((i) => tok.idToToken(i)).join('|')}`);
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text.replace('</s>', ' ')); // a skipped </s> leaves the space of its "▁b"
    });
  }

  it('special tokens: BOS added by default, none on request; ids and size', () => {
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.padId, null);
    assert.equal(tok.vocabSize, vocab.size);
    assert.deepEqual(tok.encode('hi'), [1, ...tok.encode('hi', { addSpecialTokens: false })]);
    assert.deepEqual(tok.encode(''), [1]);
    assert.deepEqual(tok.encode('', { addSpecialTokens: false }), []);
    assert.equal(tok.decode([1, ...tok.encode('Hello', { addSpecialTokens: false }), 2]), '<s> Hello</s>');
    assert.equal(tok.decode([]), '');
    assert.ok(tok.isSpecial(2) && !tok.isSpecial(tok.encode('a', { addSpecialTokens: false })[0]!));
  });

  it('the vocabulary check against a model: too few rows, or another family', () => {
    tok.checkModel(411, 'm');
    tok.checkModel(416, 'm'); // padded embedding tables are fine
    throwsLL(() => tok.checkModel(96, 'tiny-llama'), 'has 411 tokens but the model tiny-llama has 96 embedding rows', '--tokenizer');
    throwsLL(() => tok.checkModel(32000, 'llama-2-7b'), 'do not belong together');
    Tokenizer.load(TINY_96).checkModel(96, 'tiny-llama');
  });

  it('a missing or broken tokenizer.json is a clear error', () => {
    const dir = fresh();
    throwsLL(() => Tokenizer.load(dir), 'no tokenizer.json', '--tokenizer');
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    throwsLL(() => Tokenizer.load(dir), 'tokenizer.json is not valid JSON');
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "Nope"}}');
    throwsLL(() => Tokenizer.load(dir), 'cannot build the tokenizer');
    // An id past the others (a gap in the ids): it loads, and the model check says what is wrong.
    const j = JSON.parse(fs.readFileSync(path.join(LLAMA_BPE, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
    j.model.vocab['zzgap'] = 99999;
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
    fs.copyFileSync(path.join(LLAMA_BPE, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
    const gap = Tokenizer.load(dir);
    assert.equal(gap.vocabSize, 100000);
    throwsLL(() => gap.checkModel(411, 'm'), 'has 100000 tokens but the model m has 411 embedding rows');
    // Two tokens with one id (as the Rust library, accepted): the size is still the largest id + 1.
    delete j.model.vocab['zzgap'];
    j.model.vocab['zzdup'] = 5;
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
    assert.equal(Tokenizer.load(dir).vocabSize, 411);
  });

  it('adding [PAD]: a new special id at the end, saved and loaded again', () => {
    const { tokenizer, id } = tok.withAddedPad();
    assert.equal(id, 411);
    assert.equal(tokenizer.vocabSize, 412);
    assert.equal(tokenizer.padId, 411);
    assert.deepEqual(tokenizer.encode('a[PAD]', { addSpecialTokens: false }).slice(-1), [411]);
    assert.notEqual(tokenizer.hash, tok.hash);
    const dir = fresh();
    tokenizer.save(dir);
    const back = Tokenizer.load(dir);
    assert.equal(back.padId, 411);
    assert.equal(back.hash, tokenizer.hash);
    throwsLL(() => tokenizer.withAddedPad(), 'already in the vocabulary');
  });
});

describe('chat templates', () => {
  const conv = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello' },
    { role: 'user', content: 'Key?' },
  ];
  const expected = '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Key? [/INST]';

  it('from tokenizer_config.json and from chat_template.jinja, as transformers renders Llama-2 chat', () => {
    for (const dir of [LLAMA_BPE, TINY_96]) {
      const tok = Tokenizer.load(dir);
      assert.ok(tok.chatTemplate, dir);
      assert.equal(tok.chatTemplate.render(conv, { bosToken: tok.bosToken, eosToken: tok.eosToken }), expected);
    }
    assert.match(Tokenizer.load(TINY_96).chatTemplate!.where, /chat_template\.jinja$/);
    assert.equal(chatTemplateFrom('llama2').render(conv, { bosToken: '<s>', eosToken: '</s>' }), expected);
  });

  it('template errors name the template', () => {
    const tok = Tokenizer.load(TINY_96);
    assert.throws(() => tok.chatTemplate!.render([{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }]), /chat_template\.jinja: .*roles must alternate/);
    throwsLL(() => chatTemplateFrom('/nonexistent.jinja'), 'not found');
  });
});

describe('streaming decoding', () => {
  const tok = Tokenizer.load(LLAMA_BPE);
  for (const text of ['Hello world! The pass key is 4821.', 'naïve 日本 🦙 café', 'line one\nline two']) {
    it(`token by token equals decoding at once: ${JSON.stringify(text)}`, () => {
      const ids = tok.encode(text, { addSpecialTokens: false });
      const s = new StreamDecoder(tok);
      const parts = ids.map((id) => s.push(id));
      parts.push(s.flush());
      assert.equal(parts.join(''), tok.decode(ids));
      assert.ok(parts.every((p) => !p.includes('\uFFFD')), `no partial characters: ${JSON.stringify(parts)}`);
      assert.ok(parts.filter((p) => p === '').length > 0 || !/[^\x00-\x7f]/.test(text), 'multi-byte characters were held back');
    });
  }

  it('a continuation keeps the space before its first word (the decoder starts from the prompt\'s last tokens)', () => {
    const prompt = tok.encode('In the beginning');
    for (const text of [' of the earth', ' 日本 🦙', '\nnext line', ', then']) {
      const all = tok.encode(`In the beginning${text}`);
      assert.deepEqual(all.slice(0, prompt.length), prompt, 'the prompt\'s tokens start the longer text\'s');
      const ids = all.slice(prompt.length); // as a model would generate them
      const whole = tok.decode([...prompt, ...ids], { skipSpecialTokens: true });
      const want = whole.slice(tok.decode(prompt, { skipSpecialTokens: true }).length);
      const s = new StreamDecoder(tok, true, prompt);
      const out = ids.map((i) => s.push(i)).join('') + s.flush();
      assert.equal(out, want, JSON.stringify(text));
      assert.deepEqual(s.tokens(), ids, 'tokens() holds the pushed ids only');
      if (text.startsWith(' ')) assert.ok(out.startsWith(' '), JSON.stringify(out));
      // without the context the first word loses its space
      const bare = new StreamDecoder(tok);
      if (text === ' of the earth') assert.equal(ids.map((i) => bare.push(i)).join('') + bare.flush(), 'of the earth');
    }
  });

  it('special tokens are skipped; the space after a first token is kept', () => {
    const s = new StreamDecoder(tok);
    const out = [1, ...tok.encode('Hello world', { addSpecialTokens: false }), 2].map((i) => s.push(i)).join('') + s.flush();
    assert.equal(out, 'Hello world');
  });
});

describe('the word-by-word fast path for long texts', () => {
  it('gives the library\'s ids on adversarial text (spaces, newlines, unicode, special tokens)', async () => {
    const { Rng } = await import('../../src/tensor/random.js');
    const rng = new Rng(5);
    const atoms = ['the', 'grass', 'is', 'green', ' ', '  ', '   ', '\n', '\t', '.', 'é', '日本', '🦙', '</s>', '<s>', 'x', 'Here', 'key', '4821', ' \n '];
    for (const dir of [LLAMA_BPE, TINY_96]) {
      const tok = Tokenizer.load(dir);
      assert.ok(tok.hasFastPath, dir);
      for (let n = 0; n < 60; n++) {
        const parts = Array.from({ length: 20 + rng.int(200) }, () => atoms[rng.int(atoms.length)]!);
        const text = parts.join(rng.int(2) ? ' ' : '');
        assert.ok(text.length > 64);
        assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), tok.libraryEncode(text), JSON.stringify(text));
      }
    }
  });
});
