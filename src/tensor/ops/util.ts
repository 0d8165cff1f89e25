/** Checks shared by the ops: one backend, one compute dtype, readable shape messages. */
import type { Backend } from '../../backend/backend.js';
import { LongLoraError } from '../../errors.js';
import type { Tensor } from '../tensor.js';

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

/** The shared compute dtype (f32 or f64) of float operands. */
export function computeDType(op: string, ...ts: Tensor[]): 'f32' | 'f64' {
  const dt = ts[0]!.dtype;
  for (const t of ts) {
    if (t.dtype !== 'f32' && t.dtype !== 'f64') {
      throw new LongLoraError(`${op}: ${t} has dtype ${t.dtype}; compute needs f32 or f64 (cast 16-bit weights first)`);
    }
    if (t.dtype !== dt) throw new LongLoraError(`${op}: mixed dtypes ${dt} and ${t.dtype}`);
  }
  return dt as 'f32' | 'f64';
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
