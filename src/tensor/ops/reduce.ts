/** Reductions: sum and mean over one axis or all. */
import { record } from '../autograd.js';
import { Tensor } from '../tensor.js';
import { broadcastTo } from './shape.js';
import { scale } from './elementwise.js';
import { computeDType, normAxis } from './util.js';

/** Sum over `axis` (all axes when omitted, giving shape []). */
export function sum(x: Tensor, axis?: number, keepDims = false): Tensor {
  computeDType('sum', x);
  let outer = 1;
  let size = x.size;
  let inner = 1;
  let outShape: number[] = [];
  let keptShape: number[] = x.shape.map(() => 1);
  if (axis !== undefined) {
    const ax = normAxis('sum', axis, x.rank);
    outer = x.shape.slice(0, ax).reduce((a, s) => a * s, 1);
    size = x.shape[ax]!;
    inner = x.shape.slice(ax + 1).reduce((a, s) => a * s, 1);
    keptShape = x.shape.map((s, i) => (i === ax ? 1 : s));
    outShape = keepDims ? keptShape : x.shape.filter((_, i) => i !== ax);
  } else if (keepDims) outShape = keptShape;
  const out = Tensor.empty(outShape, x.dtype, x.backend);
  x.backend.reduceSum(x.buffer, out.buffer, outer, size, inner);
  record('sum', out, [x], [], (g) => [broadcastTo(g.view(keptShape), x.shape)]);
  return out;
}

export function mean(x: Tensor, axis?: number, keepDims = false): Tensor {
  const n = axis === undefined ? x.size : x.shape[normAxis('mean', axis, x.rank)]!;
  return scale(sum(x, axis, keepDims), 1 / n);
}
