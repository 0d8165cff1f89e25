/** Elementwise ops with backward rules. Binary ops broadcast the second operand. */
import type { BinaryOp, UnaryOp } from '../../backend/backend.js';
import { LongLoraError } from '../../errors.js';
import { record } from '../autograd.js';
import type { DType } from '../dtype.js';
import { isFloat } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { sumToShape } from './shape.js';
import { backendOf, computeDType, fmt } from './util.js';

/** Whether `b` broadcasts onto `a` as a trailing block (b's shape is a suffix of a's, ignoring leading 1s). */
function trailingBroadcast(a: readonly number[], b: readonly number[]): boolean {
  const bs = [...b];
  while (bs.length > 0 && bs[0] === 1) bs.shift();
  if (bs.length > a.length) return false;
  const off = a.length - bs.length;
  return bs.every((s, i) => s === a[off + i]);
}

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const be = backendOf(op, a, b);
  computeDType(op, a, b);
  const out = Tensor.empty(a.shape, a.dtype, be);
  be.binary(op, a.buffer, b.buffer, out.buffer);
  return out;
}

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (!trailingBroadcast(a.shape, b.shape)) {
    if ((op === 'add' || op === 'mul') && trailingBroadcast(b.shape, a.shape)) return binary(op, b, a);
    throw new LongLoraError(`${op}: shapes ${fmt(a.shape)} and ${fmt(b.shape)} do not broadcast (the second must match the trailing dims of the first)`);
  }
  const out = binaryRaw(op, a, b);
  record(op, out, [a, b], op === 'add' || op === 'sub' ? [] : [a, b], (g, s, needs) => {
    const [sa, sb] = s;
    switch (op) {
      case 'add': return [needs[0] ? g.view(a.shape) : null, needs[1] ? sumToShape(g, b.shape) : null];
      case 'sub': return [needs[0] ? g.view(a.shape) : null, needs[1] ? neg(sumToShape(g, b.shape)) : null];
      case 'mul': return [needs[0] ? binaryRaw('mul', g, sb!) : null, needs[1] ? sumToShape(binaryRaw('mul', g, sa!), b.shape) : null];
      case 'div': return [
        needs[0] ? binaryRaw('div', g, sb!) : null,
        needs[1] ? neg(sumToShape(binaryRaw('div', binaryRaw('mul', g, sa!), binaryRaw('mul', sb!, sb!)), b.shape)) : null,
      ];
    }
  });
  return out;
}

export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);
export const div = (a: Tensor, b: Tensor): Tensor => binary('div', a, b);

/** dst += src in place (no autograd). Used for gradient accumulation. */
export function addInto(dst: Tensor, src: Tensor): void {
  const be = backendOf('addInto', dst, src);
  computeDType('addInto', dst, src);
  if (dst.size !== src.size) throw new LongLoraError(`addInto: ${fmt(dst.shape)} += ${fmt(src.shape)}`);
  be.binary('add', dst.buffer, src.buffer, dst.buffer);
}

function unary(op: UnaryOp, x: Tensor): Tensor {
  const be = x.backend;
  computeDType(op, x);
  const out = Tensor.empty(x.shape, x.dtype, be);
  be.unary(op, x.buffer, out.buffer);
  record(op, out, [x], [x], (g, [sx]) => {
    const dx = Tensor.empty(x.shape, x.dtype, be);
    be.unaryBackward(op, sx!.buffer, g.buffer, dx.buffer);
    return [dx];
  });
  return out;
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const square = (x: Tensor): Tensor => unary('square', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);

/** alpha · x + beta. */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  computeDType('affine', x);
  const out = Tensor.empty(x.shape, x.dtype, x.backend);
  x.backend.affine(x.buffer, alpha, beta, out.buffer);
  record('affine', out, [x], [], (g) => [scale(g, alpha)]);
  return out;
}

export const scale = (x: Tensor, alpha: number): Tensor => affine(x, alpha, 0);
export const addScalar = (x: Tensor, beta: number): Tensor => affine(x, 1, beta);

/** A copy in another dtype (f16/bf16 round to nearest even). Gradients cast back. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) {
    const same = x.view(x.shape);
    record('cast', same, [x], [], (g) => [g.view(x.shape)]);
    return same;
  }
  const out = Tensor.empty(x.shape, dtype, x.backend);
  x.backend.cast(x.buffer, out.buffer);
  if (isFloat(dtype)) record('cast', out, [x], [], (g) => [cast(g, x.dtype)]);
  return out;
}

/** A fresh copy (no autograd). */
export function copy(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape, x.dtype, x.backend);
  x.backend.copy(x.buffer, out.buffer, {
    shape: [x.size], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1], accumulate: false,
  });
  return out;
}

/** t ← t · s in place, for a one-element tensor s (not recorded on the tape). */
export function mulInPlace(t: Tensor, s: Tensor): void {
  const be = backendOf('mulInPlace', t, s);
  computeDType('mulInPlace', t, s);
  if (s.size !== 1) throw new LongLoraError(`mulInPlace: the factor must have one element, got ${fmt(s.shape)}`);
  be.binary('mul', t.buffer, s.buffer, t.buffer);
}

/** t ← alpha·t in place (no autograd). Used to unscale gradients. */
export function scaleInPlace(t: Tensor, alpha: number): void {
  computeDType('scaleInPlace', t);
  t.backend.affine(t.buffer, alpha, 0, t.buffer);
}
