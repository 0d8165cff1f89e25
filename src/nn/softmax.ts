/** Softmax over the last axis, as a fused op with its own backward rule. */
import { record } from '../tensor/autograd.js';
import { computeDType } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';

export function softmax(x: Tensor): Tensor {
  computeDType('softmax', x);
  const cols = x.shape[x.rank - 1] ?? 1;
  const rows = x.size / cols;
  const be = x.backend;
  const out = Tensor.empty(x.shape, x.dtype, be);
  be.softmax(x.buffer, out.buffer, rows, cols);
  record('softmax', out, [x], [out], (g, [y]) => {
    const dx = Tensor.empty(x.shape, x.dtype, be);
    be.softmaxBackward(y!.buffer, g.buffer, dx.buffer, rows, cols);
    return [dx];
  });
  return out;
}
