/** Reference batched matmul with transposes, accumulating in float64. */
import type { MatmulArgs } from '../backend.js';
import type { F } from './elementwise.js';

export function matmul(a: F, b: F, out: F, g: MatmulArgs): void {
  const { batch, m, n, k, transA, transB, alpha, beta } = g;
  const row = new Float64Array(n);
  for (let bt = 0; bt < batch; bt++) {
    const oa = bt * g.strideA;
    const ob = bt * g.strideB;
    const oc = bt * m * n;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const av = transA ? a[oa + p * m + i]! : a[oa + i * k + p]!;
        if (av === 0) continue;
        if (transB) for (let j = 0; j < n; j++) row[j]! += av * b[ob + j * k + p]!;
        else {
          const base = ob + p * n;
          for (let j = 0; j < n; j++) row[j]! += av * b[base + j]!;
        }
      }
      const base = oc + i * n;
      if (beta === 0) for (let j = 0; j < n; j++) out[base + j] = alpha * row[j]!;
      else for (let j = 0; j < n; j++) out[base + j] = alpha * row[j]! + beta * out[base + j]!;
    }
  }
}
