/**
 * A faster, equivalent encoder for long texts with Llama-style sentencepiece BPE
 * tokenizers. Their tokenizer.json has no pre-tokenizer, so the library runs BPE over a
 * whole document as one "word" (about 0.2 MB/s). But when no vocabulary entry contains
 * "▁" after another character, no merge can cross the boundary before a word's "▁", so
 * the text can be cut at single spaces between words and each word encoded on its own —
 * the ids are the same (a test checks it on adversarial text), BPE results are cached
 * per word, and it runs about 30× faster. Used only when every condition holds; any other
 * tokenizer goes through the library unchanged.
 */
import type { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

type Json = Record<string, unknown>;

const SP = '\u2581';

/** The library's normalizer / model as callables (their classes are callable objects). */
type Callable<A, R> = (a: A) => R;

/** Whether the tokenizer has the Llama layout: Prepend("▁") then Replace(" " → "▁"), BPE, no pre-tokenizer. */
function isLlamaLayout(json: Json): boolean {
  const norm = json.normalizer as Json | null | undefined;
  const model = json.model as Json | undefined;
  if (!norm || json.pre_tokenizer !== null || model?.type !== 'BPE') return false;
  const steps = (norm.type === 'Sequence' ? norm.normalizers : [norm]) as Json[] | undefined;
  if (!Array.isArray(steps) || steps.length !== 2) return false;
  const [a, b] = steps as [Json, Json];
  const pattern = b.pattern as Json | undefined;
  return a.type === 'Prepend' && a.prepend === SP && b.type === 'Replace' && pattern?.String === ' ' && b.content === SP;
}

/** Whether any vocabulary entry has "▁" after a character other than "▁" (a merge could then cross words). */
function mergesCrossWords(vocab: Map<string | undefined, number>): boolean {
  for (const t of vocab.keys()) {
    if (typeof t !== 'string') continue; // an id no token has (a gap in model.vocab)
    for (let i = 1; i < t.length; i++) if (t[i] === SP && t[i - 1] !== SP) return true;
  }
  return false;
}

/**
 * An encoder (no special tokens added) equivalent to the library's for this tokenizer, or
 * null when the shortcut does not apply.
 */
export function fastEncoder(hf: HFTokenizer, json: Json, config: Json): ((text: string) => number[]) | null {
  if (!isLlamaLayout(json) || config.remove_space === true || config.do_lowercase_and_remove_accent === true) return null;
  const added = (json.added_tokens ?? []) as Array<{ id: number; content: string; normalized?: boolean; lstrip?: boolean; rstrip?: boolean }>;
  if (added.some((t) => t.content.includes(' ') || t.content === '' || t.normalized || t.lstrip || t.rstrip)) return null;
  const vocab = hf.get_vocab(false);
  if (!vocab.has(SP) || mergesCrossWords(vocab)) return null;
  const normalize = hf.normalizer as unknown as Callable<string, string> | null;
  const model = hf.model as unknown as (Callable<string[], string[]> & { tokens_to_ids: Map<string, number>; unk_token_id?: number }) | null;
  if (!normalize || !model) return null;
  const addedIds = new Map(added.map((t) => [t.content, t.id]));
  const splitAdded = added.length
    ? new RegExp(`(${[...addedIds.keys()].sort((x, y) => y.length - x.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`, 'u')
    : null;
  const words = /(?<=[^ ]) (?=[^ ])/;
  const unk = model.unk_token_id;
  return (text: string): number[] => {
    const out: number[] = [];
    const segments = splitAdded ? text.split(splitAdded) : [text];
    for (let s = 0; s < segments.length; s++) {
      const seg = segments[s]!;
      if (s % 2 === 1) { out.push(addedIds.get(seg)!); continue; }
      if (seg === '') continue;
      for (const w of seg.split(words)) {
        for (const t of model([normalize(w)])) {
          const id = addedIds.get(t) ?? model.tokens_to_ids.get(t) ?? unk;
          if (id !== undefined) out.push(id);
        }
      }
    }
    return out;
  };
}
