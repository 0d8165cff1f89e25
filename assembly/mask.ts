/**
 * Key ranges of dense causal attention and the three S²-Attn forms, the same rules as
 * src/attention/mask.ts (SPEC §2), for the fused attention kernels. Results go to four
 * globals (each thread has its own instance, so globals are thread-local): the keys of
 * one query are [lo1, hi1) ∪ [lo2, hi2), the second range empty unless the roll form
 * wraps around.
 */

export const CAUSAL = 0, SEGMENTED = 1, ROLL = 2, SHORT = 3;

export let lo1: i32 = 0;
export let hi1: i32 = 0;
export let lo2: i32 = 0;
export let hi2: i32 = 0;

/** Keys of the query at absolute position qpos in head h of H, among Nk keys. */
export function keyRanges(kind: i32, G: i32, H: i32, h: i32, qpos: i32, Nk: i32): void {
  const end = min(qpos + 1, Nk);
  lo2 = 0; hi2 = 0;
  if (kind == CAUSAL) { lo1 = 0; hi1 = end; return; }
  const shifted = h >= H / 2;
  if (kind == SHORT || !shifted) { lo1 = (qpos / G) * G; hi1 = end; return; }
  const half = G / 2;
  if (kind == SEGMENTED) {
    const seg = (qpos + half) / G;
    lo1 = max(0, seg * G - half); hi1 = end;
    return;
  }
  // roll: rolled position p holds original token (p + G/2) mod N
  const N = Nk;
  const p = (qpos - half + N) % N;
  const lo = (p / G) * G + half;
  const hi = p + half + 1;
  if (hi <= N) { lo1 = lo; hi1 = hi; return; }
  if (lo >= N) { lo1 = lo - N; hi1 = hi - N; return; }
  lo1 = lo; hi1 = N; lo2 = 0; hi2 = hi - N;
}

/**
 * A cover of the keys that the queries at positions [p0, p1) see, as up to two
 * intervals in lo1..hi2. Exact bounds for causal, segmented and short (a query's range
 * starts and ends move forward with its position); a conservative cover for roll.
 */
export function blockRanges(kind: i32, G: i32, H: i32, h: i32, p0: i32, p1: i32, Nk: i32): void {
  if (kind != ROLL) {
    keyRanges(kind, G, H, h, p0, Nk);
    const lo = lo1;
    keyRanges(kind, G, H, h, p1 - 1, Nk);
    lo1 = lo;
    return;
  }
  // roll: bound the ranges that start at key 0 and those that do not, separately
  let aLo = Nk, aHi = 0, zHi = 0;
  for (let p = p0; p < p1; p++) {
    keyRanges(kind, G, H, h, p, Nk);
    if (lo1 == 0) zHi = max(zHi, hi1);
    else { aLo = min(aLo, lo1); aHi = max(aHi, hi1); }
    if (hi2 > lo2) zHi = max(zHi, hi2);
  }
  lo1 = aLo; hi1 = aHi; lo2 = 0; hi2 = zHi;
  if (hi1 <= lo1) { lo1 = 0; hi1 = 0; }
}

/**
 * Whether every query in [p0, p1) sees every key in [j0, j1). Exact for causal,
 * segmented and short (starts and ends are monotone in the position); roll answers no,
 * which only costs per-row masking.
 */
export function blockFull(kind: i32, G: i32, H: i32, h: i32, p0: i32, p1: i32, j0: i32, j1: i32, Nk: i32): bool {
  if (kind == ROLL) return false;
  keyRanges(kind, G, H, h, p0, Nk);
  if (hi1 < j1) return false;
  keyRanges(kind, G, H, h, p1 - 1, Nk);
  return lo1 <= j0;
}

/**
 * The query positions that may see some key of [j0, j1), as [qlo, qhi) in the globals
 * lo1/hi1 (a cover; the per-row mask is exact). Queries sit at qOffset..qOffset+Nq−1.
 */
export function queryCover(kind: i32, G: i32, H: i32, h: i32, j0: i32, j1: i32, qOffset: i32, Nq: i32): void {
  const first = qOffset, last = qOffset + Nq;
  if (kind == CAUSAL) { lo1 = max(first, j0); hi1 = last; return; }
  if (kind == ROLL) { lo1 = first; hi1 = last; return; }
  // segmented / short: a key sees queries of its own segment at or after it
  let end: i32;
  if (kind == SHORT || h < H / 2) end = ((j1 - 1) / G + 1) * G;
  else {
    const half = G / 2;
    end = ((j1 - 1 + half) / G + 1) * G - half;
  }
  lo1 = max(first, j0);
  hi1 = min(last, end);
}
