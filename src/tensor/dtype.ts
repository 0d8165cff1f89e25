/**
 * Element types. Weights may be stored as f16/bf16; compute is f32 (f64 on the CPU
 * reference backend, for finite-difference gradient checks); token ids are i32; u8 holds
 * raw bytes (quantised codes, masks).
 */
export type DType = 'f32' | 'f64' | 'f16' | 'bf16' | 'i32' | 'u8';

export type FloatDType = 'f32' | 'f64' | 'f16' | 'bf16';

/** Host-side storage for each dtype. f16 and bf16 are raw 16-bit patterns. */
export type HostArray = Float32Array | Float64Array | Uint16Array | Int32Array | Uint8Array;

export const DTYPES: readonly DType[] = ['f32', 'f64', 'f16', 'bf16', 'i32', 'u8'];

/** Storage dtype of activations in training and evaluation (mixed precision: 16-bit activations, f32 compute). */
export type Precision = 'f32' | 'bf16' | 'f16';
export const PRECISIONS: readonly Precision[] = ['f32', 'bf16', 'f16'];

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'f32' || dtype === 'f64' || dtype === 'f16' || dtype === 'bf16';
}

/** f16 or bf16: 16-bit float storage. */
export function isHalf(dtype: DType): dtype is 'f16' | 'bf16' {
  return dtype === 'f16' || dtype === 'bf16';
}

/** f32, f16 or bf16: the storages a precision (or a GPU kernel operand) can take. */
export function isPrecision(dtype: DType): dtype is Precision {
  return dtype === 'f32' || isHalf(dtype);
}

/** Whether kernels compute in this dtype directly (f16/bf16 are storage only). */
export function isComputeDType(dtype: DType): dtype is 'f32' | 'f64' {
  return dtype === 'f32' || dtype === 'f64';
}

export function itemSize(dtype: DType): number {
  switch (dtype) {
    case 'f64': return 8;
    case 'f32': case 'i32': return 4;
    case 'f16': case 'bf16': return 2;
    case 'u8': return 1;
  }
}

export function allocHost(dtype: DType, numel: number): HostArray {
  switch (dtype) {
    case 'f32': return new Float32Array(numel);
    case 'f64': return new Float64Array(numel);
    case 'f16': case 'bf16': return new Uint16Array(numel);
    case 'i32': return new Int32Array(numel);
    case 'u8': return new Uint8Array(numel);
  }
}

/** Whether `a` is the host array type that stores `dtype`. */
export function hostMatches(dtype: DType, a: HostArray): boolean {
  switch (dtype) {
    case 'f32': return a instanceof Float32Array;
    case 'f64': return a instanceof Float64Array;
    case 'f16': case 'bf16': return a instanceof Uint16Array;
    case 'i32': return a instanceof Int32Array;
    case 'u8': return a instanceof Uint8Array;
  }
}

// ---- 16-bit float conversions -------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 → bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** f32 → IEEE half bits, round to nearest even, with subnormals, overflow to inf, NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf or NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflow to signed zero
    mant |= 0x800000; // implicit leading one
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1))) m += 1;
    return sign | m; // may carry into the smallest normal, which is correct
  }
  const rest = mant & 0x1fff;
  let m = mant >>> 13;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m += 1;
    if (m === 0x400) { m = 0; e += 1; if (e >= 0x1f) return sign | 0x7c00; }
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Converts any float host array to a float32/float64 array (`to`). */
export function toFloatArray(src: HostArray, srcDType: DType, to: 'f32' | 'f64'): Float32Array | Float64Array {
  const n = src.length;
  const out = to === 'f32' ? new Float32Array(n) : new Float64Array(n);
  if (srcDType === 'bf16') for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(src[i]!);
  else if (srcDType === 'f16') for (let i = 0; i < n; i++) out[i] = f16BitsToF32(src[i]!);
  else out.set(src as ArrayLike<number>);
  return out;
}

/** Converts a float32/float64 array to the storage of `to` (rounding for f16/bf16). */
export function fromFloatArray(src: ArrayLike<number>, to: DType): HostArray {
  const n = src.length;
  const out = allocHost(to, n);
  if (to === 'bf16') for (let i = 0; i < n; i++) out[i] = f32ToBf16Bits(src[i]!);
  else if (to === 'f16') for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(src[i]!);
  else if (to === 'i32' || to === 'u8') {
    for (let i = 0; i < n; i++) {
      const v = src[i]!;
      if (!Number.isInteger(v)) throw new RangeError(`fromFloatArray: ${v} at index ${i} is not an integer`);
      out[i] = v;
    }
  } else (out as Float32Array | Float64Array).set(src);
  return out;
}
