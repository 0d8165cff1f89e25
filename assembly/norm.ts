/**
 * Row softmax and RMSNorm, forward and backward. Rows are contiguous ([rows, cols] /
 * [rows, C] row-major); a chunk is a range of `per` rows. Vectors cover each row's body
 * and a scalar loop its last cols mod 4 (rows sit inside a buffer, so no vector may run
 * past a row). The RMSNorm weight gradient, a sum over rows, is its own kernel chunked
 * over columns so that no two threads add into one element.
 */
import { argF, argI, argP, hmax, hsum, madd } from './simd';
import { exp4, expf } from './math';
import { ld1, ld4, st1, st4 } from './half';

/** Max of n floats at p. */
export function rowMax(p: usize, n: i32): f32 {
  let m = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) m = f32x4.max(m, v128.load(p + (<usize>i << 2)));
  let s = hmax(m);
  for (; i < n; i++) s = max(s, load<f32>(p + (<usize>i << 2)));
  return s;
}

/** out[i] = e^(x[i] − shift) for n floats; returns their sum. out may be x. */
export function expShiftSum(x: usize, out: usize, n: i32, shift: f32): f32 {
  const vs = f32x4.splat(shift);
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const e = exp4(f32x4.sub(v128.load(x + (<usize>i << 2)), vs));
    v128.store(out + (<usize>i << 2), e);
    acc = f32x4.add(acc, e);
  }
  let s = hsum(acc);
  for (; i < n; i++) {
    const e = expf(load<f32>(x + (<usize>i << 2)) - shift);
    store<f32>(out + (<usize>i << 2), e);
    s += e;
  }
  return s;
}

/** p[i] *= a for n floats. */
export function scaleRow(p: usize, n: i32, a: f32): void {
  const va = f32x4.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(p + (<usize>i << 2), f32x4.mul(v128.load(p + (<usize>i << 2)), va));
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), load<f32>(p + (<usize>i << 2)) * a);
}

/** Σ a[i]·b[i] over n floats. */
export function dotRow(a: usize, b: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const o = <usize>i << 2;
    acc0 = madd(v128.load(a + o), v128.load(b + o), acc0);
    acc1 = madd(v128.load(a + o, 16), v128.load(b + o, 16), acc1);
  }
  for (; i + 4 <= n; i += 4) acc0 = madd(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2)), acc0);
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/** Args: 0 x, 1 out, 2 rows, 3 cols, 4 per. */
export function softmax(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const out = argP(args, 1);
  const rows = argI(args, 2);
  const cols = argI(args, 3);
  const per = argI(args, 4);
  const r1 = min(rows, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const o = (<usize>r * <usize>cols) << 2;
    const m = rowMax(x + o, cols);
    const s = expShiftSum(x + o, out + o, cols, m);
    scaleRow(out + o, cols, 1 / s);
  }
}

/** dx = y ⊙ (dy − Σ dy·y). Args: 0 y, 1 dy, 2 dx, 3 rows, 4 cols, 5 per. */
export function softmaxBackward(args: usize, chunk: i32, _tid: i32): void {
  const y = argP(args, 0);
  const dy = argP(args, 1);
  const dx = argP(args, 2);
  const rows = argI(args, 3);
  const cols = argI(args, 4);
  const per = argI(args, 5);
  const r1 = min(rows, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const o = (<usize>r * <usize>cols) << 2;
    const d = dotRow(dy + o, y + o, cols);
    const vd = f32x4.splat(d);
    let i = 0;
    for (; i + 4 <= cols; i += 4) {
      const q = o + (<usize>i << 2);
      v128.store(dx + q, f32x4.mul(v128.load(y + q), f32x4.sub(v128.load(dy + q), vd)));
    }
    for (; i < cols; i++) {
      const q = o + (<usize>i << 2);
      store<f32>(dx + q, load<f32>(y + q) * (load<f32>(dy + q) - d));
    }
  }
}

/** Σ x[i]² over n bf16 values, in dotRow's order. */
function sumSquaresBf16(x: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = ld4(x, i, true), b = ld4(x, i + 4, true);
    acc0 = madd(a, a, acc0);
    acc1 = madd(b, b, acc1);
  }
  for (; i + 4 <= n; i += 4) { const a = ld4(x, i, true); acc0 = madd(a, a, acc0); }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) { const v = ld1(x, i, true); s += v * v; }
  return s;
}

/**
 * out = x · rsqrt(mean(x²) + eps) · w; rstd saved. Args: 0 x, 1 w, 2 out, 3 rstd, 4 rows,
 * 5 C, 6 eps, 7 per; 8–10 whether x, w, out are bf16 (rstd is f32).
 */
export function rmsnorm(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const w = argP(args, 1);
  const out = argP(args, 2);
  const rstd = argP(args, 3);
  const rows = argI(args, 4);
  const C = argI(args, 5);
  const eps = argF(args, 6);
  const per = argI(args, 7);
  const xBf = argI(args, 8) != 0, wBf = argI(args, 9) != 0, oBf = argI(args, 10) != 0;
  const r1 = min(rows, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const o = r * C;
    const ss = <f64>(xBf ? sumSquaresBf16(x + (<usize>o << 1), C) : dotRow(x + (<usize>o << 2), x + (<usize>o << 2), C));
    const s = <f32>(1 / Math.sqrt(ss / <f64>C + eps));
    store<f32>(rstd + (<usize>r << 2), s);
    const vs = f32x4.splat(s);
    let i = 0;
    for (; i + 4 <= C; i += 4) st4(out, o + i, oBf, f32x4.mul(f32x4.mul(ld4(x, o + i, xBf), vs), ld4(w, i, wBf)));
    for (; i < C; i++) st1(out, o + i, oBf, ld1(x, o + i, xBf) * s * ld1(w, i, wBf));
  }
}

/**
 * dx = s·(dy·w − x̂·mean(dy·w·x̂)) with x̂ = x·s. Args: 0 x, 1 w, 2 rstd, 3 dy, 4 dx,
 * 5 rows, 6 C, 7 per; 8–11 whether x, w, dy, dx are bf16.
 */
export function rmsnormBackward(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const w = argP(args, 1);
  const rstd = argP(args, 2);
  const dy = argP(args, 3);
  const dx = argP(args, 4);
  const rows = argI(args, 5);
  const C = argI(args, 6);
  const per = argI(args, 7);
  const xBf = argI(args, 8) != 0, wBf = argI(args, 9) != 0, yBf = argI(args, 10) != 0, dBf = argI(args, 11) != 0;
  const r1 = min(rows, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const o = r * C;
    const s = load<f32>(rstd + (<usize>r << 2));
    // Σ dy·w·x, then ·s²/C
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= C; i += 4) acc = madd(f32x4.mul(ld4(dy, o + i, yBf), ld4(w, i, wBf)), ld4(x, o + i, xBf), acc);
    let dot = hsum(acc);
    for (; i < C; i++) dot += ld1(dy, o + i, yBf) * ld1(w, i, wBf) * ld1(x, o + i, xBf);
    const m = dot * s / <f32>C; // mean(dy·w·x̂)
    const vs = f32x4.splat(s);
    const vms = f32x4.splat(m * s); // x̂·m = x·s·m
    i = 0;
    for (; i + 4 <= C; i += 4) {
      const t = f32x4.sub(f32x4.mul(ld4(dy, o + i, yBf), ld4(w, i, wBf)), f32x4.mul(ld4(x, o + i, xBf), vms));
      st4(dx, o + i, dBf, f32x4.mul(vs, t));
    }
    for (; i < C; i++) st1(dx, o + i, dBf, s * (ld1(dy, o + i, yBf) * ld1(w, i, wBf) - ld1(x, o + i, xBf) * m * s));
  }
}

/**
 * dw[c] += Σ_r dy[r, c]·x[r, c]·s[r], in f64, for a block of 16 columns per chunk (one
 * cache line of each row). Args: 0 x, 1 rstd, 2 dy, 3 dw, 4 rows, 5 C; 6, 7 whether x, dy
 * are bf16 (dw is f32).
 */
export function rmsnormDw(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const rstd = argP(args, 1);
  const dy = argP(args, 2);
  const dw = argP(args, 3);
  const rows = argI(args, 4);
  const C = argI(args, 5);
  const xBf = argI(args, 6) != 0, yBf = argI(args, 7) != 0;
  const c0 = chunk * 16;
  const c1 = min(C, c0 + 16);
  for (let c = c0; c < c1; c += 4) {
    const n = min(4, c1 - c);
    let lo = f64x2.splat(0), hi = f64x2.splat(0);
    if (n == 4) {
      for (let r = 0; r < rows; r++) {
        const e = r * C + c;
        const v = f32x4.mul(f32x4.mul(ld4(dy, e, yBf), ld4(x, e, xBf)), v128.load32_splat(rstd + (<usize>r << 2)));
        lo = f64x2.add(lo, f64x2.promote_low_f32x4(v));
        hi = f64x2.add(hi, f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)));
      }
      const d = dw + (<usize>c << 2);
      store<f32>(d, load<f32>(d) + <f32>f64x2.extract_lane(lo, 0));
      store<f32>(d, load<f32>(d, 4) + <f32>f64x2.extract_lane(lo, 1), 4);
      store<f32>(d, load<f32>(d, 8) + <f32>f64x2.extract_lane(hi, 0), 8);
      store<f32>(d, load<f32>(d, 12) + <f32>f64x2.extract_lane(hi, 1), 12);
    } else {
      for (let j = c; j < c + n; j++) {
        let sum: f64 = 0;
        for (let r = 0; r < rows; r++) {
          const e = r * C + j;
          sum += <f64>(ld1(dy, e, yBf) * ld1(x, e, xBf) * load<f32>(rstd + (<usize>r << 2)));
        }
        store<f32>(dw + (<usize>j << 2), load<f32>(dw + (<usize>j << 2)) + <f32>sum);
      }
    }
  }
}
