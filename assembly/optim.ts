/**
 * The AdamW update (torch.optim.AdamW), in place on p, m, v, over chunks of `per`
 * elements: p ← p·decay; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * p ← p − (lr/bc1)·m / (√v/bc2 + eps), with bc1 = 1 − β1^t and bc2 = √(1 − β2^t)
 * computed by the host in f64.
 * Args: 0 p, 1 g, 2 m, 3 v, 4 n, 5 per, 6 β1, 7 β2, 8 lr/bc1, 9 bc2, 10 eps, 11 decay.
 */
import { argF, argI, argP, madd } from './simd';

export function adamw(args: usize, chunk: i32, _tid: i32): void {
  const p = argP(args, 0);
  const g = argP(args, 1);
  const m = argP(args, 2);
  const v = argP(args, 3);
  const n = argI(args, 4);
  const per = argI(args, 5);
  const b1 = f32x4.splat(<f32>argF(args, 6));
  const b2 = f32x4.splat(<f32>argF(args, 7));
  const c1 = f32x4.splat(<f32>(1 - argF(args, 6)));
  const c2 = f32x4.splat(<f32>(1 - argF(args, 7)));
  const step = f32x4.splat(<f32>argF(args, 8));
  const bc2 = f32x4.splat(<f32>argF(args, 9));
  const eps = f32x4.splat(<f32>argF(args, 10));
  const decay = f32x4.splat(<f32>argF(args, 11));
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  // Whole vectors: the last one may run into the allocations' padding.
  for (let i = i0; i < i1; i += 4) {
    const o = <usize>i << 2;
    const gi = v128.load(g + o);
    const mi = madd(b1, v128.load(m + o), f32x4.mul(c1, gi));
    const vi = madd(b2, v128.load(v + o), f32x4.mul(f32x4.mul(c2, gi), gi));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vi), bc2), eps);
    v128.store(p + o, f32x4.sub(f32x4.mul(v128.load(p + o), decay), f32x4.mul(step, f32x4.div(mi, denom))));
  }
}
