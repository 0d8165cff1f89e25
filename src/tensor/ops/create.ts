/** Tensor factories. */
import type { Backend } from '../../backend/backend.js';
import { currentBackend } from '../../backend/registry.js';
import { LongLoraError } from '../../errors.js';
import type { DType } from '../dtype.js';
import { allocHost, fromFloatArray, isHalf } from '../dtype.js';
import { Rng } from '../random.js';
import { fromHost, numelOf, Tensor, type Shape } from '../tensor.js';

export { fromHost };

export function full(shape: Shape, value: number, dtype: DType = 'f32', backend: Backend = currentBackend()): Tensor {
  const t = Tensor.empty(shape, dtype, backend);
  if (isHalf(dtype)) backend.upload(t.buffer, fromFloatArray(new Float32Array(t.size).fill(value), dtype));
  else backend.fill(t.buffer, value);
  return t;
}

export function zeros(shape: Shape, dtype: DType = 'f32', backend?: Backend): Tensor {
  return full(shape, 0, dtype, backend);
}

export function ones(shape: Shape, dtype: DType = 'f32', backend?: Backend): Tensor {
  return full(shape, 1, dtype, backend);
}

export function zerosLike(t: Tensor): Tensor {
  return zeros(t.shape, t.dtype, t.backend);
}

export function onesLike(t: Tensor): Tensor {
  return ones(t.shape, t.dtype, t.backend);
}

/**
 * A tensor from numbers (nested arrays are flattened; `shape` defaults to the nesting).
 * Floats become f32 unless `dtype` says otherwise.
 */
export function tensor(values: number | readonly unknown[] | ArrayLike<number>, shape?: Shape, dtype: DType = 'f32', backend?: Backend): Tensor {
  const flat: number[] = [];
  const inferred: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (typeof v === 'number') { flat.push(v); return; }
    const arr = v as ArrayLike<unknown>;
    if (inferred.length === depth) inferred.push(arr.length);
    else if (inferred[depth] !== arr.length) throw new LongLoraError('tensor(): ragged nested array');
    for (let i = 0; i < arr.length; i++) walk(arr[i], depth + 1);
  };
  walk(values, 0);
  const s = shape ?? inferred;
  if (numelOf(s) !== flat.length) throw new LongLoraError(`tensor(): ${flat.length} values for shape [${s.join(', ')}]`);
  return fromHost(fromFloatArray(flat, dtype), s, dtype, backend);
}

/** Normal(0, std²) values from a seeded generator, generated on the host. */
export function randn(shape: Shape, rng: Rng, std = 1, dtype: DType = 'f32', backend?: Backend): Tensor {
  const data = new Float64Array(numelOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return fromHost(fromFloatArray(data, dtype), shape, dtype, backend);
}

/** Uniform [lo, hi) values from a seeded generator. */
export function randu(shape: Shape, rng: Rng, lo = 0, hi = 1, dtype: DType = 'f32', backend?: Backend): Tensor {
  const data = new Float64Array(numelOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = lo + (hi - lo) * rng.uniform();
  return fromHost(fromFloatArray(data, dtype), shape, dtype, backend);
}

/** Integer ids (i32) from a host array. */
export function ids(values: ArrayLike<number>, shape: Shape, backend?: Backend): Tensor {
  const data = allocHost('i32', values.length) as Int32Array;
  if (values instanceof Int32Array) data.set(values);
  else {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
        throw new LongLoraError(`ids: element ${i} is ${v}, not a whole number; token ids (and labels) are integers`);
      }
      data[i] = v;
    }
  }
  return fromHost(data, shape, 'i32', backend);
}
