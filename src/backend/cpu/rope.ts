/** Reference rotate-half RoPE (the Hugging Face Llama layout). */
import type { F } from './elementwise.js';

/**
 * x [B, N, H, D]; cos, sin [N, D/2]. For d < D/2 with x1 = x[d], x2 = x[d + D/2]:
 * out[d] = x1·cos − x2·sin, out[d + D/2] = x2·cos + x1·sin; `inverse` negates sin.
 */
export function rope(x: F, cos: F, sin: F, out: F, B: number, N: number, H: number, D: number, inverse: boolean): void {
  const half = D / 2;
  const sgn = inverse ? -1 : 1;
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      const t = n * half;
      for (let h = 0; h < H; h++) {
        const o = ((b * N + n) * H + h) * D;
        for (let d = 0; d < half; d++) {
          const c = cos[t + d]!;
          const s = sgn * sin[t + d]!;
          const x1 = x[o + d]!;
          const x2 = x[o + d + half]!;
          out[o + d] = x1 * c - x2 * s;
          out[o + d + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}
