import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import { checkOp } from '../helpers/optest.js';

describe('shape ops', () => {
  it('reshape with −1', (t) => checkOp({
    name: 'reshape', inputs: [{ shape: [2, 6] }], fn: (x) => op.mul(op.reshape(x, [3, -1]), op.reshape(x, [3, 4])),
    reference: (x) => x.map((v) => v * v),
  }, (s) => t.diagnostic(s)));

  it('permute [0,2,1,3]', (t) => checkOp({
    name: 'permute', inputs: [{ shape: [2, 3, 4, 5] }], fn: (x) => op.permute(x, [0, 2, 1, 3]),
    reference: (x) => {
      const out = new Float64Array(x.length);
      let o = 0;
      for (let a = 0; a < 2; a++) for (let c = 0; c < 4; c++) for (let b = 0; b < 3; b++) for (let d = 0; d < 5; d++) out[o++] = x[((a * 3 + b) * 4 + c) * 5 + d]!;
      return out;
    },
  }, (s) => t.diagnostic(s)));

  it('transpose of the last two axes', (t) => checkOp({
    name: 'transpose', inputs: [{ shape: [3, 4] }], fn: (x) => op.transpose(x),
    reference: (x) => Float64Array.from({ length: 12 }, (_, i) => x[(i % 3) * 4 + Math.floor(i / 3)]!),
  }, (s) => t.diagnostic(s)));

  it('broadcastTo [3,1] → [2,3,4]', (t) => checkOp({
    name: 'broadcastTo', inputs: [{ shape: [3, 1] }], fn: (x) => op.broadcastTo(x, [2, 3, 4]),
    reference: (x) => Float64Array.from({ length: 24 }, (_, i) => x[Math.floor(i / 4) % 3]!),
  }, (s) => t.diagnostic(s)));

  it('slice along the middle axis', (t) => checkOp({
    name: 'slice', inputs: [{ shape: [2, 5, 3] }], fn: (x) => op.slice(x, 1, 1, 4),
    reference: (x) => {
      const out: number[] = [];
      for (let a = 0; a < 2; a++) for (let b = 1; b < 4; b++) for (let c = 0; c < 3; c++) out.push(x[(a * 5 + b) * 3 + c]!);
      return out;
    },
  }, (s) => t.diagnostic(s)));

  it('concat along the last axis', (t) => checkOp({
    name: 'concat', inputs: [{ shape: [2, 2] }, { shape: [2, 3] }], fn: (a, b) => op.concat([a, b], -1),
    reference: (a, b) => [a[0]!, a[1]!, b[0]!, b[1]!, b[2]!, a[2]!, a[3]!, b[3]!, b[4]!, b[5]!],
  }, (s) => t.diagnostic(s)));

  it('ids are whole numbers: a fraction or NaN is refused by position, an Int32Array is taken as it is', async () => {
    assert.throws(() => op.ids([1.5, 2], [1, 2]), /^LongLoraError: ids: element 0 is 1.5, not a whole number/);
    assert.throws(() => op.ids([3, Number.NaN], [1, 2]), /element 1 is NaN/);
    const t = op.ids(new Int32Array([7, -100]), [2]);
    assert.deepEqual([...await t.data()], [7, -100]);
    t.dispose();
  });
});
