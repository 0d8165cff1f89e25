/** Shape ops: reshape (a view), permute, broadcast, slice, concat — all differentiable. */
import type { CopyArgs } from '../../backend/backend.js';
import { LongLoraError } from '../../errors.js';
import { record } from '../autograd.js';
import { numelOf, Tensor, type Shape } from '../tensor.js';
import { zeros } from './create.js';
import { backendOf, fmt, normAxis, sameShape, stridesOf } from './util.js';

/** Same data, new shape (one dim may be −1). Shares the buffer. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((s) => s !== -1);
  const free = shape.length - known.length;
  if (free > 1) throw new LongLoraError(`reshape: more than one −1 in ${fmt(shape)}`);
  let target = shape;
  if (free === 1) {
    const rest = numelOf(known);
    if (rest === 0 || x.size % rest !== 0) throw new LongLoraError(`reshape: cannot infer −1 reshaping ${fmt(x.shape)} to ${fmt(shape)}`);
    target = shape.map((s) => (s === -1 ? x.size / rest : s));
  }
  if (numelOf(target) !== x.size) throw new LongLoraError(`reshape: ${fmt(x.shape)} has ${x.size} elements, ${fmt(target)} has ${numelOf(target)}`);
  const out = x.view(target);
  record('reshape', out, [x], [], (g) => [g.view(x.shape)]);
  return out;
}

/** Runs the strided-copy kernel into a new tensor of `shape`. */
function copyInto(x: Tensor, dst: Tensor, args: CopyArgs): Tensor {
  backendOf('copy', x, dst).copy(x.buffer, dst.buffer, args);
  return dst;
}

/** Reorders axes: out.shape[i] = x.shape[perm[i]]. Copies. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const r = x.rank;
  if (perm.length !== r || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw new LongLoraError(`permute: ${fmt(perm)} is not a permutation of ${r} axes`);
  }
  const xs = stridesOf(x.shape);
  const shape = perm.map((p) => x.shape[p]!);
  const out = Tensor.empty(shape, x.dtype, x.backend);
  copyInto(x, out, { shape, srcOffset: 0, srcStrides: perm.map((p) => xs[p]!), dstOffset: 0, dstStrides: stridesOf(shape), accumulate: false });
  const inv = new Array<number>(r);
  perm.forEach((p, i) => { inv[p] = i; });
  record('permute', out, [x], [], (g) => [permute(g, inv)]);
  return out;
}

/** Swaps two axes. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const r = x.rank;
  const perm = [...Array(r).keys()];
  const ia = normAxis('transpose', a, r);
  const ib = normAxis('transpose', b, r);
  perm[ia] = ib;
  perm[ib] = ia;
  return permute(x, perm);
}

/** Strides of x read as `shape` under numpy broadcasting (0 on broadcast axes). */
function broadcastStrides(op: string, xShape: Shape, shape: Shape): number[] {
  if (xShape.length > shape.length) throw new LongLoraError(`${op}: cannot broadcast ${fmt(xShape)} to ${fmt(shape)}`);
  const xs = stridesOf(xShape);
  const lead = shape.length - xShape.length;
  return shape.map((s, i) => {
    if (i < lead) return 0;
    const d = xShape[i - lead]!;
    if (d === s) return xs[i - lead]!;
    if (d === 1) return 0;
    throw new LongLoraError(`${op}: cannot broadcast ${fmt(xShape)} to ${fmt(shape)}`);
  });
}

/** Numpy-style broadcast (size-1 and missing leading axes repeat). Copies. */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return reshape(x, shape);
  const strides = broadcastStrides('broadcastTo', x.shape, shape);
  const out = Tensor.empty(shape, x.dtype, x.backend);
  copyInto(x, out, { shape, srcOffset: 0, srcStrides: strides, dstOffset: 0, dstStrides: stridesOf(shape), accumulate: false });
  record('broadcastTo', out, [x], [], (g) => [sumToShape(g, x.shape)]);
  return out;
}

/** Sums a gradient of a broadcast result back to the operand's shape. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g.view(shape);
  const strides = broadcastStrides('sumToShape', shape, g.shape);
  const out = zeros(shape, g.dtype, g.backend);
  copyInto(g, out, { shape: g.shape, srcOffset: 0, srcStrides: stridesOf(g.shape), dstOffset: 0, dstStrides: strides, accumulate: true });
  return out;
}

/** x[..., start:end, ...] along `axis`. Copies. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis('slice', axis, x.rank);
  const n = x.shape[ax]!;
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= n)) {
    throw new LongLoraError(`slice: range [${start}, ${end}) is outside axis ${ax} of size ${n}`);
  }
  const shape = x.shape.map((s, i) => (i === ax ? end - start : s));
  const xs = stridesOf(x.shape);
  const out = Tensor.empty(shape, x.dtype, x.backend);
  copyInto(x, out, { shape, srcOffset: start * xs[ax]!, srcStrides: xs, dstOffset: 0, dstStrides: stridesOf(shape), accumulate: false });
  record('slice', out, [x], [], (g) => {
    const dx = zeros(x.shape, g.dtype, g.backend);
    copyInto(g, dx, { shape, srcOffset: 0, srcStrides: stridesOf(shape), dstOffset: start * xs[ax]!, dstStrides: xs, accumulate: false });
    return [dx];
  });
  return out;
}

/** Joins tensors along `axis`. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new LongLoraError('concat: no tensors');
  const first = xs[0]!;
  const ax = normAxis('concat', axis, first.rank);
  for (const t of xs) {
    if (t.rank !== first.rank || t.dtype !== first.dtype || t.shape.some((s, i) => i !== ax && s !== first.shape[i])) {
      throw new LongLoraError(`concat: ${fmt(t.shape)} ${t.dtype} does not match ${fmt(first.shape)} ${first.dtype} outside axis ${ax}`);
    }
  }
  const shape = first.shape.map((s, i) => (i === ax ? xs.reduce((a, t) => a + t.shape[ax]!, 0) : s));
  const os = stridesOf(shape);
  const out = Tensor.empty(shape, first.dtype, first.backend);
  const starts: number[] = [];
  let at = 0;
  for (const t of xs) {
    starts.push(at);
    copyInto(t, out, { shape: t.shape, srcOffset: 0, srcStrides: stridesOf(t.shape), dstOffset: at * os[ax]!, dstStrides: os, accumulate: false });
    at += t.shape[ax]!;
  }
  record('concat', out, xs, [], (g, _s, needs) =>
    xs.map((t, i) => (needs[i] ? slice(g, ax, starts[i]!, starts[i]! + t.shape[ax]!) : null)));
  return out;
}
