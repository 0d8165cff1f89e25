/**
 * Small dense products for the fused attention kernels:
 *   C[rows × cols] (= | +=) alpha · Σ_p A(r, p) · B(p, c)
 * with A read element by element at a + r·ars + p·aps (byte strides, so A may be read
 * transposed) and B read as rows of contiguous floats at b + p·brs. Register tiles of
 * 4 rows × 8 columns (eight f32x4 accumulators, the matmul micro-kernel without the
 * packing), then 4×4, then single rows, then scalar columns for the last cols mod 4.
 * `acc` adds into C; otherwise C is overwritten without being read.
 */
import { madd } from './simd';

export function tile(rows: i32, cols: i32, kk: i32, a: usize, ars: usize, aps: usize, b: usize, brs: usize,
  c: usize, crs: usize, alpha: f32, acc: bool): void {
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const ar = a + <usize>r * ars;
    const cr = c + <usize>r * crs;
    let j = 0;
    for (; j + 8 <= cols; j += 8) k4x8(kk, ar, ars, aps, b + (<usize>j << 2), brs, cr + (<usize>j << 2), crs, alpha, acc);
    for (; j + 4 <= cols; j += 4) k4x4(kk, ar, ars, aps, b + (<usize>j << 2), brs, cr + (<usize>j << 2), crs, alpha, acc);
    for (let i = 0; i < 4; i++) for (let jj = j; jj < cols; jj++) {
      scalar(kk, ar + <usize>i * ars, aps, b + (<usize>jj << 2), brs, cr + <usize>i * crs + (<usize>jj << 2), alpha, acc);
    }
  }
  for (; r < rows; r++) {
    const ar = a + <usize>r * ars;
    const cr = c + <usize>r * crs;
    let j = 0;
    for (; j + 8 <= cols; j += 8) k1x8(kk, ar, aps, b + (<usize>j << 2), brs, cr + (<usize>j << 2), alpha, acc);
    for (; j + 4 <= cols; j += 4) k1x4(kk, ar, aps, b + (<usize>j << 2), brs, cr + (<usize>j << 2), alpha, acc);
    for (; j < cols; j++) scalar(kk, ar, aps, b + (<usize>j << 2), brs, cr + (<usize>j << 2), alpha, acc);
  }
}

// @ts-ignore: decorator
@inline function put(p: usize, v: v128, va: v128, acc: bool): void {
  v128.store(p, acc ? madd(va, v, v128.load(p)) : f32x4.mul(va, v));
}

function k4x8(kk: i32, a: usize, ars: usize, aps: usize, b: usize, brs: usize, c: usize, crs: usize, alpha: f32, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  const a1 = a + ars, a2 = a + 2 * ars, a3 = a + 3 * ars;
  let o: usize = 0;
  for (let p = 0; p < kk; p++) {
    const b0 = v128.load(b), b1 = v128.load(b, 16);
    let x = v128.load32_splat(a + o);
    c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1 + o);
    c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2 + o);
    c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3 + o);
    c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
    o += aps; b += brs;
  }
  const va = f32x4.splat(alpha);
  put(c, c00, va, acc); put(c + 16, c01, va, acc);
  put(c + crs, c10, va, acc); put(c + crs + 16, c11, va, acc);
  put(c + 2 * crs, c20, va, acc); put(c + 2 * crs + 16, c21, va, acc);
  put(c + 3 * crs, c30, va, acc); put(c + 3 * crs + 16, c31, va, acc);
}

function k4x4(kk: i32, a: usize, ars: usize, aps: usize, b: usize, brs: usize, c: usize, crs: usize, alpha: f32, acc: bool): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  const a1 = a + ars, a2 = a + 2 * ars, a3 = a + 3 * ars;
  let o: usize = 0;
  for (let p = 0; p < kk; p++) {
    const b0 = v128.load(b);
    c0 = madd(v128.load32_splat(a + o), b0, c0);
    c1 = madd(v128.load32_splat(a1 + o), b0, c1);
    c2 = madd(v128.load32_splat(a2 + o), b0, c2);
    c3 = madd(v128.load32_splat(a3 + o), b0, c3);
    o += aps; b += brs;
  }
  const va = f32x4.splat(alpha);
  put(c, c0, va, acc); put(c + crs, c1, va, acc); put(c + 2 * crs, c2, va, acc); put(c + 3 * crs, c3, va, acc);
}

function k1x8(kk: i32, a: usize, aps: usize, b: usize, brs: usize, c: usize, alpha: f32, acc: bool): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  for (let p = 0; p < kk; p++) {
    const x = v128.load32_splat(a);
    c0 = madd(x, v128.load(b), c0); c1 = madd(x, v128.load(b, 16), c1);
    a += aps; b += brs;
  }
  const va = f32x4.splat(alpha);
  put(c, c0, va, acc); put(c + 16, c1, va, acc);
}

function k1x4(kk: i32, a: usize, aps: usize, b: usize, brs: usize, c: usize, alpha: f32, acc: bool): void {
  let c0 = f32x4.splat(0);
  for (let p = 0; p < kk; p++) {
    c0 = madd(v128.load32_splat(a), v128.load(b), c0);
    a += aps; b += brs;
  }
  put(c, c0, f32x4.splat(alpha), acc);
}

function scalar(kk: i32, a: usize, aps: usize, b: usize, brs: usize, c: usize, alpha: f32, acc: bool): void {
  let s: f32 = 0;
  for (let p = 0; p < kk; p++) { s += load<f32>(a) * load<f32>(b); a += aps; b += brs; }
  store<f32>(c, acc ? load<f32>(c) + alpha * s : alpha * s);
}

/**
 * dst[d][j] = src[j][d] for j < n, d < D (src rows `srs` bytes apart, dst rows `drs`
 * bytes apart); columns n..pad of dst are zeroed. 4×4 blocks go through registers.
 */
export function packT(src: usize, srs: usize, n: i32, D: i32, dst: usize, drs: usize, pad: i32): void {
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const s0 = src + <usize>j * srs;
    let d = 0;
    for (; d + 4 <= D; d += 4) {
      const s = s0 + (<usize>d << 2);
      const r0 = v128.load(s), r1 = v128.load(s + srs), r2 = v128.load(s + 2 * srs), r3 = v128.load(s + 3 * srs);
      const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
      const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
      const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
      const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
      const o = dst + <usize>d * drs + (<usize>j << 2);
      v128.store(o, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
      v128.store(o + drs, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
      v128.store(o + 2 * drs, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
      v128.store(o + 3 * drs, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
    }
    for (; d < D; d++) {
      for (let jj = j; jj < j + 4; jj++) store<f32>(dst + <usize>d * drs + (<usize>jj << 2), load<f32>(src + <usize>jj * srs + (<usize>d << 2)));
    }
  }
  for (; j < n; j++) {
    for (let d = 0; d < D; d++) store<f32>(dst + <usize>d * drs + (<usize>j << 2), load<f32>(src + <usize>j * srs + (<usize>d << 2)));
  }
  for (let d = 0; d < D; d++) for (let jj = n; jj < pad; jj++) store<f32>(dst + <usize>d * drs + (<usize>jj << 2), 0);
}
