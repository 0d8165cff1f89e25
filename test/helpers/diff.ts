/**
 * The error measure of every tensor comparison in the tests, without Node (the browser
 * tests run it in a page): rel = max|a − e| / max|e|.
 */
export interface Diff {
  maxAbs: number;
  rel: number;
  worstIndex: number;
}

export function diff(actual: ArrayLike<number>, expected: ArrayLike<number>): Diff {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let maxAbs = 0;
  let scale = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const d = Math.abs(a - e);
    if (!(d <= maxAbs)) { maxAbs = Number.isNaN(d) ? Infinity : d; worstIndex = i; }
    scale = Math.max(scale, Math.abs(e));
  }
  return { maxAbs, rel: scale === 0 ? maxAbs : maxAbs / scale, worstIndex };
}

