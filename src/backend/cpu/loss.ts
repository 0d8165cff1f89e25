/** Reference cross-entropy over rows of logits [T, V], with an ignore index. */
import type { F } from './elementwise.js';
import { logSumExp } from './norm.js';

export function crossEntropy(logits: F, targets: Int32Array, losses: F, lse: F, T: number, V: number, ignoreIndex: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * V;
    const l = logSumExp(logits, o, V);
    lse[t] = l;
    const y = targets[t]!;
    if (y === ignoreIndex) { losses[t] = 0; continue; }
    if (!(y >= 0 && y < V)) throw new RangeError(`target ${y} at position ${t} is outside the vocabulary [0, ${V})`);
    losses[t] = l - logits[o + y]!;
  }
}

export function crossEntropyBackward(logits: F, targets: Int32Array, lse: F, dlosses: F, dlogits: F,
  T: number, V: number, ignoreIndex: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * V;
    const y = targets[t]!;
    if (y === ignoreIndex) { for (let v = 0; v < V; v++) dlogits[o + v] = 0; continue; }
    const g = dlosses[t]!;
    const l = lse[t]!;
    for (let v = 0; v < V; v++) dlogits[o + v] = g * (Math.exp(logits[o + v]! - l) - (v === y ? 1 : 0));
  }
}
