import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import { checkOp } from '../helpers/optest.js';

/** Host matmul of op(a)[m,k]·op(b)[k,n] over `batch` entries (b shared when bBatch is false). */
function hostMatmul(a: Float64Array, b: Float64Array, batch: number, m: number, n: number, k: number, tA: boolean, tB: boolean, bBatch = true): Float64Array {
  const out = new Float64Array(batch * m * n);
  for (let bt = 0; bt < batch; bt++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a[bt * m * k + (tA ? p * m + i : i * k + p)]!;
          const bv = b[(bBatch ? bt * k * n : 0) + (tB ? j * k + p : p * n + j)]!;
          s += av * bv;
        }
        out[(bt * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

describe('matmul', () => {
  const [m, n, k] = [3, 5, 4];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      it(`batched, transA=${transA}, transB=${transB}`, (t) => checkOp({
        name: `matmul tA=${transA} tB=${transB}`,
        inputs: [{ shape: transA ? [2, k, m] : [2, m, k] }, { shape: transB ? [2, n, k] : [2, k, n] }],
        fn: (a, b) => op.matmul(a, b, { transA, transB }),
        reference: (a, b) => hostMatmul(a, b, 2, m, n, k, transA, transB),
      }, (s) => t.diagnostic(s)));
    }
  }

  it('shared 2-D right operand over a batch', (t) => checkOp({
    name: 'matmul broadcast b', inputs: [{ shape: [2, 3, m, k] }, { shape: [k, n] }],
    fn: (a, b) => op.matmul(a, b), reference: (a, b) => hostMatmul(a, b, 6, m, n, k, false, false, false),
  }, (s) => t.diagnostic(s)));

  it('linear: x·Wᵀ with W [out, in]', (t) => checkOp({
    name: 'linear', inputs: [{ shape: [2, 3, 7] }, { shape: [5, 7] }],
    fn: op.linear, reference: (x, w) => hostMatmul(x, w, 6, 1, 5, 7, false, true, false),
  }, (s) => t.diagnostic(s)));
});
