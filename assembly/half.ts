/**
 * 16-bit storage for the kernels that read and write 16-bit operands themselves. A bf16
 * value is the high half of an f32, so widening is a shift and narrowing rounds to
 * nearest even (a NaN stays a quiet NaN) — exactly the host's f32ToBf16Bits. f16 (IEEE
 * half) widens exactly, subnormals, infinities and NaN payloads included, and narrows with
 * round to nearest even — the host's f16BitsToF32 / f32ToF16Bits.
 */

/** bf16 bits of x, round to nearest even; NaN stays a quiet NaN. */
export function f32ToBf16(x: f32): u32 {
  const bits = reinterpret<u32>(x);
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) & 0xffff;
}

/** Four f32 → bf16 bits in the low half of each i32 lane (round to nearest even, NaN kept quiet). */
export function bf16x4(x: v128): v128 {
  const r = i32x4.shr_u(i32x4.add(i32x4.add(x, i32x4.splat(0x7fff)), v128.and(i32x4.shr_u(x, 16), i32x4.splat(1))), 16);
  const nan = i32x4.gt_u(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  return v128.bitselect(v128.or(i32x4.shr_u(x, 16), i32x4.splat(0x40)), r, nan);
}

/** Element i of a bf16 array at p, as f32. */
// @ts-ignore: decorator
@inline export function loadBf16(p: usize, i: i32): f32 {
  return reinterpret<f32>(<u32>load<u16>(p + (<usize>i << 1)) << 16);
}

/** n bf16 values at src → f32 at dst. */
export function widenBf16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    const d = dst + (<usize>i << 2);
    v128.store(d, i32x4.shl(i32x4.extend_low_i16x8_u(h), 16));
    v128.store(d, i32x4.shl(i32x4.extend_high_i16x8_u(h), 16), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), loadBf16(src, i));
}

/** dst[i] = bf16(src[i] · s) for n f32 values at src. */
export function narrowBf16(src: usize, dst: usize, n: i32, s: f32): void {
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = src + (<usize>i << 2);
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(bf16x4(f32x4.mul(v128.load(p), vs)), bf16x4(f32x4.mul(v128.load(p, 16), vs))));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToBf16(load<f32>(src + (<usize>i << 2)) * s));
}

/** `rows` rows of n 16-bit values (bf16, or f16 when `f16`) `srs` bytes apart → f32 rows `drs` bytes apart. */
export function widenRows(src: usize, srs: usize, rows: i32, n: i32, dst: usize, drs: usize, f16: bool): void {
  for (let r = 0; r < rows; r++) {
    if (f16) widenF16(src + <usize>r * srs, dst + <usize>r * drs, n);
    else widenBf16(src + <usize>r * srs, dst + <usize>r * drs, n);
  }
}

/** Four values at element i of p (f32, or bf16 when bf) as f32x4. */
// @ts-ignore: decorator
@inline export function ld4(p: usize, i: i32, bf: bool): v128 {
  return bf ? i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(p + (<usize>i << 1))), 16) : v128.load(p + (<usize>i << 2));
}

/** Stores four f32 at element i of p as f32, or (bf) as bf16 rounded to nearest even. */
// @ts-ignore: decorator
@inline export function st4(p: usize, i: i32, bf: bool, v: v128): void {
  if (bf) {
    const h = bf16x4(v);
    v128.store64_lane(p + (<usize>i << 1), i16x8.narrow_i32x4_u(h, h), 0);
  } else v128.store(p + (<usize>i << 2), v);
}

/** Element i of p (f32, or bf16 when bf) as f32. */
// @ts-ignore: decorator
@inline export function ld1(p: usize, i: i32, bf: bool): f32 {
  return bf ? loadBf16(p, i) : load<f32>(p + (<usize>i << 2));
}

/** Stores v at element i of p as f32, or (bf) as bf16 rounded to nearest even. */
// @ts-ignore: decorator
@inline export function st1(p: usize, i: i32, bf: bool, v: f32): void {
  if (bf) store<u16>(p + (<usize>i << 1), <u16>f32ToBf16(v));
  else store<f32>(p + (<usize>i << 2), v);
}

// ---- f16 ----------------------------------------------------------------------------------

/** f16 bits h (low 16 bits) as f32, exactly. */
export function f16ToF32(h: u32): f32 {
  const sign: u32 = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0) {
    const v = <f32>mant * 5.9604644775390625e-8; // 2^-24
    return sign ? -v : v;
  }
  if (exp == 0x1f) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
}

/** IEEE half bits of x, round to nearest even, with subnormals, overflow to inf and NaN. */
export function f32ToF16(x: f32): u32 {
  const bits = reinterpret<u32>(x);
  const sign = (bits >> 16) & 0x8000;
  const exp = <i32>((bits >> 23) & 0xff);
  let mant = bits & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half: u32 = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >> shift;
    if (rest > half || (rest == half && (m & 1))) m += 1;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let m = mant >> 13;
  if (rest > 0x1000 || (rest == 0x1000 && (m & 1))) {
    m += 1;
    if (m == 0x400) { m = 0; e += 1; if (e >= 0x1f) return sign | 0x7c00; }
  }
  return sign | (<u32>e << 10) | m;
}

/**
 * Four f16 bit patterns (zero-extended into i32 lanes) → f32x4, exactly: the exponent and
 * mantissa bits moved to an f32's places are the value times 2^-112 (a subnormal half
 * lands on an f32 subnormal, which Wasm keeps), so one multiply by 2^112 rebiases every
 * finite value; an all-ones exponent (inf, NaN) gets the f32 one, keeping the payload.
 */
// @ts-ignore: decorator
@inline export function f16x4(h: v128): v128 {
  const em = v128.and(h, i32x4.splat(0x7fff));
  const mag = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(5.192296858534828e33)); // 2^112
  const special = v128.and(i32x4.gt_s(em, i32x4.splat(0x7bff)), i32x4.splat(0x7f800000));
  return v128.or(v128.or(mag, special), i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** n f16 values at src → f32 at dst. */
export function widenF16(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    const d = dst + (<usize>i << 2);
    v128.store(d, f16x4(i32x4.extend_low_i16x8_u(h)));
    v128.store(d, f16x4(i32x4.extend_high_i16x8_u(h)), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), f16ToF32(<u32>load<u16>(src + (<usize>i << 1))));
}

/** dst[i] = f16(src[i] · s) for n f32 values at src. */
export function narrowF16(src: usize, dst: usize, n: i32, s: f32): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToF16(load<f32>(src + (<usize>i << 2)) * s));
}
