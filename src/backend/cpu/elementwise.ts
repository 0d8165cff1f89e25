/** Reference loops: fill, strided copy, cast, unary/binary elementwise, reductions. */
import type { BinaryOp, CopyArgs, UnaryOp } from '../backend.js';
import type { DType, HostArray } from '../../tensor/dtype.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../tensor/dtype.js';

export type F = Float32Array | Float64Array;

export function copyStrided(src: HostArray, dst: HostArray, a: CopyArgs): void {
  const rank = a.shape.length;
  const total = a.shape.reduce((p, s) => p * s, 1);
  if (total === 0) return;
  const idx = new Array<number>(rank).fill(0);
  let s = a.srcOffset;
  let d = a.dstOffset;
  for (let n = 0; n < total; n++) {
    if (a.accumulate) dst[d] = dst[d]! + src[s]!;
    else dst[d] = src[s]!;
    // odometer increment, updating the offsets incrementally
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]!++;
      s += a.srcStrides[ax]!;
      d += a.dstStrides[ax]!;
      if (idx[ax]! < a.shape[ax]!) break;
      s -= a.srcStrides[ax]! * a.shape[ax]!;
      d -= a.dstStrides[ax]! * a.shape[ax]!;
      idx[ax] = 0;
    }
  }
}

function readAsNumber(dtype: DType): (v: number) => number {
  if (dtype === 'bf16') return bf16BitsToF32;
  if (dtype === 'f16') return f16BitsToF32;
  return (v) => v;
}

function writeAsStored(dtype: DType): (v: number) => number {
  if (dtype === 'bf16') return f32ToBf16Bits;
  if (dtype === 'f16') return f32ToF16Bits;
  if (dtype === 'i32') return (v) => Math.trunc(v);
  return (v) => v;
}

export function cast(src: HostArray, srcType: DType, dst: HostArray, dstType: DType): void {
  const rd = readAsNumber(srcType);
  const wr = writeAsStored(dstType);
  for (let i = 0; i < src.length; i++) dst[i] = wr(rd(src[i]!));
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

export function unary(op: UnaryOp, x: F, out: F): void {
  const n = x.length;
  switch (op) {
    case 'neg': for (let i = 0; i < n; i++) out[i] = -x[i]!; break;
    case 'exp': for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!); break;
    case 'log': for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!); break;
    case 'silu': for (let i = 0; i < n; i++) out[i] = x[i]! * sigmoid(x[i]!); break;
    case 'sigmoid': for (let i = 0; i < n; i++) out[i] = sigmoid(x[i]!); break;
    case 'square': for (let i = 0; i < n; i++) out[i] = x[i]! * x[i]!; break;
    case 'sqrt': for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!); break;
    case 'tanh': for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!); break;
    case 'relu': for (let i = 0; i < n; i++) out[i] = x[i]! > 0 ? x[i]! : 0; break;
  }
}

/** Derivative of each unary op at x. */
function derivative(op: UnaryOp, x: number): number {
  switch (op) {
    case 'neg': return -1;
    case 'exp': return Math.exp(x);
    case 'log': return 1 / x;
    case 'silu': { const s = sigmoid(x); return s * (1 + x * (1 - s)); }
    case 'sigmoid': { const s = sigmoid(x); return s * (1 - s); }
    case 'square': return 2 * x;
    case 'sqrt': return 0.5 / Math.sqrt(x);
    case 'tanh': { const t = Math.tanh(x); return 1 - t * t; }
    case 'relu': return x > 0 ? 1 : 0;
  }
}

export function unaryBackward(op: UnaryOp, x: F, dy: F, dx: F): void {
  for (let i = 0; i < x.length; i++) dx[i] = dy[i]! * derivative(op, x[i]!);
}

/** out = silu(gate) · up. */
export function swiglu(gate: F, up: F, out: F): void {
  for (let i = 0; i < gate.length; i++) out[i] = gate[i]! * sigmoid(gate[i]!) * up[i]!;
}

/** dgate = dout · up · silu'(gate), dup = dout · silu(gate). */
export function swigluBackward(gate: F, up: F, dout: F, dgate: F | null, dup: F | null): void {
  for (let i = 0; i < gate.length; i++) {
    const x = gate[i]!;
    const s = sigmoid(x);
    if (dgate) dgate[i] = dout[i]! * up[i]! * s * (1 + x * (1 - s));
    if (dup) dup[i] = dout[i]! * x * s;
  }
}

export function binary(op: BinaryOp, a: F, b: F, out: F): void {
  const n = a.length;
  const nb = b.length;
  for (let i = 0, j = 0; i < n; i++, j = j + 1 === nb ? 0 : j + 1) {
    const x = a[i]!;
    const y = b[j]!;
    out[i] = op === 'add' ? x + y : op === 'sub' ? x - y : op === 'mul' ? x * y : x / y;
  }
}

export function affine(x: F, alpha: number, beta: number, out: F): void {
  for (let i = 0; i < x.length; i++) out[i] = alpha * x[i]! + beta;
}

export function reduceSum(x: F, out: F, outer: number, size: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = 0;
      for (let r = 0; r < size; r++) acc += x[(o * size + r) * inner + i]!;
      out[o * inner + i] = acc;
    }
  }
}
