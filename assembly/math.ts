/**
 * Vector math on f32x4: exp, log, sigmoid, tanh. Polynomial approximations after Cephes
 * (expf, logf), about 1–2 ulp in single precision, with the IEEE special cases kept
 * (exp(−inf) = 0, exp(+inf) = inf, log(0) = −inf, log(x<0) = NaN, NaN → NaN), so masked
 * scores (−inf) give exactly 0 probability. The scalar forms run the vector code on one
 * lane, so a tensor's tail elements round exactly like its body.
 */
import { madd } from './simd';

// @ts-ignore: decorator
@inline function select(mask: v128, a: v128, b: v128): v128 { return v128.bitselect(a, b, mask); }

/** e^x on four lanes. Inlined: it sits in the inner loops of softmax and attention. */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  // x = n·ln2 + r with |r| ≤ ln2/2; e^x = 2^n · e^r, e^r by a degree-6 polynomial.
  const hi = f32x4.splat(88.3762626647949);
  const lo = f32x4.splat(-87.3365447504);
  const xc = f32x4.max(f32x4.min(x, hi), lo);
  const n = f32x4.floor(madd(xc, f32x4.splat(1.44269504088896341), f32x4.splat(0.5)));
  let r = madd(n, f32x4.splat(-0.693359375), xc);
  r = madd(n, f32x4.splat(2.12194440e-4), r);
  let y = f32x4.splat(1.9875691500e-4);
  y = madd(y, r, f32x4.splat(1.3981999507e-3));
  y = madd(y, r, f32x4.splat(8.3334519073e-3));
  y = madd(y, r, f32x4.splat(4.1665795894e-2));
  y = madd(y, r, f32x4.splat(1.6666665459e-1));
  y = madd(y, r, f32x4.splat(5.0000001201e-1));
  y = madd(y, f32x4.mul(r, r), f32x4.add(r, f32x4.splat(1)));
  // 2^(n−1) built in the exponent field (n ∈ [−126, 128], so up to 2^127), times 2·y;
  // results below about 2.4e−38 flush to 0.
  const e = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(126)), 23);
  let out = f32x4.mul(f32x4.add(y, y), e);
  out = select(f32x4.lt(x, lo), f32x4.splat(0), out);
  out = select(f32x4.gt(x, hi), f32x4.splat(Infinity), out);
  return select(f32x4.ne(x, x), x, out);
}

/** Natural log on four lanes. */
export function log4(x0: v128): v128 {
  // Subnormals: scale into the normal range first.
  const tiny = f32x4.lt(x0, f32x4.splat(1.17549435e-38));
  const x = select(tiny, f32x4.mul(x0, f32x4.splat(8388608.0)), x0);
  const bits = x;
  let e = f32x4.convert_i32x4_s(i32x4.sub(i32x4.shr_u(bits, 23), i32x4.splat(126)));
  e = select(tiny, f32x4.sub(e, f32x4.splat(23)), e);
  // mantissa in [0.5, 1)
  let m = v128.or(v128.and(bits, i32x4.splat(0x807fffff)), i32x4.splat(0x3f000000));
  const small = f32x4.lt(m, f32x4.splat(0.707106781186547524));
  e = select(small, f32x4.sub(e, f32x4.splat(1)), e);
  m = f32x4.sub(select(small, f32x4.add(m, m), m), f32x4.splat(1));
  const z = f32x4.mul(m, m);
  let y = f32x4.splat(7.0376836292e-2);
  y = madd(y, m, f32x4.splat(-1.1514610310e-1));
  y = madd(y, m, f32x4.splat(1.1676998740e-1));
  y = madd(y, m, f32x4.splat(-1.2420140846e-1));
  y = madd(y, m, f32x4.splat(1.4249322787e-1));
  y = madd(y, m, f32x4.splat(-1.6668057665e-1));
  y = madd(y, m, f32x4.splat(2.0000714765e-1));
  y = madd(y, m, f32x4.splat(-2.4999993993e-1));
  y = madd(y, m, f32x4.splat(3.3333331174e-1));
  y = f32x4.mul(f32x4.mul(y, m), z);
  y = madd(e, f32x4.splat(-2.12194440e-4), y);
  y = madd(z, f32x4.splat(-0.5), y);
  let out = madd(e, f32x4.splat(0.693359375), f32x4.add(m, y));
  out = select(f32x4.eq(x0, f32x4.splat(0)), f32x4.splat(-Infinity), out);
  out = select(f32x4.lt(x0, f32x4.splat(0)), f32x4.splat(NaN), out);
  out = select(f32x4.eq(x0, f32x4.splat(Infinity)), x0, out);
  return select(f32x4.ne(x0, x0), x0, out);
}

/** 1 / (1 + e^−x). */
// @ts-ignore: decorator
@inline export function sigmoid4(x: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), exp4(f32x4.neg(x))));
}

/** tanh x = sign(x)·(1 − 2/(e^{2|x|} + 1)); x − x³/3 near 0 to keep the relative error small. */
export function tanh4(x: v128): v128 {
  const ax = f32x4.abs(x);
  const t = f32x4.sub(f32x4.splat(1), f32x4.div(f32x4.splat(2), f32x4.add(exp4(f32x4.add(ax, ax)), f32x4.splat(1))));
  const small = f32x4.mul(x, f32x4.sub(f32x4.splat(1), f32x4.mul(f32x4.mul(x, x), f32x4.splat(0.333333333))));
  const signed = v128.or(t, v128.and(x, i32x4.splat(0x80000000)));
  return select(f32x4.lt(ax, f32x4.splat(0.004)), small, signed);
}

/** Scalar e^x through the vector code (same rounding as the vector lanes). */
export function expf(x: f32): f32 { return f32x4.extract_lane(exp4(f32x4.splat(x)), 0); }
export function logf(x: f32): f32 { return f32x4.extract_lane(log4(f32x4.splat(x)), 0); }
