/**
 * Embedding lookup and its gradient. table [V, C], ids i32 [T], rows [T, C]. The host
 * checks every id against V before dispatch (the message names the bad id).
 * gather: a chunk is `per` token rows, each one row copy.
 * scatterAdd: dtable[ids[t]] += dy[t]; a token may repeat, so a chunk is a block of
 * columns over all tokens (threads never add into the same element).
 */
import { argI, argP } from './simd';
import { widenBf16, widenF16 } from './half';

/**
 * Args: 0 table, 1 ids, 2 out, 3 C, 4 T, 5 per, 6 mode: 2 or 1 copies rows of 4- or 2-byte
 * elements (table and out of one dtype), 0 widens bf16 rows into f32, 3 f16 rows.
 */
export function gather(args: usize, chunk: i32, _tid: i32): void {
  const table = argP(args, 0);
  const ids = argP(args, 1);
  const out = argP(args, 2);
  const C = argI(args, 3);
  const T = argI(args, 4);
  const per = argI(args, 5);
  const mode = argI(args, 6);
  const t1 = min(T, chunk * per + per);
  if (mode == 0 || mode == 3) {
    for (let t = chunk * per; t < t1; t++) {
      const src = table + ((<usize>load<i32>(ids + (<usize>t << 2)) * <usize>C) << 1);
      const dst = out + ((<usize>t * <usize>C) << 2);
      if (mode == 3) widenF16(src, dst, C);
      else widenBf16(src, dst, C);
    }
    return;
  }
  const bytes = <usize>C << mode;
  for (let t = chunk * per; t < t1; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    memory.copy(out + <usize>t * bytes, table + <usize>id * bytes, bytes);
  }
}

/** Args: 0 dy, 1 ids, 2 dtable, 3 C, 4 T, 5 columns per chunk (multiple of 4). */
export function scatterAdd(args: usize, chunk: i32, _tid: i32): void {
  const dy = argP(args, 0);
  const ids = argP(args, 1);
  const dtable = argP(args, 2);
  const C = argI(args, 3);
  const T = argI(args, 4);
  const per = argI(args, 5);
  const c0 = chunk * per;
  const c1 = min(C, c0 + per);
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    const s = dy + ((<usize>t * <usize>C) << 2);
    const d = dtable + ((<usize>id * <usize>C) << 2);
    let c = c0;
    for (; c + 4 <= c1; c += 4) {
      const q = <usize>c << 2;
      v128.store(d + q, f32x4.add(v128.load(d + q), v128.load(s + q)));
    }
    for (; c < c1; c++) {
      const q = <usize>c << 2;
      store<f32>(d + q, load<f32>(d + q) + load<f32>(s + q));
    }
  }
}
