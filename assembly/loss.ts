/**
 * Cross-entropy over rows of logits [T, V] against i32 targets [T], with an ignore
 * index: losses[t] = lse[t] − logits[t, y]; dlogits[t] = dloss[t]·(softmax − onehot).
 * A chunk is `per` rows. Targets are range-checked by the host before dispatch.
 */
import { argI, argP } from './simd';
import { exp4, expf } from './math';
import { rowMax } from './norm';
import { hsum } from './simd';

/** log Σ e^x over a row, the sum of exponentials in f32 lanes, the log in f64. */
function rowLse(p: usize, n: i32): f32 {
  const m = rowMax(p, n);
  if (m == -Infinity) return m;
  const vm = f32x4.splat(m);
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const q = p + (<usize>i << 2);
    acc0 = f32x4.add(acc0, exp4(f32x4.sub(v128.load(q), vm)));
    acc1 = f32x4.add(acc1, exp4(f32x4.sub(v128.load(q, 16), vm)));
  }
  for (; i + 4 <= n; i += 4) acc0 = f32x4.add(acc0, exp4(f32x4.sub(v128.load(p + (<usize>i << 2)), vm)));
  let s = hsum(f32x4.add(acc0, acc1));
  for (; i < n; i++) s += expf(load<f32>(p + (<usize>i << 2)) - m);
  return <f32>(<f64>m + Math.log(<f64>s));
}

/** Args: 0 logits, 1 targets, 2 losses, 3 lse, 4 T, 5 V, 6 ignore, 7 per. */
export function crossEntropy(args: usize, chunk: i32, _tid: i32): void {
  const logits = argP(args, 0);
  const targets = argP(args, 1);
  const losses = argP(args, 2);
  const lse = argP(args, 3);
  const T = argI(args, 4);
  const V = argI(args, 5);
  const ignore = argI(args, 6);
  const per = argI(args, 7);
  const t1 = min(T, chunk * per + per);
  for (let t = chunk * per; t < t1; t++) {
    const row = logits + ((<usize>t * <usize>V) << 2);
    const l = rowLse(row, V);
    store<f32>(lse + (<usize>t << 2), l);
    const y = load<i32>(targets + (<usize>t << 2));
    store<f32>(losses + (<usize>t << 2), y == ignore ? 0 : l - load<f32>(row + (<usize>y << 2)));
  }
}

/** Args: 0 logits, 1 targets, 2 lse, 3 dlosses, 4 dlogits, 5 T, 6 V, 7 ignore, 8 per. */
export function crossEntropyBackward(args: usize, chunk: i32, _tid: i32): void {
  const logits = argP(args, 0);
  const targets = argP(args, 1);
  const lse = argP(args, 2);
  const dlosses = argP(args, 3);
  const dlogits = argP(args, 4);
  const T = argI(args, 5);
  const V = argI(args, 6);
  const ignore = argI(args, 7);
  const per = argI(args, 8);
  const t1 = min(T, chunk * per + per);
  for (let t = chunk * per; t < t1; t++) {
    const o = (<usize>t * <usize>V) << 2;
    const y = load<i32>(targets + (<usize>t << 2));
    if (y == ignore) {
      memory.fill(dlogits + o, 0, <usize>V << 2);
      continue;
    }
    const g = load<f32>(dlosses + (<usize>t << 2));
    const l = load<f32>(lse + (<usize>t << 2));
    const vg = f32x4.splat(g), vl = f32x4.splat(l);
    let i = 0;
    for (; i + 4 <= V; i += 4) {
      const q = o + (<usize>i << 2);
      v128.store(dlogits + q, f32x4.mul(vg, exp4(f32x4.sub(v128.load(logits + q), vl))));
    }
    for (; i < V; i++) {
      const q = o + (<usize>i << 2);
      store<f32>(dlogits + q, g * expf(load<f32>(logits + q) - l));
    }
    const q = dlogits + o + (<usize>y << 2);
    store<f32>(q, load<f32>(q) - g);
  }
}
