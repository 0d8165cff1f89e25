/**
 * A tokenizer from a GGUF file's `tokenizer.ggml.*` metadata: the reverse of gguf-vocab.ts,
 * so that a file llama.cpp converted (which carries no Hugging Face tokenizer.json) runs
 * without --tokenizer. The vocabulary is rebuilt as the tokenizer.json and
 * tokenizer_config.json Hugging Face ships for such models, in llama.cpp's two BPE forms:
 *
 * - SentencePiece style (`tokenizer.ggml.model = "llama"`: Llama 2, Mistral, TinyLlama):
 *   Llama 2's layout (a "▁" prefix and spaces as "▁", BPE with <0xNN> byte fallback, the
 *   decoder undoing both). The file has scores, not merges; the merges are derived from
 *   them as Hugging Face's SentencePiece converter does (generate_merges): every split of a
 *   token into two tokens is a merge giving it, ordered by the token's score, highest first
 *   (ties: longer left piece, longer right piece, then token id and the pieces' ids). With
 *   the scores gguf-vocab.ts writes (−rank of the first merge giving a token) that is the
 *   original merge order again.
 * - Byte-level (`"gpt2"`: Llama 3, Qwen 2, GPT-2): tokens and merges as they are, the split
 *   pattern of the pre-tokenizer `tokenizer.ggml.pre` names (Llama 3's, Qwen 2's and GPT-2's,
 *   as gguf-vocab.ts names them; llama.cpp's own four-pattern default for "default" or no
 *   name), GPT-2's byte-to-character mapping, and merges only where a word is no token as
 *   a whole for Llama 3's pre-tokenizer, as llama.cpp does.
 *
 * Control and unknown tokens become special added tokens and user-defined ones plain added
 * tokens (both split out of text before BPE, as llama.cpp does); BOS / EOS are added as
 * `tokenizer.ggml.add_bos_token` / `add_eos_token` say (llama.cpp's defaults without them);
 * `tokenizer.chat_template` is the chat template. Other vocabularies (BERT's WordPiece, T5's
 * unigram, RWKV) and pre-tokenizers are refused with --tokenizer DIR named as the fix.
 */
import { LongLoraError } from '../errors.js';
import { HF_TOKENIZER_CONFIG_KEY, HF_TOKENIZER_KEY } from '../models/llama/gguf-layout.js';
import { PRE_TOKENIZERS, TOKEN_TYPES } from './gguf-vocab.js';
import { Tokenizer, type Json } from './tokenizer-core.js';

const SPACE_MARK = '\u2581';

/** The fix every refusal names. */
const FIX = 'pass --tokenizer DIR (a folder with the model\'s Hugging Face tokenizer.json)';

/** llama.cpp's pre-tokenizer for files that name none (or "default"): its regexes, each splitting the pieces of the one before. */
export const LLAMA_CPP_DEFAULT_SPLITS: readonly string[] = [
  '[\\p{P}\\$\\+<=>\\^~\\|]+',
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
  '\\p{N}+',
  '[0-9][0-9][0-9]',
];

const splitPattern = (name: string): string => PRE_TOKENIZERS.find(([, n]) => n === name)![0];

/** How a byte-level vocabulary is pre-tokenized and decoded, by llama.cpp's pre-tokenizer name. */
interface ByteLevelLayout {
  /** The split patterns, applied one after the other; null: GPT-2's, inside the ByteLevel step. */
  splits: string[] | null;
  /** A word that is a token is taken whole (llama.cpp's ignore_merges). */
  ignoreMerges: boolean;
  /** Whether llama.cpp adds BOS when the file does not say. */
  addBos: boolean;
  /** clean_up_tokenization_spaces (llama.cpp's clean_spaces). */
  cleanSpaces: boolean;
}

const LLAMA3: ByteLevelLayout = { splits: [splitPattern('llama-bpe')], ignoreMerges: true, addBos: true, cleanSpaces: true };
const BYTE_LEVEL: Record<string, ByteLevelLayout> = {
  'llama-bpe': LLAMA3,
  llama3: LLAMA3,
  'llama-v3': LLAMA3,
  qwen2: { splits: [splitPattern('qwen2')], ignoreMerges: false, addBos: false, cleanSpaces: false },
  'gpt-2': { splits: null, ignoreMerges: false, addBos: false, cleanSpaces: true },
  default: { splits: [...LLAMA_CPP_DEFAULT_SPLITS], ignoreMerges: false, addBos: false, cleanSpaces: true },
};

/** A tokenizer.json and tokenizer_config.json rebuilt from GGUF metadata. */
export interface GgufTokenizerFiles {
  json: Json;
  config: Json;
}

/** Typed reads of the metadata, with the key named when a value has the wrong type. */
function reader(meta: Record<string, unknown>, source: string) {
  const bad = (key: string, what: string): LongLoraError =>
    new LongLoraError(`${source}: metadata ${key} is not ${what}; the file's vocabulary is damaged, ${FIX}`);
  const array = (key: string): unknown[] | undefined => {
    const v = meta[key];
    if (v === undefined) return undefined;
    if (Array.isArray(v)) return v;
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<unknown>);
    throw bad(key, 'an array');
  };
  return {
    string(key: string): string | undefined {
      const v = meta[key];
      if (v !== undefined && typeof v !== 'string') throw bad(key, 'a string');
      return v;
    },
    bool(key: string): boolean | undefined {
      const v = meta[key];
      if (v !== undefined && typeof v !== 'boolean') throw bad(key, 'a boolean');
      return v;
    },
    id(key: string): number | undefined {
      const v = meta[key];
      if (v === undefined) return undefined;
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw bad(key, 'an integer');
      return n;
    },
    strings(key: string): string[] | undefined {
      const v = array(key);
      if (v !== undefined && !v.every((x) => typeof x === 'string')) throw bad(key, 'an array of strings');
      return v as string[] | undefined;
    },
    numbers(key: string, length: number): number[] | undefined {
      const v = array(key)?.map((x) => (typeof x === 'bigint' ? Number(x) : x));
      if (v !== undefined && (!v.every((x) => typeof x === 'number') || v.length !== length)) throw bad(key, `an array of ${length} numbers (one per token)`);
      return v as number[] | undefined;
    },
  };
}

const addedToken = (id: number, content: string, special: boolean): Json =>
  ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });

/** Hugging Face's TemplateProcessing that adds `bos` before and `eos` after each sequence (null: neither). */
function template(bos: [string, number] | null, eos: [string, number] | null): Json | null {
  if (!bos && !eos) return null;
  const seq = (id: 'A' | 'B', typeId: number): Json[] => [
    ...(bos ? [{ SpecialToken: { id: bos[0], type_id: typeId } }] : []),
    { Sequence: { id, type_id: typeId } },
    ...(eos ? [{ SpecialToken: { id: eos[0], type_id: typeId } }] : []),
  ];
  const specials: Json = {};
  for (const t of [bos, eos]) if (t) specials[t[0]] = { id: t[0], ids: [t[1]], tokens: [t[0]] };
  return { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens: specials };
}

/**
 * Hugging Face's merges for a SentencePiece vocabulary (transformers' generate_merges with
 * scores): each split of a normal or user-defined token into two tokens, by the token's
 * score (highest first), then longer left and right pieces first, then token id, then the
 * pieces' ids.
 */
export function sentencePieceMerges(tokens: readonly string[], scores: readonly number[], types: readonly number[], ids: ReadonlyMap<string, number>): Array<[string, string]> {
  const merges: Array<{ l: string; r: string; score: number; ll: number; rl: number }> = [];
  for (let t = 0; t < tokens.length; t++) {
    if ((types[t] !== TOKEN_TYPES.normal && types[t] !== TOKEN_TYPES.userDefined) || ids.get(tokens[t]!) !== t) continue;
    const chars = Array.from(tokens[t]!);
    const local: Array<{ l: string; r: string; li: number; ri: number; ll: number; rl: number }> = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join('');
      const r = chars.slice(i).join('');
      const li = ids.get(l);
      const ri = ids.get(r);
      if (li !== undefined && ri !== undefined) local.push({ l, r, li, ri, ll: i, rl: chars.length - i });
    }
    local.sort((a, b) => a.li - b.li || a.ri - b.ri);
    for (const m of local) merges.push({ l: m.l, r: m.r, score: scores[t]!, ll: m.ll, rl: m.rl });
  }
  merges.sort((a, b) => b.score - a.score || b.ll - a.ll || b.rl - a.rl); // stable: ties keep the order above
  return merges.map((m) => [m.l, m.r]);
}

/**
 * The tokenizer.json and tokenizer_config.json that GGUF metadata (a header's `metadata`)
 * describes; null when it has no vocabulary (no `tokenizer.ggml.model`, or "none" /
 * "no_vocab"). `source` names the file in messages.
 */
export function ggufTokenizerFiles(meta: Record<string, unknown>, source: string): GgufTokenizerFiles | null {
  const read = reader(meta, source);
  const kind = read.string('tokenizer.ggml.model');
  if (kind === undefined || kind === 'none' || kind === 'no_vocab') return null;
  if (kind !== 'llama' && kind !== 'gpt2') {
    throw new LongLoraError(`${source}: its vocabulary is llama.cpp's "${kind}" tokenizer; longlora rebuilds only the BPE ones ("llama": SentencePiece style, ` +
      `as Llama 2 and Mistral; "gpt2": byte-level, as Llama 3 and Qwen 2), so ${FIX}`);
  }
  const tokens = read.strings('tokenizer.ggml.tokens');
  if (!tokens || tokens.length === 0) throw new LongLoraError(`${source}: tokenizer.ggml.model is "${kind}" but there is no tokenizer.ggml.tokens list; ${FIX}`);
  const types = read.numbers('tokenizer.ggml.token_type', tokens.length) ?? tokens.map(() => TOKEN_TYPES.normal);

  // Token text → id; a text listed twice keeps its first id (a tokenizer.json vocabulary is a map).
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => { if (!ids.has(t)) ids.set(t, i); });
  const vocab: Record<string, number> = {};
  for (const [t, i] of ids) vocab[t] = i;
  const added = tokens.flatMap((t, i) => {
    const special = types[i] === TOKEN_TYPES.control || types[i] === TOKEN_TYPES.unknown;
    return (special || types[i] === TOKEN_TYPES.userDefined) && t !== '' && ids.get(t) === i ? [addedToken(i, t, special)] : [];
  });
  const special = (key: string): [string, number] | null => {
    const id = read.id(`tokenizer.ggml.${key}_token_id`);
    return id !== undefined && id >= 0 && id < tokens.length ? [tokens[id]!, id] : null;
  };
  const [bos, eos, unk, pad] = [special('bos'), special('eos'), special('unknown'), special('padding')];
  const config: Json = {};
  for (const [key, t] of [['bos_token', bos], ['eos_token', eos], ['unk_token', unk], ['pad_token', pad]] as const) if (t) config[key] = t[0];
  const chat = read.string('tokenizer.chat_template');
  if (chat !== undefined) config.chat_template = chat;
  const addEos = read.bool('tokenizer.ggml.add_eos_token') ?? false;

  if (kind === 'llama') {
    const scores = read.numbers('tokenizer.ggml.scores', tokens.length);
    if (!scores) throw new LongLoraError(`${source}: a SentencePiece-style vocabulary ("llama") needs tokenizer.ggml.scores to order its merges, and it has none; ${FIX}`);
    const prefix = read.bool('tokenizer.ggml.add_space_prefix') ?? true;
    const addBos = read.bool('tokenizer.ggml.add_bos_token') ?? true;
    const replace = { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK };
    const json: Json = {
      version: '1.0', truncation: null, padding: null,
      added_tokens: added,
      normalizer: { type: 'Sequence', normalizers: prefix ? [{ type: 'Prepend', prepend: SPACE_MARK }, replace] : [replace] },
      pre_tokenizer: null,
      post_processor: template(addBos ? bos : null, addEos ? eos : null),
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
          ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: 'BPE', dropout: null, unk_token: unk?.[0] ?? null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true,
        byte_fallback: tokens.some((t) => /^<0x[0-9A-Fa-f]{2}>$/.test(t)), ignore_merges: false,
        vocab, merges: sentencePieceMerges(tokens, scores, types, ids),
      },
    };
    Object.assign(config, { tokenizer_class: 'LlamaTokenizer', add_bos_token: addBos, add_eos_token: addEos, clean_up_tokenization_spaces: false });
    return { json, config };
  }

  const pre = read.string('tokenizer.ggml.pre') ?? 'default';
  const layout = BYTE_LEVEL[pre];
  if (!layout) {
    throw new LongLoraError(`${source}: its byte-level vocabulary uses llama.cpp's "${pre}" pre-tokenizer, which longlora does not rebuild ` +
      `(it does ${Object.keys(BYTE_LEVEL).join(', ')}); ${FIX}`);
  }
  const merges = read.strings('tokenizer.ggml.merges');
  if (!merges) throw new LongLoraError(`${source}: a byte-level vocabulary ("gpt2") needs tokenizer.ggml.merges, and it has none; ${FIX}`);
  const pairs = merges.map((m, i): [string, string] => {
    const at = m.indexOf(' ', 1); // as llama.cpp splits them
    if (at < 0) throw new LongLoraError(`${source}: tokenizer.ggml.merges entry ${i} (${JSON.stringify(m)}) is not "a b"; ${FIX}`);
    return [m.slice(0, at), m.slice(at + 1)];
  });
  const addBos = read.bool('tokenizer.ggml.add_bos_token') ?? layout.addBos;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: layout.splits === null };
  const json: Json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: layout.splits === null ? byteLevel : {
      type: 'Sequence',
      pretokenizers: [...layout.splits.map((re) => ({ type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false })), byteLevel],
    },
    post_processor: template(addBos ? bos : null, addEos ? eos : null),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
      ignore_merges: layout.ignoreMerges, vocab, merges: pairs,
    },
  };
  config.clean_up_tokenization_spaces = layout.cleanSpaces;
  return { json, config };
}

/**
 * The tokenizer files of a GGUF file's metadata (`file` names it): the Hugging Face
 * tokenizer an export of this project embeds (with `tokenizer.chat_template` as its chat
 * template), else, unless `rebuild` is false, the one rebuilt from the `tokenizer.ggml.*`
 * vocabulary (ggufTokenizerFiles); null when there is neither.
 */
export function ggufTokenizerJson(meta: Record<string, unknown>, file: string, opts: { rebuild?: boolean } = {}): { json: Json; config: Record<string, unknown>; source: string } | null {
  const json = meta[HF_TOKENIZER_KEY];
  if (typeof json !== 'string') {
    if (opts.rebuild === false) return null;
    const source = `${file} (tokenizer.ggml vocabulary)`;
    const files = ggufTokenizerFiles(meta, source);
    return files && { ...files, source };
  }
  const parse = (text: unknown, key: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(String(text)) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      return v as Record<string, unknown>;
    } catch (e) {
      throw new LongLoraError(`${file}: metadata ${key} is not a JSON object (${(e as Error).message}); export the file again, or pass --tokenizer DIR`);
    }
  };
  const config = meta[HF_TOKENIZER_CONFIG_KEY] === undefined ? {} : parse(meta[HF_TOKENIZER_CONFIG_KEY], HF_TOKENIZER_CONFIG_KEY);
  if (typeof meta['tokenizer.chat_template'] === 'string') config.chat_template = meta['tokenizer.chat_template'];
  return { json: parse(json, HF_TOKENIZER_KEY) as Json, config, source: `${file} (embedded tokenizer)` };
}

/**
 * The tokenizer of a GGUF file's metadata (`llamaFromGguf(...).metadata`; see
 * ggufTokenizerJson), or null when it has none: the browser's way to the tokenizer of a
 * GGUF file (Node: ggufTokenizer).
 */
export function tokenizerOfGguf(meta: Record<string, unknown>, file = 'the GGUF file', opts: { rebuild?: boolean } = {}): Tokenizer | null {
  const t = ggufTokenizerJson(meta, file, opts);
  return t && Tokenizer.fromJson(t.json, t.config, t.source);
}
