/** Reference row softmax and RMSNorm, forward and backward. */
import type { F } from './elementwise.js';

/** log Σ exp(x[o .. o+n)), computed stably. */
export function logSumExp(x: F, o: number, n: number): number {
  let max = -Infinity;
  for (let c = 0; c < n; c++) max = Math.max(max, x[o + c]!);
  let sum = 0;
  for (let c = 0; c < n; c++) sum += Math.exp(x[o + c]! - max);
  return max + Math.log(sum);
}

export function softmax(x: F, out: F, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const l = logSumExp(x, o, cols);
    for (let c = 0; c < cols; c++) out[o + c] = Math.exp(x[o + c]! - l);
  }
}

/** dx = y ⊙ (dy − Σ dy·y). */
export function softmaxBackward(y: F, dy: F, dx: F, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += dy[o + c]! * y[o + c]!;
    for (let c = 0; c < cols; c++) dx[o + c] = y[o + c]! * (dy[o + c]! - dot);
  }
}

export function rmsnorm(x: F, w: F, out: F, rstd: F, rows: number, C: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[o + c]! * x[o + c]!;
    const s = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = s;
    const sr = rstd[r]!; // the stored (rounded) value, so backward sees what forward used
    for (let c = 0; c < C; c++) out[o + c] = x[o + c]! * sr * w[c]!;
  }
}

/**
 * With x̂ = x·s, y = x̂·w: dw += Σ_rows dy·x̂, dx = s·(dy·w − x̂·mean(dy·w·x̂)).
 */
export function rmsnormBackward(x: F, w: F, rstd: F, dy: F, dx: F, dw: F | null, rows: number, C: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    const s = rstd[r]!;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[o + c]! * w[c]! * x[o + c]! * s;
    const m = dot / C;
    for (let c = 0; c < C; c++) {
      const xh = x[o + c]! * s;
      dx[o + c] = s * (dy[o + c]! * w[c]! - xh * m);
      if (dw) dw[c] = dw[c]! + dy[o + c]! * xh;
    }
  }
}
