/**
 * Byte-level BPE written out for the GGUF tokenizer tests: GPT-2's byte → character table,
 * merges learnt on a text, and the merge loop by rank (llama.cpp's and Hugging Face's),
 * the independent side those tests compare the tokenizers with.
 */

/** GPT-2's byte → printable character table (bytes_to_unicode). */
export function byteChars(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

const CHARS = byteChars();

/** A word's UTF-8 bytes as byte-level characters. */
export const toByteLevel = (w: string): string[] => [...new TextEncoder().encode(w)].map((b) => CHARS[b]!);

/** `count` byte-level merges learnt on `text` split by `split` (the most frequent pair, ties by text; none used fewer than twice). */
export function trainByteMerges(text: string, split: RegExp, count: number): string[] {
  const freq = new Map<string, number>();
  for (const w of text.match(split) ?? []) freq.set(w, (freq.get(w) ?? 0) + 1);
  let words = [...freq].map(([w, n]) => ({ sym: toByteLevel(w), n }));
  const merges: string[] = [];
  for (let m = 0; m < count; m++) {
    const counts = new Map<string, number>();
    for (const { sym, n } of words) for (let i = 0; i + 1 < sym.length; i++) counts.set(`${sym[i]} ${sym[i + 1]}`, (counts.get(`${sym[i]} ${sym[i + 1]}`) ?? 0) + n);
    let best = '';
    let most = 0;
    for (const [pair, c] of counts) if (c > most || (c === most && pair < best)) { best = pair; most = c; }
    if (most < 2) break;
    merges.push(best);
    const [a, b] = best.split(' ') as [string, string];
    words = words.map(({ sym, n }) => {
      const out: string[] = [];
      for (let i = 0; i < sym.length; i++) {
        if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) { out.push(a + b); i++; } else out.push(sym[i]!);
      }
      return { sym: out, n };
    });
  }
  return merges;
}

/** `sym` with the merges applied, the lowest-ranked adjacent pair first (`rank`: "a b" → rank), until none applies. */
export function mergeByRank(sym: string[], rank: ReadonlyMap<string, number>): string[] {
  for (;;) {
    let at = -1;
    let best = Infinity;
    for (let i = 0; i + 1 < sym.length; i++) {
      const r = rank.get(`${sym[i]} ${sym[i + 1]}`);
      if (r !== undefined && r < best) { best = r; at = i; }
    }
    if (at < 0) return sym;
    sym.splice(at, 2, sym[at]! + sym[at + 1]!);
  }
}
