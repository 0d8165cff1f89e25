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
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) throw new LongLoraError(`temperature (--temperature) must be ≥ 0 (0: greedy), got ${s.temperature}`);
  if (!(s.topP > 0 && s.topP <= 1)) throw new LongLoraError(`topP (--top-p) must be in (0, 1], got ${s.topP}`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw new LongLoraError(`topK (--top-k) must be a whole number ≥ 0 (0: off), got ${s.topK}`);
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * The candidate tokens and their probabilities after temperature, top-k and top-p, most
 * likely first (ties: the lower id first; probabilities renormalised to sum to 1).
 *
 * Only the head of the order is sorted: the tokens whose weight e^((l − max)/T) is at
 * least a threshold are gathered (the threshold falling by 2^8, then to 0, until they hold
 * what top-k or top-p asks for) and only they are sorted. With a vocabulary of 128k and the official
 * top-p 0.9 that is a few hundred tokens at most, not the whole vocabulary per new token.
 */
export function candidates(logits: ArrayLike<number>, s: SamplingOptions): { ids: number[]; probs: number[] } {
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i]! > max) max = logits[i]!;
  const w = new Float64Array(V); // e^((l − max)/T): the most likely token weighs 1
  let total = 0;
  for (let i = 0; i < V; i++) total += (w[i] = Math.exp((logits[i]! - max) / s.temperature));
  const keepK = s.topK > 0 ? Math.min(s.topK, V) : V;
  // Thresholds 2^-8, 2^-16, 2^-24, 2^-32, then 0 (every token); straight to 0 when all are candidates.
  for (let tau = s.topP >= 1 && keepK === V ? 0 : 2 ** -8; ; tau = tau > 2 ** -32 ? tau * 2 ** -8 : 0) {
    const head: number[] = [];
    for (let i = 0; i < V; i++) if (w[i]! >= tau) head.push(i);
    if (tau > 0 && head.length < keepK && keepK < V) continue; // fewer than the top k gathered
    head.sort((a, b) => logits[b]! - logits[a]! || a - b);
    if (head.length > keepK) head.length = keepK;
    // The kept set's total: all of it unless top-k cut it (then it is all gathered here).
    let kept = 0;
    if (keepK < V) for (const i of head) kept += w[i]!;
    else kept = total;
    if (s.topP >= 1) {
      if (head.length < keepK && tau > 0) continue; // every kept token is a candidate
      return { ids: head, probs: head.map((i) => w[i]! / kept) };
    }
    let cum = 0;
    let n = 0;
    while (n < head.length && (n === 0 || cum < s.topP)) cum += w[head[n++]!]! / kept;
    if (cum < s.topP && n < keepK && tau > 0) continue; // the nucleus reaches past the gathered tokens
    const ids = head.slice(0, n);
    return { ids, probs: ids.map((i) => w[i]! / kept / cum) };
  }
}

/** The next token: greedy when temperature is 0, else a seeded draw from the candidates. */
export function sampleToken(logits: ArrayLike<number>, s: SamplingOptions, rng: Rng): number {
  if (s.temperature === 0) return checked(logits, argmax(logits));
  const { ids, probs } = candidates(logits, s);
  if (ids.length === 0) return checked(logits, -1);
  const u = rng.uniform();
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += probs[i]!;
    if (u < cum) return ids[i]!;
  }
  return ids[ids.length - 1]!;
}

/** `id`, unless its logit is NaN or −∞: then no token can be chosen (the model's numbers broke down). */
function checked(logits: ArrayLike<number>, id: number): number {
  if (id >= 0 && (logits[id] ?? NaN) > -Infinity) return id;
  let bad = 0;
  for (let i = 0; i < logits.length; i++) if (!Number.isFinite(logits[i]!)) bad++;
  throw new LongLoraError(`no token can be chosen: ${bad} of ${logits.length} logits are NaN or infinite; ` +
    "the model's weights or activations are not finite (check the checkpoint, the adapter, or the learning rate it was trained with)");
}
