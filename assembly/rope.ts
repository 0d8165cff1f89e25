/**
 * Rotate-half RoPE on x [B, N, H, D] with tables cos, sin [N, D/2]. For d < D/2 with
 * x1 = x[d], x2 = x[d + D/2]: out[d] = x1·c − x2·s, out[d + D/2] = x2·c + x1·s, where
 * s is negated for the inverse rotation (the backward pass). A chunk is `per` token rows
 * (b, n); every head of a row shares that row's table entries, read as f32x4.
 * Args: 0 x, 1 cos, 2 sin, 3 out, 4 B, 5 N, 6 H, 7 D, 8 inverse, 9 per; 10–13 whether x,
 * cos, sin, out are bf16 (read and written as such; the arithmetic is f32).
 */
import { argI, argP, madd, nmadd } from './simd';
import { ld1, ld4, st1, st4 } from './half';

export function rope(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const cos = argP(args, 1);
  const sin = argP(args, 2);
  const out = argP(args, 3);
  const B = argI(args, 4);
  const N = argI(args, 5);
  const H = argI(args, 6);
  const D = argI(args, 7);
  const sgn: f32 = argI(args, 8) != 0 ? -1 : 1;
  const per = argI(args, 9);
  const xBf = argI(args, 10) != 0, cBf = argI(args, 11) != 0, sBf = argI(args, 12) != 0, oBf = argI(args, 13) != 0;
  const half = D >> 1;
  const r1 = min(B * N, chunk * per + per);
  const vsg = f32x4.splat(sgn);
  for (let r = chunk * per; r < r1; r++) {
    const t = (r % N) * half; // the row's table entries
    for (let h = 0; h < H; h++) {
      const e1 = (r * H + h) * D, e2 = e1 + half; // the two halves of the head
      let d = 0;
      for (; d + 4 <= half; d += 4) {
        const c = ld4(cos, t + d, cBf);
        const s = f32x4.mul(vsg, ld4(sin, t + d, sBf));
        const a = ld4(x, e1 + d, xBf), b = ld4(x, e2 + d, xBf);
        st4(out, e1 + d, oBf, nmadd(b, s, f32x4.mul(a, c)));
        st4(out, e2 + d, oBf, madd(a, s, f32x4.mul(b, c)));
      }
      for (; d < half; d++) {
        const c = ld1(cos, t + d, cBf);
        const s = sgn * ld1(sin, t + d, sBf);
        const a = ld1(x, e1 + d, xBf), b = ld1(x, e2 + d, xBf);
        st1(out, e1 + d, oBf, a * c - b * s);
        st1(out, e2 + d, oBf, b * c + a * s);
      }
    }
  }
}
