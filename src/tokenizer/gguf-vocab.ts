/**
 * A Hugging Face tokenizer as GGUF `tokenizer.*` metadata, for llama.cpp's SentencePiece-
 * style tokenizer (`tokenizer.ggml.model = "llama"`): the layout of Llama 2, Mistral and
 * TinyLlama tokenizers (BPE over "▁"-marked words with byte fallback).
 *
 * llama.cpp does not read merges for that model: it starts from single characters and
 * repeatedly joins the adjacent pair whose joined text is a token with the highest score
 * (leftmost on ties), and characters that are no token become <0xNN> byte tokens. So each
 * token reachable by a merge gets the score −(rank of the first merge producing it), and
 * llama.cpp then joins pairs in the order Hugging Face's BPE applies its merges. (A
 * SentencePiece tokenizer.model carries such scores itself; a tokenizer.json does not.)
 *
 * Byte-level BPE tokenizers (Llama 3, GPT-2 style) are refused with the alternative named.
 */
import { LongLoraError } from '../errors.js';
import type { GgufValue } from '../io/gguf.js';
import type { Tokenizer } from './tokenizer-core.js';

/** llama.cpp's token types (llama_token_type). */
export const TOKEN_TYPES = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

type Json = Record<string, unknown>;

const SPACE_MARK = '\u2581';

/** Whether the normalizer or pre-tokenizer puts "▁" before the text (SentencePiece's add_dummy_prefix). */
function addsSpacePrefix(json: Json): boolean {
  const parts = (x: unknown): Json[] => {
    if (x === null || typeof x !== 'object') return [];
    const j = x as Json;
    if (j.type === 'Sequence') return [...(Array.isArray(j.normalizers) ? j.normalizers : []), ...(Array.isArray(j.pretokenizers) ? j.pretokenizers : [])].flatMap(parts);
    return [j];
  };
  const norm = parts(json.normalizer).some((n) => n.type === 'Prepend' && n.prepend === SPACE_MARK);
  const pre = parts(json.pre_tokenizer).some((p) => p.type === 'Metaspace' && (p.prepend_scheme === 'always' || p.prepend_scheme === 'first' || p.add_prefix_space === true));
  return norm || pre;
}

/** Whether the tokenizer marks spaces with "▁" (a Replace normalizer or a Metaspace pre-tokenizer). */
function marksSpaces(json: Json): boolean {
  const text = JSON.stringify([json.normalizer ?? null, json.pre_tokenizer ?? null]);
  return text.includes(SPACE_MARK);
}

/** The merge list as pairs, from either tokenizer.json spelling ("a b" or ["a", "b"]). */
function mergePairs(model: Json, source: string): Array<[string, string]> {
  const merges = model.merges;
  if (!Array.isArray(merges)) throw new LongLoraError(`${source}: tokenizer.json's BPE model has no merges list`);
  return merges.map((m, i) => {
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    if (typeof m === 'string') {
      const at = m.indexOf(' ', 1);
      if (at > 0) return [m.slice(0, at), m.slice(at + 1)];
    }
    throw new LongLoraError(`${source}: tokenizer.json merge ${i} (${JSON.stringify(m)}) is neither "a b" nor ["a", "b"]`);
  });
}

/**
 * The tokenizer's GGUF metadata for a model with `modelVocab` embedding rows: tokens
 * (padded with unused "[PAD{id}]" entries up to the model's rows), scores, types, the
 * special token ids and flags, and the chat template when there is one.
 */
export function ggufVocab(tok: Tokenizer, modelVocab: number): Array<[string, GgufValue]> {
  const json = tok.json;
  const model = (json.model ?? {}) as Json;
  const source = tok.source;
  if (model.type !== 'BPE' || model.byte_fallback !== true || !marksSpaces(json)) {
    const kind = model.type === 'BPE' ? 'a byte-level BPE (Llama 3 / GPT-2 style)' : `a ${String(model.type)} model`;
    throw new LongLoraError(`${source}: the tokenizer is ${kind}; longlora writes GGUF vocabularies for SentencePiece-style tokenizers ` +
      '(BPE over "▁" words with byte fallback: Llama 2, Mistral, TinyLlama). Export the merged Hugging Face folder (`longlora merge`) and convert it ' +
      'with llama.cpp\'s convert_hf_to_gguf.py instead');
  }
  if (tok.vocabSize > modelVocab) {
    throw new LongLoraError(`${source}: the tokenizer has ${tok.vocabSize} tokens but the model has ${modelVocab} embedding rows; use the tokenizer that came with the model`);
  }
  const vocab = model.vocab as Record<string, number>;
  const tokens: string[] = new Array<string>(modelVocab);
  const types = new Int32Array(modelVocab).fill(TOKEN_TYPES.unused);
  const scores = new Float32Array(modelVocab);
  for (const [text, id] of Object.entries(vocab)) {
    if (id < 0 || id >= modelVocab) continue;
    tokens[id] = text;
    types[id] = /^<0x[0-9A-Fa-f]{2}>$/.test(text) ? TOKEN_TYPES.byte : TOKEN_TYPES.normal;
  }
  const rank = new Map<string, number>();
  mergePairs(model, source).forEach(([a, b], i) => { if (!rank.has(a + b)) rank.set(a + b, i); });
  // Tokens no merge produces (single characters, bytes, specials) score 0; a merged
  // token outranks the ones produced by later merges. Tokens longer than one character
  // that no merge produces cannot come out of Hugging Face's BPE; they score below all.
  const lowest = -(rank.size + 1);
  for (let id = 0; id < modelVocab; id++) {
    const t = tokens[id];
    if (t === undefined) continue;
    const r = rank.get(t);
    scores[id] = r !== undefined ? -r : [...t].length > 1 && types[id] === TOKEN_TYPES.normal ? lowest : 0;
  }
  const added = Array.isArray(json.added_tokens) ? json.added_tokens as Json[] : [];
  for (const a of added) {
    const id = a.id as number;
    if (typeof id !== 'number' || id < 0 || id >= modelVocab || typeof a.content !== 'string') continue;
    tokens[id] = a.content;
    scores[id] = 0;
    types[id] = a.special === true ? TOKEN_TYPES.control : TOKEN_TYPES.userDefined;
  }
  for (let id = 0; id < modelVocab; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      scores[id] = -1000;
    }
  }
  if (tok.unkId !== null) types[tok.unkId] = TOKEN_TYPES.unknown;
  for (const id of [tok.bosId, tok.eosId]) if (id !== null) types[id] = TOKEN_TYPES.control;

  const meta: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', values: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', values: types }],
  ];
  const ids: Array<[string, number | null]> = [['bos', tok.bosId], ['eos', tok.eosId], ['unknown', tok.unkId], ['padding', tok.padId]];
  for (const [k, id] of ids) if (id !== null) meta.push([`tokenizer.ggml.${k}_token_id`, { type: 'u32', value: id }]);
  const cfg = tok.config;
  meta.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: cfg.add_bos_token !== false }]);
  meta.push(['tokenizer.ggml.add_eos_token', { type: 'bool', value: cfg.add_eos_token === true }]);
  meta.push(['tokenizer.ggml.add_space_prefix', { type: 'bool', value: addsSpacePrefix(json) }]);
  if (tok.chatTemplate) meta.push(['tokenizer.chat_template', { type: 'string', value: tok.chatTemplate.source }]);
  return meta;
}
