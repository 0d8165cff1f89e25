/**
 * Tensor comparison with a stated tolerance. Errors are measured relative to the largest
 * magnitude of the expected tensor: rel = max|a − e| / max|e|. Every comparison reports
 * its max difference, so a passing run still shows how close it was.
 */
import assert from 'node:assert/strict';

export interface Diff {
  maxAbs: number;
  rel: number;
  worstIndex: number;
}

export function diff(actual: ArrayLike<number>, expected: ArrayLike<number>): Diff {
  assert.equal(actual.length, expected.length, `length ${actual.length} != expected ${expected.length}`);
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

/** Collected report lines; tests print them through `t.diagnostic`. */
export const report: string[] = [];

/** Asserts rel ≤ rtol and records the figures under `label`. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, label: string, log?: (s: string) => void): Diff {
  const d = diff(actual, expected);
  const line = `${label}: max|diff| ${d.maxAbs.toExponential(2)}, rel ${d.rel.toExponential(2)} (tol ${rtol.toExponential(0)})`;
  (log ?? ((s: string) => report.push(s)))(line);
  assert.ok(d.rel <= rtol, `${line}; worst at index ${d.worstIndex}: ${actual[d.worstIndex]} vs ${expected[d.worstIndex]}`);
  return d;
}
