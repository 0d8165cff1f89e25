/**
 * A Hugging Face tokenizer as GGUF `tokenizer.*` metadata for llama.cpp, in one of its two
 * BPE forms:
 *
 * - SentencePiece style (`tokenizer.ggml.model = "llama"`): Llama 2, Mistral and TinyLlama
 *   tokenizers (BPE over "▁"-marked words with byte fallback). llama.cpp does not read
 *   merges for that model: it starts from single characters and repeatedly joins the
 *   adjacent pair whose joined text is a token with the highest score (leftmost on ties),
 *   and characters that are no token become <0xNN> byte tokens. So each token reachable by
 *   a merge gets the score −(rank of the first merge producing it), and llama.cpp then joins
 *   pairs in the order Hugging Face's BPE applies its merges. (A SentencePiece
 *   tokenizer.model carries such scores itself; a tokenizer.json does not.)
 * - Byte-level (`"gpt2"`): Llama 3 and GPT-2 style tokenizers, with their merges. llama.cpp
 *   splits words with a pre-tokenizer it knows by name (`tokenizer.ggml.pre`); the name is
 *   read off the tokenizer.json's split pattern (Llama 3's, Qwen 2's, GPT-2's), and any
 *   other pattern is refused with the alternative named.
 */
import { LongLoraError } from '../errors.js';
import type { GgufValue } from '../io/gguf.js';
import type { Tokenizer } from './tokenizer-core.js';

/** llama.cpp's token types (llama_token_type). */
export const TOKEN_TYPES = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

type Json = Record<string, unknown>;

const SPACE_MARK = '\u2581';

/** The steps of a normalizer or pre-tokenizer: a Sequence flattened, none for null. */
function steps(x: unknown): Json[] {
  if (x === null || typeof x !== 'object') return [];
  const j = x as Json;
  if (j.type === 'Sequence') return [...(Array.isArray(j.normalizers) ? j.normalizers : []), ...(Array.isArray(j.pretokenizers) ? j.pretokenizers : [])].flatMap(steps);
  return [j];
}

/** Whether the normalizer or pre-tokenizer puts "▁" before the text (SentencePiece's add_dummy_prefix). */
function addsSpacePrefix(json: Json): boolean {
  const norm = steps(json.normalizer).some((n) => n.type === 'Prepend' && n.prepend === SPACE_MARK);
  const pre = steps(json.pre_tokenizer).some((p) => p.type === 'Metaspace' && (p.prepend_scheme === 'always' || p.prepend_scheme === 'first' || p.add_prefix_space === true));
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
 * llama.cpp's names for the byte-level pre-tokenizers, by the split pattern they use
 * (tokenizer.json's spelling; gguf-tokenizer.ts reads the names back).
 */
export const PRE_TOKENIZERS: ReadonlyArray<[string, string]> = [
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'llama-bpe'],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'qwen2'],
];

/** llama.cpp's name for a byte-level tokenizer's pre-tokenizer, or null when it is not one it knows. */
function byteLevelPre(json: Json): string | null {
  const pre = steps(json.pre_tokenizer);
  const split = pre.filter((p) => p.type === 'Split');
  const level = pre.find((p) => p.type === 'ByteLevel');
  if (!level) return null;
  if (split.length === 0) return level.use_regex !== false && pre.length === 1 ? 'gpt-2' : null;
  if (split.length !== 1 || pre.length !== 2 || level.use_regex !== false) return null;
  const pattern = (split[0]!.pattern as Json | undefined)?.Regex;
  return PRE_TOKENIZERS.find(([re]) => re === pattern)?.[1] ?? null;
}

/** Whether the tokenizer is a byte-level BPE (a ByteLevel pre-tokenizer). */
function isByteLevel(json: Json): boolean {
  return (json.model as Json | undefined)?.type === 'BPE' && steps(json.pre_tokenizer).some((p) => p.type === 'ByteLevel');
}

/**
 * The tokenizer's GGUF metadata for a model with `modelVocab` embedding rows: tokens
 * (padded with unused "[PAD{id}]" entries up to the model's rows), their types, scores
 * (SentencePiece style) or merges (byte-level), the special token ids and flags, and the
 * chat template when there is one.
 */
export function ggufVocab(tok: Tokenizer, modelVocab: number): Array<[string, GgufValue]> {
  const json = tok.json;
  const model = (json.model ?? {}) as Json;
  const source = tok.source;
  const byteLevel = isByteLevel(json);
  const pre = byteLevel ? byteLevelPre(json) : 'default';
  if (pre === null) {
    throw new LongLoraError(`${source}: the tokenizer is a byte-level BPE whose pre-tokenizer (${JSON.stringify(json.pre_tokenizer).slice(0, 200)}) is not one ` +
      'longlora knows llama.cpp\'s name for (Llama 3\'s, Qwen 2\'s or GPT-2\'s split pattern). Export the merged Hugging Face folder (`longlora merge`) and convert it ' +
      'with llama.cpp\'s convert_hf_to_gguf.py instead');
  }
  if (!byteLevel && (model.type !== 'BPE' || model.byte_fallback !== true || !marksSpaces(json))) {
    throw new LongLoraError(`${source}: the tokenizer is ${model.type === 'BPE' ? 'a BPE without byte fallback or "▁" word marks' : `a ${String(model.type)} model`}; ` +
      'longlora writes GGUF vocabularies for SentencePiece-style BPE (over "▁" words with byte fallback: Llama 2, Mistral, TinyLlama) and byte-level BPE ' +
      '(Llama 3). Export the merged Hugging Face folder (`longlora merge`) and convert it with llama.cpp\'s convert_hf_to_gguf.py instead');
  }
  if (tok.vocabSize > modelVocab) {
    throw new LongLoraError(`${source}: the tokenizer has ${tok.vocabSize} tokens but the model has ${modelVocab} embedding rows; use the tokenizer that came with the model`);
  }
  const vocab = model.vocab as Record<string, number>;
  const tokens: string[] = new Array<string>(modelVocab);
  const types = new Int32Array(modelVocab).fill(TOKEN_TYPES.unused);
  for (const [text, id] of Object.entries(vocab)) {
    if (id < 0 || id >= modelVocab) continue;
    tokens[id] = text;
    types[id] = !byteLevel && /^<0x[0-9A-Fa-f]{2}>$/.test(text) ? TOKEN_TYPES.byte : TOKEN_TYPES.normal;
  }
  const merges = mergePairs(model, source);
  const added = Array.isArray(json.added_tokens) ? json.added_tokens as Json[] : [];
  for (const a of added) {
    const id = a.id as number;
    if (typeof id !== 'number' || id < 0 || id >= modelVocab || typeof a.content !== 'string') continue;
    tokens[id] = a.content;
    types[id] = a.special === true ? TOKEN_TYPES.control : TOKEN_TYPES.userDefined;
  }
  for (let id = 0; id < modelVocab; id++) if (tokens[id] === undefined) tokens[id] = `[PAD${id}]`;
  if (tok.unkId !== null && !byteLevel) types[tok.unkId] = TOKEN_TYPES.unknown;
  for (const id of [tok.bosId, tok.eosId]) if (id !== null) types[id] = TOKEN_TYPES.control;

  const meta: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: 'string', value: byteLevel ? 'gpt2' : 'llama' }],
    ['tokenizer.ggml.pre', { type: 'string', value: pre }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: tokens }],
  ];
  meta.push(byteLevel
    // A space inside a merge's part would split it in two; byte-level vocabularies spell it Ġ.
    ? ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', values: merges.map(([a, b]) => `${a.replaceAll(' ', '\u0120')} ${b.replaceAll(' ', '\u0120')}`) }]
    : ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', values: spmScores(tokens, types, merges) }]);
  meta.push(['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', values: types }]);
  const ids: Array<[string, number | null]> = [['bos', tok.bosId], ['eos', tok.eosId], ['unknown', tok.unkId], ['padding', tok.padId]];
  for (const [k, id] of ids) if (id !== null) meta.push([`tokenizer.ggml.${k}_token_id`, { type: 'u32', value: id }]);
  // Whether BOS / EOS are added is what encoding does (config flags or the post-processor).
  const probe = tok.encode('a');
  meta.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: tok.bosId !== null && probe[0] === tok.bosId }]);
  meta.push(['tokenizer.ggml.add_eos_token', { type: 'bool', value: tok.eosId !== null && probe.at(-1) === tok.eosId }]);
  if (!byteLevel) meta.push(['tokenizer.ggml.add_space_prefix', { type: 'bool', value: addsSpacePrefix(json) }]);
  if (tok.chatTemplate) meta.push(['tokenizer.chat_template', { type: 'string', value: tok.chatTemplate.source }]);
  return meta;
}

/**
 * SentencePiece-style scores: a token produced by a merge scores −(rank of its first
 * merge), so llama.cpp joins pairs in merge order; single characters, bytes and specials
 * score 0; longer tokens no merge produces (Hugging Face's BPE never outputs them) score
 * below all merged ones; unused padding −1000 (llama.cpp's converter's value).
 */
function spmScores(tokens: readonly string[], types: Int32Array, merges: ReadonlyArray<[string, string]>): Float32Array {
  const rank = new Map<string, number>();
  merges.forEach(([a, b], i) => { if (!rank.has(a + b)) rank.set(a + b, i); });
  const lowest = -(rank.size + 1);
  return Float32Array.from(tokens, (t, id) => {
    if (types[id] === TOKEN_TYPES.unused) return -1000;
    const r = rank.get(t);
    if (r !== undefined && types[id] === TOKEN_TYPES.normal) return -r;
    return [...t].length > 1 && types[id] === TOKEN_TYPES.normal ? lowest : 0;
  });
}
