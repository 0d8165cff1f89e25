/**
 * A small, deterministic BPE trainer that writes a Llama-style Hugging Face
 * `tokenizer.json` (the layout of Llama-2's: the Prepend("▁") + Replace(" " → "▁")
 * normalizer, no pre-tokenizer, BPE with byte fallback, <unk> <s> </s> at ids 0–2, the
 * 256 byte tokens <0x00>..<0xFF> at ids 3–258, then the characters of the corpus, then
 * one token per merge). @huggingface/tokenizers loads such files but cannot train them,
 * so the project's own models get their tokenizer from here.
 *
 * Training is the classic word-frequency BPE: text is cut into "▁"-led words, each word
 * starts as its characters, and the most frequent adjacent pair (ties broken by the
 * pair's text, so the result depends only on the corpus) is merged, over and over, until
 * the vocabulary is full. Pairs that involve a digit or a line break are never merged
 * (Llama splits digits too), and no token ever holds "▁" after another character, so the
 * word-by-word fast path of tokenizer.ts applies to the result.
 */
import { LongLoraError } from '../errors.js';

const SP = '\u2581';

/** Options of `trainBpe`. */
export interface TrainBpeOptions {
  /** Size of the vocabulary, specials and byte tokens included. */
  vocabSize: number;
  /** Characters seen fewer times than this are left to byte fallback (default 1: keep all). */
  minCharCount?: number;
  /** Pairs seen fewer times than this are not merged (default 2). */
  minPairCount?: number;
  /** Called every 100 merges (progress). */
  onProgress?: (merges: number) => void;
}

/** What `trainBpe` returns: the files to write, and what went into them. */
export interface TrainedBpe {
  /** The contents of tokenizer.json. */
  tokenizerJson: Record<string, unknown>;
  /** The contents of tokenizer_config.json. */
  tokenizerConfig: Record<string, unknown>;
  vocab: string[];
  merges: Array<[string, string]>;
  /** Distinct characters kept as tokens. */
  chars: number;
}

/** The specials at ids 0, 1, 2 (Llama's). */
export const BPE_SPECIALS = ['<unk>', '<s>', '</s>'] as const;

/** The 256 byte-fallback tokens, <0x00>..<0xFF>. */
function byteTokens(): string[] {
  return Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);
}

/** "▁"-led words of a text, as the Llama normalizer sees them. */
export function bpeWords(text: string): string[] {
  if (text === '') return [];
  return (SP + text.replaceAll(' ', SP)).split(new RegExp(`(?=${SP})`, 'u')).filter(Boolean);
}

/** Whether a pair may be merged: never across digits or line breaks. */
function mergeable(a: string, b: string): boolean {
  return !/[\d\n\r]/u.test(a) && !/[\d\n\r]/u.test(b);
}

interface Word {
  syms: string[];
  count: number;
}

const KEY_SEP = '\u0000';

/** Learns merges over the word counts of `documents`. */
export function trainBpe(documents: Iterable<string>, opts: TrainBpeOptions): TrainedBpe {
  const minChar = opts.minCharCount ?? 1;
  const minPair = opts.minPairCount ?? 2;
  const counts = new Map<string, number>();
  for (const doc of documents) for (const w of bpeWords(doc)) counts.set(w, (counts.get(w) ?? 0) + 1);
  if (counts.size === 0) throw new LongLoraError('trainBpe: the corpus is empty');

  const charCounts = new Map<string, number>();
  for (const [w, c] of counts) for (const ch of w) charCounts.set(ch, (charCounts.get(ch) ?? 0) + c);
  const chars = [...charCounts.entries()].filter(([ch, c]) => c >= minChar || ch === SP).map(([ch]) => ch).sort();
  const bytes = byteTokens();
  const base = [...BPE_SPECIALS, ...bytes, ...chars.filter((ch) => !bytes.includes(ch) && !(BPE_SPECIALS as readonly string[]).includes(ch))];
  if (base.length > opts.vocabSize) {
    throw new LongLoraError(`trainBpe: ${base.length} specials, bytes and characters do not fit a vocabulary of ${opts.vocabSize}; raise vocabSize or minCharCount`);
  }
  const known = new Set(chars);
  // Words in a fixed order (by text), each as its characters; characters left to byte
  // fallback split a word into pieces that never merge across them.
  const words: Word[] = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, c]) => ({ syms: Array.from(w), count: c }));

  const pairCount = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addPairs = (i: number, sign: 1 | -1): void => {
    const { syms, count } = words[i]!;
    for (let j = 0; j + 1 < syms.length; j++) {
      const a = syms[j]!;
      const b = syms[j + 1]!;
      if (!known.has(a[0]!) || !known.has(b[0]!) || !mergeable(a, b)) continue;
      const k = a + KEY_SEP + b;
      const n = (pairCount.get(k) ?? 0) + sign * count;
      if (n === 0) pairCount.delete(k); else pairCount.set(k, n);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(i);
      }
    }
  };
  for (let i = 0; i < words.length; i++) addPairs(i, 1);

  const merges: Array<[string, string]> = [];
  const vocab = [...base];
  const inVocab = new Set(vocab);
  while (vocab.length < opts.vocabSize) {
    let best: string | null = null;
    let bestCount = 0;
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && c > 0 && best !== null && k < best)) { best = k; bestCount = c; }
    }
    if (best === null || bestCount < minPair) break;
    const [a, b] = best.split(KEY_SEP) as [string, string];
    const merged = a + b;
    for (const i of pairWords.get(best) ?? []) {
      const w = words[i]!;
      addPairs(i, -1);
      const out: string[] = [];
      for (let j = 0; j < w.syms.length; j++) {
        if (j + 1 < w.syms.length && w.syms[j] === a && w.syms[j + 1] === b) { out.push(merged); j++; } else out.push(w.syms[j]!);
      }
      w.syms = out;
      addPairs(i, 1);
    }
    pairCount.delete(best);
    pairWords.delete(best);
    merges.push([a, b]);
    if (!inVocab.has(merged)) { vocab.push(merged); inVocab.add(merged); }
    if (merges.length % 100 === 0) opts.onProgress?.(merges.length);
  }
  return { tokenizerJson: bpeTokenizerJson(vocab, merges), tokenizerConfig: bpeTokenizerConfig(), vocab, merges, chars: chars.length };
}

/**
 * tokenizer.json in the Llama-2 layout (<s> added by the post-processor); `byteFallback`
 * false drops the ByteFallback decoder and model flag (a vocabulary without byte tokens).
 */
export function bpeTokenizerJson(vocab: readonly string[], merges: ReadonlyArray<readonly [string, string]>, byteFallback = true): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BPE_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SP }, { type: 'Replace', pattern: { String: ' ' }, content: SP }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SP }, content: ' ' },
        ...(byteFallback ? [{ type: 'ByteFallback' }] : []),
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: byteFallback, ignore_merges: false,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** tokenizer_config.json of a Llama tokenizer: BOS added, EOS not. */
export function bpeTokenizerConfig(): Record<string, unknown> {
  const tok = (content: string): Record<string, unknown> => ({ __type: 'AddedToken', content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: tok('<s>'),
    eos_token: tok('</s>'),
    unk_token: tok('<unk>'),
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: false,
    model_max_length: 1e30,
    padding_side: 'right',
    tokenizer_class: 'LlamaTokenizer',
  };
}
