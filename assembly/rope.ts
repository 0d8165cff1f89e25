/**
 * Rotate-half RoPE on x [B, N, H, D] with tables cos, sin [N, D/2]. For d < D/2 with
 * x1 = x[d], x2 = x[d + D/2]: out[d] = x1·c − x2·s, out[d + D/2] = x2·c + x1·s, where
 * s is negated for the inverse rotation (the backward pass). A chunk is `per` token rows
 * (b, n); every head of a row shares that row's table entries, read as f32x4.
 * Args: 0 x, 1 cos, 2 sin, 3 out, 4 B, 5 N, 6 H, 7 D, 8 inverse, 9 per.
 */
import { argI, argP, madd, nmadd } from './simd';

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
  const half = D >> 1;
  const r1 = min(B * N, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const n = r % N;
    const ct = cos + ((<usize>n * <usize>half) << 2);
    const st = sin + ((<usize>n * <usize>half) << 2);
    for (let h = 0; h < H; h++) {
      const o = ((<usize>r * <usize>H + <usize>h) * <usize>D) << 2;
      const x1 = x + o, x2 = x + o + (<usize>half << 2);
      const y1 = out + o, y2 = out + o + (<usize>half << 2);
      const vsg = f32x4.splat(sgn);
      let d = 0;
      for (; d + 4 <= half; d += 4) {
        const q = <usize>d << 2;
        const c = v128.load(ct + q);
        const s = f32x4.mul(vsg, v128.load(st + q));
        const a = v128.load(x1 + q), b = v128.load(x2 + q);
        v128.store(y1 + q, nmadd(b, s, f32x4.mul(a, c)));
        v128.store(y2 + q, madd(a, s, f32x4.mul(b, c)));
      }
      for (; d < half; d++) {
        const q = <usize>d << 2;
        const c = load<f32>(ct + q);
        const s = sgn * load<f32>(st + q);
        const a = load<f32>(x1 + q), b = load<f32>(x2 + q);
        store<f32>(y1 + q, a * c - b * s);
        store<f32>(y2 + q, b * c + a * s);
      }
    }
  }
}
