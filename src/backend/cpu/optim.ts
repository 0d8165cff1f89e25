/** Reference AdamW update (torch.optim.AdamW, single-tensor form). */
import type { AdamWArgs } from '../backend.js';
import type { F } from './elementwise.js';

export function adamw(p: F, g: F, m: F, v: F, a: AdamWArgs): void {
  const bc1 = 1 - a.beta1 ** a.step;
  const bc2 = Math.sqrt(1 - a.beta2 ** a.step);
  const decay = 1 - a.lr * a.weightDecay;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    m[i] = a.beta1 * m[i]! + (1 - a.beta1) * gi;
    v[i] = a.beta2 * v[i]! + (1 - a.beta2) * gi * gi;
    const denom = Math.sqrt(v[i]!) / bc2 + a.eps;
    p[i] = p[i]! * decay - (a.lr / bc1) * (m[i]! / denom);
  }
}
