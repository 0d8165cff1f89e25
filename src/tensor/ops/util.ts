/** Checks shared by the ops: one backend, one compute dtype, readable shape messages. */
import type { Backend } from '../../backend/backend.js';
import { LongLoraError } from '../../errors.js';
import type { Tensor } from '../tensor.js';
import { isFloat } from '../dtype.js';

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** The backend all operands live on. */
export function backendOf(op: string, ...ts: Tensor[]): Backend {
  const be = ts[0]!.backend;
  for (const t of ts) {
    if (t.backend !== be) throw new LongLoraError(`${op}: operands live on different backends (${be.name}, ${t.backend.name}); move them to one backend first`);
  }
  return be;
}

/**
 * The compute dtype of float operands: f32 for any mix of f32, f16 and bf16 (16-bit
 * operands are storage, read as f32; see backend.ts), f64 only when every operand is f64.
 */
export function computeDType(op: string, ...ts: Tensor[]): 'f32' | 'f64' {
  let f64 = 0;
  for (const t of ts) {
    if (!isFloat(t.dtype)) throw new LongLoraError(`${op}: ${t} has dtype ${t.dtype}; it needs a float tensor (f32, f16, bf16 or f64)`);
    if (t.dtype === 'f64') f64++;
  }
  if (f64 > 0 && f64 < ts.length) {
    throw new LongLoraError(`${op}: mixed dtypes ${ts.map((t) => t.dtype).join(', ')}; f64 (gradient checks) cannot be mixed with other float dtypes`);
  }
  return f64 > 0 ? 'f64' : 'f32';
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]!; }
  return s;
}

/** Resolves a possibly negative axis. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new LongLoraError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/**
 * Rows of a blocked computation: as many rows of `rowBytes` each as fit `budgetBytes`,
 * rounded down to a multiple of `multiple` and kept within [min, max].
 */
export function rowsWithin(budgetBytes: number, rowBytes: number, multiple: number, min: number, max: number): number {
  const rows = Math.floor(budgetBytes / rowBytes);
  return Math.max(min, Math.min(max, rows - (rows % multiple)));
}
