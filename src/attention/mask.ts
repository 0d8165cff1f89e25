/**
 * Which keys each query may see, for dense causal attention and the three S²-Attn forms
 * (SPEC §2). Kernels visit only these ranges, so S² costs O(N·G) instead of O(N²).
 *
 * Heads [0, ⌊H/2⌋) use groups [0,G), [G,2G), ...; heads [⌊H/2⌋, H) are shifted by G/2:
 * - segmented: groups [0,G/2), [G/2,3G/2), ... — leak-free, any N;
 * - roll: the paper's pseudocode; tokens rolled by −G/2 so the last group wraps around and
 *   joins the last G/2 tokens with the first G/2 (the acknowledged leak); N % G == 0;
 * - short: no shift in any head (the paper's weaker baseline).
 */
import type { AttentionMask } from '../backend/backend.js';
import { LongLoraError } from '../errors.js';

const S2_FORMS: ReadonlyArray<Extract<AttentionMask, { kind: 's2' }>['form']> = ['segmented', 'roll', 'short'];

/** Half-open key ranges [lo, hi). At most two (the wrapped group of the roll form). */
export type KeyRanges = Array<readonly [number, number]>;

/** Whether query head `h` of `H` uses the shifted groups. */
export function isShiftedHead(h: number, H: number): boolean {
  return h >= Math.floor(H / 2);
}

/**
 * The keys that the query at absolute position `qpos` in head `h` attends to, among `Nk`
 * keys at positions 0..Nk−1.
 */
export function keyRanges(mask: AttentionMask, H: number, h: number, qpos: number, Nk: number): KeyRanges {
  const end = Math.min(qpos + 1, Nk);
  if (mask.kind === 'causal') return [[0, end]];
  const G = mask.group;
  if (mask.form === 'short' || !isShiftedHead(h, H)) return [[Math.floor(qpos / G) * G, end]];
  const half = G / 2;
  if (mask.form === 'segmented') {
    const seg = Math.floor((qpos + half) / G);
    return [[Math.max(0, seg * G - half), end]];
  }
  // roll: rolled position p holds original token (p + G/2) mod N.
  const N = Nk;
  const p = (qpos - half + N) % N;
  const lo = Math.floor(p / G) * G + half;
  const hi = p + half + 1;
  if (hi <= N) return [[lo, hi]];
  if (lo >= N) return [[lo - N, hi - N]];
  return [[lo, N], [0, hi - N]];
}

/** Describes the mask for messages and logs. */
export function describeMask(mask: AttentionMask): string {
  return mask.kind === 'causal' ? 'dense causal' : `S²-Attn (${mask.form}, group ${mask.group})`;
}

/**
 * Checks that a mask can be used for a sequence of N tokens with queries and keys
 * aligned (training). Throws a LongLoraError that names the problem and the fix.
 */
export function validateMask(mask: AttentionMask, N: number): void {
  const m = mask as { kind?: unknown; form?: unknown } | null;
  if (m === null || typeof m !== 'object' || (m.kind !== 'causal' && m.kind !== 's2')) {
    throw new LongLoraError(`unknown attention mask ${JSON.stringify(mask)}; use { kind: 'causal' } or { kind: 's2', form: 'segmented', group: G }`);
  }
  if (mask.kind === 'causal') return;
  if (!S2_FORMS.includes(mask.form)) {
    throw new LongLoraError(`unknown S²-Attn form ${JSON.stringify(m.form)}; use one of ${S2_FORMS.join(', ')} ('segmented' is leak-free and takes any length)`);
  }
  const G = mask.group;
  if (!Number.isInteger(G) || G < 1) {
    throw new LongLoraError(`S²-Attn group size must be a positive integer, got ${G}. Set a group size such as N/4.`);
  }
  if (mask.form !== 'short' && G % 2 !== 0) {
    throw new LongLoraError(
      `S²-Attn (${mask.form}) shifts half of the heads by G/2, so the group size must be even; got G=${G}. ` +
      `Use an even group size (e.g. ${G + 1}) or the 'short' form.`);
  }
  if (mask.form === 'roll' && N % G !== 0) {
    throw new LongLoraError(
      `S²-Attn roll form needs the sequence length to be a multiple of the group size; got N=${N}, G=${G}. ` +
      `Use the segmented form (any length works) or a length that is a multiple of ${G}.`);
  }
}
