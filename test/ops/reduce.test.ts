import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import { checkOp } from '../helpers/optest.js';

describe('reductions', () => {
  it('sum of all elements', (t) => checkOp({
    name: 'sum', inputs: [{ shape: [3, 4] }], fn: (x) => op.sum(x), reference: (x) => [x.reduce((a, v) => a + v, 0)],
  }, (s) => t.diagnostic(s)));

  it('sum over the middle axis', (t) => checkOp({
    name: 'sum(axis=1)', inputs: [{ shape: [2, 3, 4] }], fn: (x) => op.sum(x, 1),
    reference: (x) => Float64Array.from({ length: 8 }, (_, i) => {
      const a = Math.floor(i / 4);
      const c = i % 4;
      let s = 0;
      for (let b = 0; b < 3; b++) s += x[(a * 3 + b) * 4 + c]!;
      return s;
    }),
  }, (s) => t.diagnostic(s)));

  it('mean over the last axis, keepDims', (t) => checkOp({
    name: 'mean(axis=-1, keepDims)', inputs: [{ shape: [3, 5] }], fn: (x) => op.mean(x, -1, true),
    reference: (x) => [0, 1, 2].map((r) => x.slice(r * 5, r * 5 + 5).reduce((a, v) => a + v, 0) / 5),
  }, (s) => t.diagnostic(s)));
});
