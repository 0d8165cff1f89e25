/**
 * Tokenizers rebuilt from GGUF `tokenizer.ggml.*` metadata (gguf-tokenizer.ts), the way a
 * file llama.cpp converted carries them: the tiny model is exported without its Hugging
 * Face tokenizer, once with the shipped SentencePiece-style tokenizer and once with
 * byte-level BPE fixtures in the layouts of Llama 3, Qwen 2 and GPT-2, and the tokenizer
 * rebuilt from the file must give the original's ids on varied text (and decode them back),
 * with the same specials, vocabulary size and chat template. Scrambled scores or merges
 * must change the ids (so the texts exercise the merge order), llama.cpp's default
 * pre-tokenizer splits as its four patterns do, and what cannot be rebuilt is refused,
 * naming --tokenizer.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { exportGguf } from '../../src/models/llama/gguf.js';
import { ggufTokenizer } from '../../src/models/llama/gguf-load.js';
import { readGgufHeader } from '../../src/io/gguf-read.js';
import { LLAMA_CPP_DEFAULT_SPLITS, ggufTokenizerFiles, tokenizerOfGguf } from '../../src/tokenizer/gguf-tokenizer.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import type { Tokenizer as CoreTokenizer } from '../../src/tokenizer/tokenizer-core.js';
import { ROOT } from '../helpers/fixtures.js';
import { byteChars, mergeByRank, toByteLevel, trainByteMerges } from '../helpers/byte-level.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('gguf-tokenizer');
const TINY = path.join(ROOT, 'models', 'tiny-longlora');
const ROWS = 2048; // the tiny model's embedding rows
const CHAT = '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}';

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Llama 3's pattern as JavaScript runs it (no inline case-insensitive group), for training the fixture's merges. */
const JS_LLAMA3_SPLIT = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Text both kinds of tokenizer must agree on: spaces, line breaks, unicode, emoji, digits, contractions. */
const TEXTS = [
  'The quick brown fox jumps over the lazy dog.',
  '  leading spaces,  double  spaces and trailing  ',
  'new\nlines\n\n\tand tabs\r\nand CRLF',
  'Naïve café — 3½ “quotes” 😀 👩‍👩‍👧 中文 日本語 Ünïcödé',
  'digits 1234567890 3.14159 2024-01-01, 42nd',
  "It's they're WE'LL I'D ain't",
  "spaced , out . words ! do n't", // decoding cleans these spaces up or not, as the tokenizer says
  'Zyzzyva zyzzyva', // a word the Llama 3 fixture has as a token that no merge makes
  'x',
  ' ',
  '',
];

/** Held-out text of the tiny model: 60 lines for the checks, the start for training fixture merges. */
let heldout: string[] = [];
before(() => {
  const ids = new Uint16Array(fs.readFileSync(path.join(TINY, 'data', 'heldout.bin')).buffer.slice(0, 2 * 30000));
  heldout = Tokenizer.load(TINY).decode([...ids], { skipSpecialTokens: true }).split('\n').filter((l) => l.trim() !== '');
});

/** Exports the tiny model with the tokenizer of `tokDir` but not its Hugging Face files; the file's metadata and path. */
async function exported(tokDir: string): Promise<{ meta: Record<string, unknown>; file: string }> {
  const file = path.join(fresh(), 'model.gguf');
  exportGguf(TINY, file, { embedTokenizer: false, modelfile: false, tokenizerDir: tokDir });
  return { meta: (await readGgufHeader(file)).metadata, file };
}

/** Asserts `got` encodes (with and without specials) and decodes `texts` as `want` does. */
function sameIds(got: CoreTokenizer, want: CoreTokenizer, texts: readonly string[]): void {
  for (const t of texts) {
    const ids = want.encode(t);
    assert.deepEqual(got.encode(t), ids, JSON.stringify(t));
    assert.deepEqual(got.encode(t, { addSpecialTokens: false }), want.encode(t, { addSpecialTokens: false }), JSON.stringify(t));
    assert.equal(got.decode(ids), want.decode(ids), `decode ${JSON.stringify(t)}`);
    assert.equal(got.decode(ids, { skipSpecialTokens: true }), want.decode(ids, { skipSpecialTokens: true }), `decode ${JSON.stringify(t)}`);
  }
}

function sameSpecials(got: CoreTokenizer, want: CoreTokenizer): void {
  assert.deepEqual([got.bosId, got.eosId, got.unkId, got.padId, got.vocabSize], [want.bosId, want.eosId, want.unkId, want.padId, want.vocabSize]);
  assert.equal(got.chatTemplate?.source, want.chatTemplate?.source);
}

/** How many of `texts` `tok` encodes differently from `want`. */
function differing(tok: CoreTokenizer, want: CoreTokenizer, texts: readonly string[]): number {
  return texts.filter((t) => tok.encode(t).join() !== want.encode(t).join()).length;
}

describe('GGUF tokenizer rebuilt: SentencePiece style ("llama")', () => {
  /** The shipped tokenizer with a chat template added. */
  function tinyTokenizer(): string {
    const dir = fresh();
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: CHAT }));
    return dir;
  }

  it('the tiny model\'s tokenizer: the same ids and text back on held-out lines and odd text, the same specials, size and chat template', async () => {
    const dir = tinyTokenizer();
    const { meta, file } = await exported(dir);
    assert.equal(meta['tokenizer.ggml.model'], 'llama');
    assert.equal(meta['tokenizer.huggingface.json'], undefined, 'no Hugging Face tokenizer in the file');
    const want = Tokenizer.load(dir);
    const got = ggufTokenizer(await readGgufHeader(file), file)!;
    assert.match(got.source, /model\.gguf \(tokenizer\.ggml vocabulary\)$/);
    assert.ok(got.hasFastPath, 'Llama 2\'s layout, so long texts take the word-by-word path');
    const specials = ['<s>hello</s> <unk> in text', 'a<s>b', '</s>'];
    sameIds(got, want, [...TEXTS, ...specials, ...heldout.slice(0, 60), heldout.slice(0, 40).join('\n')]);
    sameSpecials(got, want);
    assert.equal(got.encode('hi')[0], 1, 'BOS added as the file says');
    assert.equal(got.chatTemplate!.render([{ role: 'user', content: 'hi' }]), want.chatTemplate!.render([{ role: 'user', content: 'hi' }]));
  });

  it('another SentencePiece-style tokenizer (the llama-bpe fixture, 411 tokens padded to the model\'s rows): the same ids', async () => {
    const dir = path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'llama-bpe');
    const { meta } = await exported(dir);
    const got = tokenizerOfGguf(meta, 'fixture')!;
    const want = Tokenizer.load(dir);
    sameIds(got, want, [...TEXTS, ...heldout.slice(0, 40)]);
    assert.equal(got.vocabSize, ROWS, 'the unused [PAD] rows are tokens of the file');
    assert.deepEqual([got.bosId, got.eosId, got.unkId], [want.bosId, want.eosId, want.unkId]);
  });

  it('the merge order comes from the scores: reversed or flat scores give other ids', async () => {
    const { meta } = await exported(TINY);
    const want = Tokenizer.load(TINY);
    const texts = heldout.slice(0, 30);
    assert.equal(differing(tokenizerOfGguf(meta, 'as written')!, want, texts), 0);
    const scores = meta['tokenizer.ggml.scores'] as number[];
    const reversed = tokenizerOfGguf({ ...meta, 'tokenizer.ggml.scores': scores.map((s) => -s) }, 'reversed')!;
    assert.ok(differing(reversed, want, texts) > texts.length / 2, 'reversed scores should change most lines');
    const flat = tokenizerOfGguf({ ...meta, 'tokenizer.ggml.scores': scores.map(() => 0) }, 'flat')!;
    assert.ok(differing(flat, want, texts) > 0, 'flat scores should change some lines');
  });

  it('without add_space_prefix no "▁" is put first; add_bos_token false adds no BOS; u64 ids as bigint', async () => {
    const { meta } = await exported(TINY);
    const files = ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.add_space_prefix': false, 'tokenizer.ggml.add_bos_token': false, 'tokenizer.ggml.bos_token_id': 1n }, 'x')!;
    const tok = Tokenizer.fromJson(files.json, files.config, 'x');
    const want = Tokenizer.load(TINY);
    assert.equal(tok.bosId, 1);
    assert.deepEqual(tok.encode(' the cat'), want.encode('the cat', { addSpecialTokens: false }), 'no BOS, and " the" is "▁the" without a prefix');
    assert.notDeepEqual(tok.encode('the cat'), want.encode('the cat', { addSpecialTokens: false }), 'no prefix: "the" is not "▁the"');
    assert.equal(tok.decode(tok.encode(' the cat')), ' the cat', 'and no space stripped on decoding');
  });
});

const CHARS = byteChars();

type Layout = 'llama3' | 'qwen2' | 'gpt2';

/**
 * A byte-level tokenizer folder in `layout`'s tokenizer.json layout: 256 byte tokens, the
 * merges, then <|begin_of_text|> / <|end_of_text|> (special), <|custom|> (not special) and,
 * with `fill`, reserved special tokens up to the model's rows (as Llama 3 has them).
 */
function byteLevelFolder(layout: Layout, merges: readonly string[], fill: boolean): string {
  const vocab: Record<string, number> = {};
  CHARS.forEach((c, b) => { vocab[c] = b; });
  let next = 256;
  for (const m of merges) if (vocab[m.replace(' ', '')] === undefined) vocab[m.replace(' ', '')] = next++;
  if (layout === 'llama3') vocab['ĠZyzzyva'] = next++; // taken whole, as Llama 3's BPE does (ignore_merges), though no merge makes it
  const added = (content: string, special: boolean): Record<string, unknown> =>
    ({ id: next++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  const addedTokens = [added('<|begin_of_text|>', true), added('<|end_of_text|>', true), added('<|custom|>', false)];
  while (fill && next < ROWS) addedTokens.push(added(`<|reserved_special_token_${next}|>`, true));
  const bos = addedTokens[0]!.id as number;
  const split = (re: string, trim: boolean): Record<string, unknown> => ({
    type: 'Sequence',
    pretokenizers: [{ type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: trim, use_regex: false }],
  });
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: layout === 'llama3' ? split(LLAMA3_SPLIT, true) : layout === 'qwen2' ? split(QWEN2_SPLIT, false)
      : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: layout !== 'llama3' ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false } : {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [bos], tokens: ['<|begin_of_text|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: layout === 'llama3', vocab, merges },
  };
  const config = {
    ...(layout === 'llama3' ? { bos_token: '<|begin_of_text|>' } : {}), eos_token: '<|end_of_text|>', chat_template: CHAT,
    clean_up_tokenization_spaces: layout !== 'qwen2',
  };
  const dir = fresh();
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

describe('GGUF tokenizer rebuilt: byte-level BPE ("gpt2")', () => {
  let merges: string[] = [];
  before(() => { merges = trainByteMerges(heldout.slice(60).join('\n'), new RegExp(JS_LLAMA3_SPLIT, 'gu'), 500); });
  const specials = ['<|begin_of_text|>hi<|custom|>there<|end_of_text|>', 'a<|reserved_special_token_1000|>b', '<|custom|>'];

  it('Llama 3 layout (llama-bpe, reserved specials up to the model\'s rows): the same ids and text back, specials, size and chat template', async () => {
    assert.equal(merges.length, 500);
    const dir = byteLevelFolder('llama3', merges, true);
    const { meta, file } = await exported(dir);
    assert.deepEqual([meta['tokenizer.ggml.model'], meta['tokenizer.ggml.pre']], ['gpt2', 'llama-bpe']);
    const want = Tokenizer.load(dir);
    assert.equal(want.vocabSize, ROWS);
    const got = ggufTokenizer(await readGgufHeader(file), file)!;
    sameIds(got, want, [...TEXTS, ...specials, ...heldout.slice(0, 60), heldout.slice(0, 40).join('\n')]);
    sameSpecials(got, want);
    assert.equal(got.encode('hi')[0], want.bosId);
    assert.deepEqual(got.encode(' Zyzzyva', { addSpecialTokens: false }), [got.tokenToId('ĠZyzzyva')]);
    const para = heldout.slice(0, 20).join('\n');
    assert.ok(got.encode(para).length < para.length / 2, `the merges do merge (${got.encode(para).length} tokens for ${para.length} characters)`);
    assert.equal(got.isSpecial(got.tokenToId('<|custom|>')!), false, 'a user-defined token is no special one');
    assert.equal(got.isSpecial(got.tokenToId('<|reserved_special_token_1000|>')!), true);
  });

  it('Qwen 2 and GPT-2 layouts (qwen2, gpt-2; no BOS; padded to the model\'s rows): the same ids and text back', async () => {
    for (const layout of ['qwen2', 'gpt2'] as const) {
      const dir = byteLevelFolder(layout, merges, false);
      const { meta } = await exported(dir);
      assert.equal(meta['tokenizer.ggml.pre'], layout === 'qwen2' ? 'qwen2' : 'gpt-2');
      const want = Tokenizer.load(dir);
      const got = tokenizerOfGguf(meta, layout)!;
      sameIds(got, want, [...TEXTS, ...specials.slice(0, 1), ...heldout.slice(0, 40)]);
      assert.deepEqual([got.bosId, got.eosId, got.vocabSize], [null, want.eosId, ROWS], layout);
      assert.equal(got.chatTemplate?.source, CHAT);
    }
  });

  it('the merges are used in their order: reversed merges give other ids', async () => {
    const { meta } = await exported(byteLevelFolder('qwen2', merges, false));
    const want = Tokenizer.load(byteLevelFolder('qwen2', merges, false));
    const texts = heldout.slice(0, 30);
    const reversed = tokenizerOfGguf({ ...meta, 'tokenizer.ggml.merges': [...(meta['tokenizer.ggml.merges'] as string[])].reverse() }, 'reversed')!;
    assert.ok(differing(reversed, want, texts) > texts.length / 2, 'reversed merges should change most lines');
  });

  it('llama.cpp\'s default pre-tokenizer ("default" or none): its four patterns, each splitting the pieces of the one before', async () => {
    const { meta } = await exported(byteLevelFolder('gpt2', merges, false));
    const tokens = meta['tokenizer.ggml.tokens'] as string[];
    const id = new Map(tokens.map((t, i) => [t, i]));
    const rank = new Map((meta['tokenizer.ggml.merges'] as string[]).map((g, i) => [g, i]));
    const split = (text: string): string[] => LLAMA_CPP_DEFAULT_SPLITS.reduce((pieces, re) => pieces.flatMap((s) => {
      const out: string[] = [];
      let at = 0;
      for (const m of s.matchAll(new RegExp(re, 'gu'))) {
        if (m.index > at) out.push(s.slice(at, m.index));
        if (m[0] !== '') out.push(m[0]);
        at = m.index + m[0].length;
      }
      if (at < s.length) out.push(s.slice(at));
      return out;
    }), [text]);
    const bpe = (text: string): number[] => split(text).flatMap((word) => mergeByRank(toByteLevel(word), rank).map((x) => id.get(x)!));
    const texts = [...TEXTS, 'a+b=c; x<=y || $5 ~ ^hat 12345678 (parens) [brackets] {braces} "q" it\'s', ...heldout.slice(0, 30)];
    const { ['tokenizer.ggml.pre']: _, ...unnamed } = meta;
    for (const m of [{ ...meta, 'tokenizer.ggml.pre': 'default' }, unnamed]) {
      const tok = tokenizerOfGguf(m, 'default')!;
      for (const t of texts) assert.deepEqual(tok.encode(t), bpe(t), JSON.stringify(t));
    }
    assert.ok(differing(tokenizerOfGguf({ ...meta, 'tokenizer.ggml.pre': 'default' }, 'default')!, tokenizerOfGguf(meta, 'gpt-2')!, texts) > 0, 'it is not GPT-2\'s');
  });
});

describe('GGUF tokenizer rebuilt: what it refuses', () => {
  it('other vocabularies and pre-tokenizers are refused naming --tokenizer; no vocabulary at all is null; an export\'s own tokenizer still wins', async () => {
    const { meta, file } = await exported(byteLevelFolder('llama3', ['Ġ t', 'h e'], false));
    for (const kind of ['bert', 't5', 'rwkv']) throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.model': kind }, 'f.gguf'), `f.gguf: its vocabulary is llama.cpp's "${kind}" tokenizer`, '--tokenizer DIR');
    throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.pre': 'deepseek-llm' }, 'f.gguf'), '"deepseek-llm" pre-tokenizer', 'llama-bpe, llama3, llama-v3, qwen2, gpt-2, default', '--tokenizer DIR');
    throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.merges': undefined }, 'f.gguf'), 'needs tokenizer.ggml.merges', '--tokenizer DIR');
    throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.tokens': undefined }, 'f.gguf'), 'no tokenizer.ggml.tokens', '--tokenizer DIR');
    throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.model': 'llama' }, 'f.gguf'), 'needs tokenizer.ggml.scores', '--tokenizer DIR');
    throwsLL(() => ggufTokenizerFiles({ ...meta, 'tokenizer.ggml.token_type': [1, 2] }, 'f.gguf'), 'tokenizer.ggml.token_type is not an array of 2048 numbers', '--tokenizer DIR');
    for (const none of [undefined, 'none', 'no_vocab']) assert.equal(tokenizerOfGguf({ ...meta, 'tokenizer.ggml.model': none }, 'f.gguf'), null);
    const header = await readGgufHeader(file);
    assert.equal(ggufTokenizer(header, file, { rebuild: false }), null);
    assert.match(ggufTokenizer(header, file)!.source, /\(tokenizer\.ggml vocabulary\)$/);
    const own = path.join(fresh(), 'own.gguf');
    exportGguf(TINY, own, { modelfile: false });
    assert.match(ggufTokenizer(await readGgufHeader(own), own)!.source, /\(embedded tokenizer\)$/);
  });
});
