/**
 * Byte-level BPE vocabularies (Llama 3, GPT-2 style) as GGUF metadata: the tokens as the
 * vocabulary spells them, merges as "a b" strings in rank order, token types, llama.cpp's
 * pre-tokenizer name read off the split pattern, BOS/EOS as encoding adds them, and a
 * clear refusal for a pattern llama.cpp has no name for. (The SentencePiece form is tested
 * with the model export, test/models/gguf.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { ggufVocab } from '../../src/tokenizer/gguf-vocab.js';
import type { GgufValue } from '../../src/io/gguf.js';
import { byteChars, mergeByRank, toByteLevel, trainByteMerges } from '../helpers/byte-level.js';
import { throwsLL } from '../helpers/errors.js';

/** The same pattern as JavaScript can run it (llama.cpp also spells the case-insensitive group out). */
const JS_LLAMA3_SPLIT = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const MERGES = ['Ġ t', 'h e', 'Ġt he', 'i n'];

/** A small Llama-3-layout tokenizer.json: 256 byte tokens, four merges, two specials and one plain added token. */
function byteLevelJson(pre: unknown): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  byteChars().forEach((c, b) => { vocab[c] = b; });
  MERGES.forEach((m, i) => { vocab[m.replace(' ', '')] = 256 + i; });
  const added = (id: number, content: string, special: boolean): Record<string, unknown> =>
    ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  return {
    version: '1.0', truncation: null, padding: null, normalizer: null,
    added_tokens: [added(260, '<|begin_of_text|>', true), added(261, '<|end_of_text|>', true), added(262, '<|custom|>', false)],
    pre_tokenizer: pre,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [260], tokens: ['<|begin_of_text|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges: MERGES },
  };
}

const LLAMA3_PRE = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
};

const CONFIG = { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', chat_template: '{{ messages[0].content }}' };

function asMap(meta: Array<[string, GgufValue]>): Map<string, unknown> {
  return new Map(meta.map(([k, v]) => [k, v.type === 'array' ? Array.from(v.values as ArrayLike<unknown>) : v.value]));
}

describe('GGUF vocabulary: byte-level BPE', () => {
  it('Llama 3 layout: gpt2 model, llama-bpe pre-tokenizer, tokens, merges, types, specials', () => {
    const tok = Tokenizer.fromJson(byteLevelJson(LLAMA3_PRE), CONFIG);
    assert.deepEqual(tok.encode(' the in'), [260, 258, 32, 259], 'the fixture tokenizes as a byte-level BPE (BOS, Ġthe, Ġ, in)');
    const m = asMap(ggufVocab(tok, 264));
    assert.equal(m.get('tokenizer.ggml.model'), 'gpt2');
    assert.equal(m.get('tokenizer.ggml.pre'), 'llama-bpe');
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    assert.equal(tokens.length, 264);
    assert.deepEqual([tokens[65], tokens[32], tokens[256], tokens[258], tokens[260], tokens[262], tokens[263]], ['A', 'Ġ', 'Ġt', 'Ġthe', '<|begin_of_text|>', '<|custom|>', '[PAD263]']);
    assert.deepEqual(m.get('tokenizer.ggml.merges'), MERGES);
    const types = m.get('tokenizer.ggml.token_type') as number[];
    assert.deepEqual([types[0], types[258], types[260], types[261], types[262], types[263]], [1, 1, 3, 3, 4, 5]);
    assert.equal(m.has('tokenizer.ggml.scores'), false);
    assert.equal(m.has('tokenizer.ggml.add_space_prefix'), false);
    assert.deepEqual([m.get('tokenizer.ggml.bos_token_id'), m.get('tokenizer.ggml.eos_token_id'), m.get('tokenizer.ggml.add_bos_token'), m.get('tokenizer.ggml.add_eos_token')],
      [260, 261, true, false]);
    assert.equal(m.get('tokenizer.chat_template'), CONFIG.chat_template);
  });

  it('GPT-2 layout (a ByteLevel pre-tokenizer with its own regex) is gpt-2', () => {
    const tok = Tokenizer.fromJson(byteLevelJson({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }), CONFIG);
    assert.equal(asMap(ggufVocab(tok, 263)).get('tokenizer.ggml.pre'), 'gpt-2');
  });

  it('a split pattern llama.cpp has no name for is refused, naming the alternative', () => {
    const pre = structuredClone(LLAMA3_PRE);
    pre.pretokenizers[0]!.pattern = { Regex: '\\s+|\\S+' };
    const tok = Tokenizer.fromJson(byteLevelJson(pre), CONFIG);
    throwsLL(() => ggufVocab(tok, 264), 'byte-level BPE whose pre-tokenizer', 'convert_hf_to_gguf.py');
    throwsLL(() => ggufVocab(Tokenizer.fromJson(byteLevelJson(LLAMA3_PRE), CONFIG), 100), 'has 263 tokens but the model has 100 embedding rows');
  });

  it('llama.cpp\'s byte-level BPE (llama-bpe: Llama 3\'s split, whole words first, merges by rank) over the exported vocabulary tokenizes as Hugging Face does', () => {
    // Learn 300 merges on some text, in Llama 3's layout (ignore_merges), then tokenize other text both ways.
    const split = new RegExp(JS_LLAMA3_SPLIT, 'gu');
    const corpus = 'In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. ' +
      'And the Spirit of God moved upon the face of the waters. And God said, Let there be light: and there was light. It\'s 1234 o\'clock, they\'re here.\n\n';
    const merges = trainByteMerges(corpus.repeat(3), split, 300);
    const json = byteLevelJson(LLAMA3_PRE);
    const vocab = (json.model as { vocab: Record<string, number> }).vocab;
    for (const k of Object.keys(vocab)) if (vocab[k]! >= 256) delete vocab[k];
    merges.forEach((m, i) => { vocab[m.replace(' ', '')] ??= 256 + i; });
    const size = 256 + merges.length;
    (json.model as { merges: string[] }).merges = merges;
    json.added_tokens = (json.added_tokens as Array<Record<string, unknown>>).map((a, i) => ({ ...a, id: size + i }));
    const pp = json.post_processor as { special_tokens: Record<string, { ids: number[] }> };
    pp.special_tokens['<|begin_of_text|>']!.ids = [size];
    const tok = Tokenizer.fromJson(json, CONFIG);
    const m = asMap(ggufVocab(tok, size + 3));
    assert.equal(m.get('tokenizer.ggml.pre'), 'llama-bpe');
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    const rank = new Map((m.get('tokenizer.ggml.merges') as string[]).map((g, i) => [g, i]));
    const id = new Map(tokens.map((t, i) => [t, i]));

    const llamaCppBpe = (text: string): number[] => (text.match(split) ?? []).flatMap((word) => {
      const sym = toByteLevel(word);
      const whole = id.get(sym.join(''));
      if (whole !== undefined) return [whole]; // ignore_merges: a word that is a token is taken whole
      return mergeByRank(sym, rank).map((x) => id.get(x)!);
    });
    const texts = ['And God saw the light, that it was good: and God divided the light from the darkness.',
      'Let the waters under the heaven be gathered together unto one place; they\'re 56789 strong!', '  spaces\tand\nnewlines\n\n  ', 'Ünïcödé ✓ 😀 text'];
    for (const text of texts) assert.deepEqual(llamaCppBpe(text), tok.encode(text, { addSpecialTokens: false }), text);
    assert.ok(tok.encode(texts[0]!, { addSpecialTokens: false }).length < texts[0]!.length / 2, 'the merges do merge');
  });
});

