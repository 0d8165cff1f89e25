/**
 * Choosing the next token from logits, with Hugging Face `generate` semantics: greedy
 * (argmax, first index on ties) or sampling after the warpers in HF's order —
 * temperature, then top-k, then top-p (nucleus: the smallest set of most likely tokens
 * whose probability reaches p; at least one token) — drawn from a seeded generator, so a
 * run is reproducible. Defaults are the official LongLoRA inference settings.
 */
import { LongLoraError } from '../errors.js';
import type { Rng } from '../tensor/random.js';

/** Temperature, top-p and top-k. */
export interface SamplingOptions {
  /** 0 means greedy. Official inference default 0.6. */
  temperature: number;
  /** Nucleus threshold in (0, 1]; 1 turns it off. Official default 0.9. */
  topP: number;
  /** Keep only the k most likely tokens; 0 turns it off. */
  topK: number;
}

/** The official LongLoRA inference settings (inference.py): temperature 0.6, top-p 0.9. */
export const OFFICIAL_SAMPLING: SamplingOptions = { temperature: 0.6, topP: 0.9, topK: 0 };

/** Argmax decoding. */
export const GREEDY: SamplingOptions = { temperature: 0, topP: 1, topK: 0 };

/** Checks the options; throws a LongLoraError naming the bad flag. */
export function checkSampling(s: SamplingOptions): void {
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) throw new LongLoraError(`--temperature must be ≥ 0 (0: greedy), got ${s.temperature}`);
  if (!(s.topP > 0 && s.topP <= 1)) throw new LongLoraError(`--top-p must be in (0, 1], got ${s.topP}`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw new LongLoraError(`--top-k must be a whole number ≥ 0 (0: off), got ${s.topK}`);
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * The candidate tokens and their probabilities after temperature, top-k and top-p, most
 * likely first (probabilities renormalised to sum to 1).
 */
export function candidates(logits: ArrayLike<number>, s: SamplingOptions): { ids: number[]; probs: number[] } {
  const V = logits.length;
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const keepK = s.topK > 0 ? Math.min(s.topK, V) : V;
  const ids = order.slice(0, keepK);
  const max = logits[ids[0]!]! / s.temperature;
  let probs = ids.map((i) => Math.exp(logits[i]! / s.temperature - max));
  let z = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / z);
  if (s.topP < 1) {
    let cum = 0;
    let n = 0;
    while (n < probs.length && (n === 0 || cum < s.topP)) cum += probs[n++]!;
    ids.length = n;
    probs = probs.slice(0, n);
    z = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / z);
  }
  return { ids, probs };
}

/** The next token: greedy when temperature is 0, else a seeded draw from the candidates. */
export function sampleToken(logits: ArrayLike<number>, s: SamplingOptions, rng: Rng): number {
  if (s.temperature === 0) return argmax(logits);
  const { ids, probs } = candidates(logits, s);
  const u = rng.uniform();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i]!;
    if (u < cum) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}
