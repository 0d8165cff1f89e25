/**
 * Blockwise 4-bit dequantisation with double-quantised scales (QLoRA NF4; the contract is
 * `Dequantize4bitArgs` in src/backend/backend.ts): for element i in block b = ⌊i/blockSize⌋,
 *   scale = f32(f32(code8[scaleCodes[b]] · scaleAbsmax[⌊b/scaleBlockSize⌋]) + scaleOffset)
 *   out[i] = f32(code4[nibble(i)] · scale)
 * with the high nibble of packed[⌊i/2⌋] for even i. The products are f32 operations and the
 * offset sum is an f64 sum rounded once to f32, exactly as the reference computes them
 * (for an f32 offset, as the quantiser stores it, that is the f32 sum), so the result
 * equals the reference bit for bit. A chunk is `per` elements, a multiple of
 * blockSize (any block size: each element reads its own nibble).
 * Args: 0 packed, 1 code4, 2 scaleCodes, 3 code8, 4 scaleAbsmax, 5 out, 6 n, 7 blockSize,
 * 8 scaleBlockSize, 9 scaleOffset, 10 per, 11 scratch, 12 scratch bytes per thread (64: the
 * vector decoder's tables, used when blockSize is a multiple of 16).
 *
 * `linear4bit` is the linear layer over such a weight for a few rows of x (decoding): see there.
 */
import { gemvDot } from './matmul';
import { argF, argI, argP, hsum, madd } from './simd';

export function dequantize4bit(args: usize, chunk: i32, tid: i32): void {
  const packed = argP(args, 0);
  const code4 = argP(args, 1);
  const codes = argP(args, 2);
  const code8 = argP(args, 3);
  const absmax = argP(args, 4);
  const out = argP(args, 5);
  const n = argI(args, 6);
  const bs = argI(args, 7);
  const sbs = argI(args, 8);
  const offset = argF(args, 9); // f64: the sum below is rounded once, as in the reference, for any offset
  const per = argI(args, 10);
  let i0 = chunk * per;
  const i1 = min(n, i0 + per);
  if (bs % 16 == 0) {
    // Whole 16-element groups, each inside one block and starting on a byte: the vector decoder.
    const e = i0 + ((i1 - i0) & ~15);
    const planes = argP(args, 11) + <usize>tid * argP(args, 12);
    writePlanes(code4, planes);
    if (e > i0) decodeNf4(out + (<usize>i0 << 2), packed, planes, codes, code8, absmax, <usize>i0, e - i0, bs, sbs, offset);
    i0 = e;
  }
  for (let b0 = i0; b0 < i1; b0 += bs) {
    const b = b0 / bs;
    const product: f32 = load<f32>(code8 + (<usize>load<u8>(codes + <usize>b) << 2)) * load<f32>(absmax + (<usize>(b / sbs) << 2));
    const scale = <f32>(<f64>product + offset);
    const e = min(i1, b0 + bs);
    for (let i = b0; i < e; i++) {
      const byte = <u32>load<u8>(packed + <usize>(i >> 1));
      const nibble = (i & 1) == 0 ? byte >> 4 : byte & 15;
      store<f32>(out + (<usize>i << 2), load<f32>(code4 + (<usize>nibble << 2)) * scale);
    }
  }
}

/** Block b's scale: f32(f32(code8[scaleCodes[b]] · scaleAbsmax[⌊b/sbs⌋]) + offset), as above. */
// @ts-ignore: decorator
@inline function blockScale(codes: usize, code8: usize, absmax: usize, b: i32, sbs: i32, offset: f64): f32 {
  const product: f32 = load<f32>(code8 + (<usize>load<u8>(codes + <usize>b) << 2)) * load<f32>(absmax + (<usize>(b / sbs) << 2));
  return <f32>(<f64>product + offset);
}

/** Table lookup of 16 byte indices < 16: one instruction in the relaxed build. */
// @ts-ignore: decorator
@inline function lookup(table: v128, idx: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(table, idx);
  return i8x16.swizzle(table, idx);
}

/**
 * out [m, n] = x [m, k] · Ŵᵀ for m ≤ 4 rows of f32 x, Ŵ [n, k] the 4-bit weight of
 * `dequantize4bit` (blocks counted over the flattened weight), read packed: a row of Ŵ is
 * 0.5 bytes per element instead of the 4 its expanded copy would take to write and read.
 * Needs k and blockSize multiples of 16, so each 16-element group of a row lies in one block
 * and starts on a byte. Each element is code4[nibble]·scale, the product `dequantize4bit`
 * rounds, and the sums run in `gemvDot`'s order, so the result equals dequantising and then
 * running `gemv` bit for bit.
 *
 * A group's 16 nibbles become 16 byte indices (high nibble first); four byte tables (byte
 * b of each of the 16 code values) looked up with them give the bytes of the 16 f32 codes,
 * which two rounds of interleaving put together. One row of m = 1 is summed as it is
 * decoded; for m > 1 the row is decoded once into scratch and dotted with each row of x.
 * Chunks: `per` consecutive output columns (rows of Ŵ).
 * Args: 0 x, 1 packed, 2 code4, 3 scaleCodes, 4 code8, 5 scaleAbsmax, 6 out, 7 m, 8 n, 9 k,
 * 10 blockSize, 11 scaleBlockSize, 12 scaleOffset, 13 scratch, 14 scratch bytes per thread
 * (64 + 4k: the tables, and a decoded row when m > 1), 15 per.
 */
export function linear4bit(args: usize, chunk: i32, tid: i32): void {
  const x = argP(args, 0);
  const packed = argP(args, 1);
  const code4 = argP(args, 2);
  const codes = argP(args, 3);
  const code8 = argP(args, 4);
  const absmax = argP(args, 5);
  const out = argP(args, 6);
  const m = argI(args, 7);
  const n = argI(args, 8);
  const k = argI(args, 9);
  const bs = argI(args, 10);
  const sbs = argI(args, 11);
  const offset = argF(args, 12);
  const planes = argP(args, 13) + <usize>tid * argP(args, 14);
  const row = planes + 64;
  const per = argI(args, 15);
  const j0 = chunk * per;
  const j1 = min(n, j0 + per);
  writePlanes(code4, planes);
  for (let j = j0; j < j1; j++) {
    const f0 = <usize>j * <usize>k; // flat index of the row's first element
    if (m == 1) {
      store<f32>(out + (<usize>j << 2), dotNf4(x, packed, planes, codes, code8, absmax, f0, k, bs, sbs, offset));
      continue;
    }
    decodeNf4(row, packed, planes, codes, code8, absmax, f0, k, bs, sbs, offset);
    for (let i = 0; i < m; i++) {
      store<f32>(out + ((<usize>i * <usize>n + <usize>j) << 2), gemvDot<f32>(x + ((<usize>i * <usize>k) << 2), row, k));
    }
  }
}

/**
 * One row of Ŵ, k elements from flat index f0: with `sum`, Σ_p x[p]·Ŵ[f0 + p] in `gemvDot`'s
 * order (four sums of 16-element groups); else the dequantised values written to x as f32.
 */
// @ts-ignore: decorator
@inline function rowNf4(sum: bool, x: usize, packed: usize, planes: usize, codes: usize, code8: usize, absmax: usize, f0: usize, k: i32, bs: i32, sbs: i32, offset: f64): f32 {
  // The tables stay in memory: the engine reads them as operands of the lookups, which keeps
  // four vector registers free (computed into registers instead, the loop ran 1.4× slower).
  const t0 = v128.load(planes), t1 = v128.load(planes, 16), t2 = v128.load(planes, 32), t3 = v128.load(planes, 48);
  const low = i8x16.splat(15);
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  const fEnd = f0 + <usize>k;
  let f = f0;
  let b = <i32>(f0 / <usize>bs);
  while (f < fEnd) {
    const vs = f32x4.splat(blockScale(codes, code8, absmax, b, sbs, offset));
    const e = min(fEnd, (<usize>b + 1) * <usize>bs);
    for (; f < e; f += 16) {
      // 16 nibbles → byte indices (high nibble first) → the 4 bytes of each code value → f32.
      const bytes = v128.load64_zero(packed + (f >> 1));
      const idx = v128.shuffle<u8>(i8x16.shr_u(bytes, 4), v128.and(bytes, low), 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const p0 = lookup(t0, idx), p1 = lookup(t1, idx), p2 = lookup(t2, idx), p3 = lookup(t3, idx);
      const a0 = v128.shuffle<u8>(p0, p1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const a1 = v128.shuffle<u8>(p0, p1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      const c0 = v128.shuffle<u8>(p2, p3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const c1 = v128.shuffle<u8>(p2, p3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      const w0 = f32x4.mul(v128.shuffle<u16>(a0, c0, 0, 8, 1, 9, 2, 10, 3, 11), vs);
      const w1 = f32x4.mul(v128.shuffle<u16>(a0, c0, 4, 12, 5, 13, 6, 14, 7, 15), vs);
      const w2 = f32x4.mul(v128.shuffle<u16>(a1, c1, 0, 8, 1, 9, 2, 10, 3, 11), vs);
      const w3 = f32x4.mul(v128.shuffle<u16>(a1, c1, 4, 12, 5, 13, 6, 14, 7, 15), vs);
      const xp = x + ((f - f0) << 2);
      if (sum) {
        s0 = madd(v128.load(xp), w0, s0);
        s1 = madd(v128.load(xp, 16), w1, s1);
        s2 = madd(v128.load(xp, 32), w2, s2);
        s3 = madd(v128.load(xp, 48), w3, s3);
      } else {
        v128.store(xp, w0);
        v128.store(xp, w1, 16);
        v128.store(xp, w2, 32);
        v128.store(xp, w3, 48);
      }
    }
    b++;
  }
  return sum ? hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3))) : 0;
}

function dotNf4(x: usize, packed: usize, planes: usize, codes: usize, code8: usize, absmax: usize, f0: usize, k: i32, bs: i32, sbs: i32, offset: f64): f32 {
  return rowNf4(true, x, packed, planes, codes, code8, absmax, f0, k, bs, sbs, offset);
}

function decodeNf4(dst: usize, packed: usize, planes: usize, codes: usize, code8: usize, absmax: usize, f0: usize, k: i32, bs: i32, sbs: i32, offset: f64): void {
  rowNf4(false, dst, packed, planes, codes, code8, absmax, f0, k, bs, sbs, offset);
}

/** The decoder's tables at planes (64 bytes): 16 bytes per byte position b, byte b of each of the 16 f32 code values. */
function writePlanes(code4: usize, planes: usize): void {
  for (let v: usize = 0; v < 16; v++) {
    const bits = load<u32>(code4 + (v << 2));
    for (let b: usize = 0; b < 4; b++) store<u8>(planes + 16 * b + v, <u8>(bits >> (8 * <u32>b)));
  }
}
