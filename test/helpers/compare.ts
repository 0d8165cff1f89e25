/**
 * Tensor comparison with a stated tolerance. Errors are measured relative to the largest
 * magnitude of the expected tensor: rel = max|a − e| / max|e|. Every comparison reports
 * its max difference, so a passing run still shows how close it was.
 */
import assert from 'node:assert/strict';
import { diff, type Diff } from './diff.js';

export { diff, type Diff };

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
