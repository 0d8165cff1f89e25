/**
 * Batched matmul with every transpose variant: out[b] = alpha·op(A[b])·op(B[b]) + beta·out[b],
 * op(A) [m, k], op(B) [k, n], out [m, n] row-major.
 *
 * Tiling (after GotoBLAS/BLIS). Operands are packed so the micro-kernel reads them
 * sequentially, and the packing absorbs the transposes (each of the four layouts has its
 * own packing loop):
 * - A's MC×KC blocks into row panels of MR=4 rows, k-major: panel[p][0..4) = A(i0..i0+4, p);
 * - B's KC×n slices into column panels of NR=8 columns: panel[p][0..8) = B(p, j0..j0+8);
 * zero-padded at the edges. The micro-kernel keeps a 4×8 tile of C in eight f32x4
 * registers and for each p does 2 vector loads of B, 4 splat loads of A and 8 fused
 * multiply-adds (a multiply and an add each in the plain-SIMD build). With KC=256 a B
 * panel (8 KiB) stays in L1 while the kernel walks down an A block (MC×KC floats, 128 KiB
 * for MC=128, in L2).
 *
 * Two schedules, chosen by the host:
 * - packed B (m > MC): `matmulPackB` first packs all of op(B) once into a shared buffer
 *   (chunks: groups of column panels); then each `matmul` chunk is one MC-row block of C
 *   of one batch entry, across all n columns — A is packed once per block, B never again.
 * - per tile (m ≤ MC, e.g. decoding, LoRA gradients): each chunk is one MC×NC tile and
 *   packs its own slices of A and B into its thread's scratch.
 * Threads never write the same bytes of C.
 *
 * A and B may be stored as f32, bf16 or f16 (16-bit weights and activations need no f32
 * copy): the packing reads them through `ld1`/`ld4` and writes f32 panels, so the
 * micro-kernel is the same; out is f32.
 *
 * Arguments: 0 a, 1 b, 2 out, 3 batch, 4 m, 5 n, 6 k, 7 transA, 8 transB, 9 alpha,
 * 10 beta, 11 strideA, 12 strideB (elements; 0 broadcasts), 13 scratch, 14 scratch bytes
 * per thread, 15 MC, 16 NC, 17 KC, 18 packed B (0: per-tile schedule), 19 packed B floats
 * per batch entry, 20 panels per packing chunk, 21 and 22 the dtypes of A and B (0 f32,
 * 1 bf16, 2 f16).
 *
 * `gemv` is the x·Wᵀ of a few rows (decoding one token): no packing, each row of W is read
 * once, straight from memory, and dotted with each row of x.
 */
import { argF, argI, argP, hsum, madd } from './simd';
import { f16ToF32, f16x4 } from './half';

const MR: i32 = 4;
const NR: i32 = 8;

// Element access for the packing, by storage type T: f32, u16 holding bf16 bits, or i16
// holding f16 bits (the signedness only tells the two 16-bit formats apart).
/** One element at byte address p, as f32. */
// @ts-ignore: decorator
@inline function ld1<T>(p: usize): f32 {
  if (sizeof<T>() == 2) return isSigned<T>() ? f16ToF32(<u32>load<u16>(p)) : reinterpret<f32>(<u32>load<u16>(p) << 16);
  return load<f32>(p);
}
/** Four consecutive elements from byte address p, as f32x4. */
// @ts-ignore: decorator
@inline function ld4<T>(p: usize): v128 {
  if (sizeof<T>() == 2) return isSigned<T>() ? f16x4(v128.load16x4_u(p)) : i32x4.shl(v128.load16x4_u(p), 16);
  return v128.load(p);
}
/** Byte offset of element i. */
// @ts-ignore: decorator
@inline function el<T>(i: usize): usize { return i << alignof<T>(); }

/** Packs op(B[b]) for every batch entry b of B (one if strideB is 0) into the shared buffer. Chunks: (b, panel group). */
export function matmulPackB(args: usize, chunk: i32, _tid: i32): void {
  const b = argP(args, 1);
  const n = argI(args, 5);
  const k = argI(args, 6);
  const transB = argI(args, 8) != 0;
  const strideB = argI(args, 12);
  const KC = argI(args, 17);
  const packed = argP(args, 18);
  const perBatch = <usize>argI(args, 19);
  const group = argI(args, 20);
  const panels = (n + NR - 1) / NR;
  const groups = (panels + group - 1) / group;
  const bi = chunk / groups;
  const j0 = (chunk % groups) * group * NR;
  const nc = min(group * NR, n - j0);
  const bt = argI(args, 22);
  const B = b + ((<usize>bi * <usize>strideB) << (bt != 0 ? 1 : 2));
  const npad = <usize>panels * NR;
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    const dst = packed + ((<usize>bi * perBatch + <usize>p0 * npad + <usize>j0 * <usize>kc) << 2);
    packOpB(B, bt, transB, n, k, j0, nc, p0, kc, dst);
  }
}

/** op(B)'s slice [p0, p0+kc) × [j0, j0+nc) into column panels, B of dtype t (0 f32, 1 bf16, 2 f16). */
function packOpB(B: usize, t: i32, transB: bool, n: i32, k: i32, j0: i32, nc: i32, p0: i32, kc: i32, dst: usize): void {
  if (t == 1) {
    if (transB) packBT<u16>(B, k, j0, nc, p0, kc, dst);
    else packB<u16>(B, n, j0, nc, p0, kc, dst);
  } else if (t == 2) {
    if (transB) packBT<i16>(B, k, j0, nc, p0, kc, dst);
    else packB<i16>(B, n, j0, nc, p0, kc, dst);
  } else if (transB) packBT<f32>(B, k, j0, nc, p0, kc, dst);
  else packB<f32>(B, n, j0, nc, p0, kc, dst);
}

/** op(A)'s block [i0, i0+mc) × [p0, p0+kc) into row panels, A of dtype t (0 f32, 1 bf16, 2 f16). */
function packOpA(A: usize, t: i32, transA: bool, m: i32, k: i32, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  if (t == 1) {
    if (transA) packAT<u16>(A, m, i0, mc, p0, kc, dst);
    else packA<u16>(A, k, i0, mc, p0, kc, dst);
  } else if (t == 2) {
    if (transA) packAT<i16>(A, m, i0, mc, p0, kc, dst);
    else packA<i16>(A, k, i0, mc, p0, kc, dst);
  } else if (transA) packAT<f32>(A, m, i0, mc, p0, kc, dst);
  else packA<f32>(A, k, i0, mc, p0, kc, dst);
}

export function matmul(args: usize, chunk: i32, tid: i32): void {
  const a = argP(args, 0);
  const b = argP(args, 1);
  const c = argP(args, 2);
  const m = argI(args, 4);
  const n = argI(args, 5);
  const k = argI(args, 6);
  const transA = argI(args, 7) != 0;
  const transB = argI(args, 8) != 0;
  const alpha = <f32>argF(args, 9);
  const beta = <f32>argF(args, 10);
  const strideA = argI(args, 11);
  const strideB = argI(args, 12);
  const MC = argI(args, 15);
  const NC = argI(args, 16);
  const KC = argI(args, 17);
  const packed = argP(args, 18);
  const tilesM = (m + MC - 1) / MC;
  const tilesN = packed ? 1 : (n + NC - 1) / NC;
  const bi = chunk / (tilesM * tilesN);
  const t = chunk % (tilesM * tilesN);
  const i0 = (t / tilesN) * MC;
  const j0 = packed ? 0 : (t % tilesN) * NC;
  const mc = min(MC, m - i0);
  const nc = packed ? n : min(NC, n - j0);
  const at = argI(args, 21);
  const bt = argI(args, 22);
  const A = a + ((<usize>bi * <usize>strideA) << (at != 0 ? 1 : 2));
  const B = b + ((<usize>bi * <usize>strideB) << (bt != 0 ? 1 : 2));
  const C = c + ((<usize>bi * <usize>m * <usize>n) << 2);

  const scratch = argP(args, 13) + <usize>tid * argP(args, 14);
  const Ap = scratch; // MC×KC packed A (64-byte aligned by the host)
  const Bp = Ap + ((<usize>MC * <usize>KC) << 2); // KC×NC packed B (per-tile schedule)
  const edge = Bp + (packed ? 0 : ((<usize>KC * <usize>NC) << 2)); // 4×8 tile for edge writes
  const npad = <usize>((n + NR - 1) / NR) * NR;
  const Bbatch = packed + ((strideB == 0 ? 0 : <usize>bi * <usize>argI(args, 19)) << 2);

  if (k == 0) {
    scaleTile(C, n, i0, j0, mc, nc, beta);
    return;
  }
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    packOpA(A, at, transA, m, k, i0, mc, p0, kc, Ap);
    let Bs = Bp;
    if (packed) Bs = Bbatch + ((<usize>p0 * npad) << 2);
    else packOpB(B, bt, transB, n, k, j0, nc, p0, kc, Bp);
    const first = p0 == 0;
    for (let jr = 0; jr < nc; jr += NR) {
      const bp = Bs + ((<usize>jr * <usize>kc) << 2);
      for (let ir = 0; ir < mc; ir += MR) {
        const ap = Ap + ((<usize>ir * <usize>kc) << 2);
        const cp = C + (((<usize>(i0 + ir) * <usize>n) + <usize>(j0 + jr)) << 2);
        kernel4x8(kc, ap, bp, cp, n, min(MR, mc - ir), min(NR, nc - jr), alpha, first ? beta : 1, edge);
      }
    }
  }
}

/**
 * out[b] = alpha·A[b]·B[b]ᵀ + beta·out[b] for A f32 [m, k] with m ≤ 4 and B [n, k] (f32,
 * bf16 or f16). Chunks: blocks of `cols` output columns of one batch entry. Args as matmul's
 * (0–12, 22), plus 23 columns per chunk.
 */
export function gemv(args: usize, chunk: i32, _tid: i32): void {
  const m = argI(args, 4);
  const n = argI(args, 5);
  const k = argI(args, 6);
  const alpha = <f32>argF(args, 9);
  const beta = <f32>argF(args, 10);
  const bt = argI(args, 22);
  const cols = argI(args, 23);
  const blocks = (n + cols - 1) / cols;
  const bi = chunk / blocks;
  const j0 = (chunk % blocks) * cols;
  const j1 = min(n, j0 + cols);
  const A = argP(args, 0) + ((<usize>bi * <usize>argI(args, 11)) << 2);
  const B = argP(args, 1) + ((<usize>bi * <usize>argI(args, 12)) << (bt != 0 ? 1 : 2));
  const C = argP(args, 2) + ((<usize>bi * <usize>m * <usize>n) << 2);
  if (bt == 1) gemvRows<u16>(A, B, C, m, n, k, j0, j1, alpha, beta);
  else if (bt == 2) gemvRows<i16>(A, B, C, m, n, k, j0, j1, alpha, beta);
  else gemvRows<f32>(A, B, C, m, n, k, j0, j1, alpha, beta);
}

function gemvRows<T>(A: usize, B: usize, C: usize, m: i32, n: i32, k: i32, j0: i32, j1: i32, alpha: f32, beta: f32): void {
  for (let j = j0; j < j1; j++) {
    const w = B + el<T>(<usize>j * <usize>k);
    for (let i = 0; i < m; i++) { // m ≤ 4: the row of W stays in L1 for the next rows of x
      const s = gemvDot<T>(A + ((<usize>i * <usize>k) << 2), w, k);
      const q = C + ((<usize>i * <usize>n + <usize>j) << 2);
      store<f32>(q, beta == 0 ? alpha * s : alpha * s + beta * load<f32>(q));
    }
  }
}

/**
 * Σ_p x[p]·w[p] over k elements, x f32 and w of type T. Four independent sums of 16-element
 * groups, so the multiply-adds do not wait on each other; then the 4-element and scalar tails.
 * (The fused 4-bit linear in quant.ts sums in exactly this order.)
 */
// @ts-ignore: decorator
@inline export function gemvDot<T>(x: usize, w: usize, k: i32): f32 {
  const k16 = k & ~15, k4 = k & ~3;
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let p = 0;
  for (; p < k16; p += 16) {
    const xp = x + (<usize>p << 2), wp = w + el<T>(<usize>p);
    s0 = madd(v128.load(xp), ld4<T>(wp), s0);
    s1 = madd(v128.load(xp, 16), ld4<T>(wp + el<T>(4)), s1);
    s2 = madd(v128.load(xp, 32), ld4<T>(wp + el<T>(8)), s2);
    s3 = madd(v128.load(xp, 48), ld4<T>(wp + el<T>(12)), s3);
  }
  for (; p < k4; p += 4) s0 = madd(v128.load(x + (<usize>p << 2)), ld4<T>(w + el<T>(<usize>p)), s0);
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; p < k; p++) s += load<f32>(x + (<usize>p << 2)) * ld1<T>(w + el<T>(<usize>p));
  return s;
}

/** C tile ← beta·C tile (k = 0: the product is empty). beta 0 writes zeros, never reads. */
function scaleTile(C: usize, n: i32, i0: i32, j0: i32, mc: i32, nc: i32, beta: f32): void {
  for (let i = 0; i < mc; i++) {
    const row = C + ((<usize>(i0 + i) * <usize>n + <usize>j0) << 2);
    for (let j = 0; j < nc; j++) {
      const p = row + (<usize>j << 2);
      store<f32>(p, beta == 0 ? 0 : beta * load<f32>(p));
    }
  }
}

/**
 * The micro-kernel: acc[4×8] = Σ_p Ap[p][0..4) ⊗ Bp[p][0..8), then
 * C = alpha·acc + beta·C (beta 0: C is not read; beta 1: accumulate).
 * `rows` × `cols` of the tile are inside C; a partial tile goes through `edge`.
 */
function kernel4x8(kc: i32, ap: usize, bp: usize, C: usize, ldc: i32, rows: i32, cols: i32, alpha: f32, beta: f32, edge: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  // One p per iteration, deliberately not unrolled: unrolled, the optimiser interleaves the
  // loads of consecutive steps, which keeps 4 B vectors and 2 A splats live beside the 8
  // accumulators; that exceeds the engine's 15 allocatable vector registers (x64), the
  // accumulators spill: measured on V8 (x64), the unrolled loop ran at 0.75× (plain SIMD)
  // and 0.55× (relaxed) of this one. Larger tiles (5×8, 6×8) measured slower too.
  const bend = bp + (<usize>kc << 5);
  while (bp < bend) {
    const b0 = v128.load(bp), b1 = v128.load(bp, 16);
    let a = v128.load32_splat(ap);
    c00 = madd(a, b0, c00); c01 = madd(a, b1, c01);
    a = v128.load32_splat(ap, 4);
    c10 = madd(a, b0, c10); c11 = madd(a, b1, c11);
    a = v128.load32_splat(ap, 8);
    c20 = madd(a, b0, c20); c21 = madd(a, b1, c21);
    a = v128.load32_splat(ap, 12);
    c30 = madd(a, b0, c30); c31 = madd(a, b1, c31);
    ap += 16; bp += 32;
  }
  const full = rows == MR && cols == NR;
  const dst = full ? C : edge;
  const ld: usize = full ? (<usize>ldc << 2) : 32;
  const va = f32x4.splat(alpha);
  if (!full || beta == 0) {
    // Overwrite (or stage in `edge`); the edge copy below applies beta.
    v128.store(dst, f32x4.mul(va, c00)); v128.store(dst, f32x4.mul(va, c01), 16);
    v128.store(dst + ld, f32x4.mul(va, c10)); v128.store(dst + ld, f32x4.mul(va, c11), 16);
    v128.store(dst + 2 * ld, f32x4.mul(va, c20)); v128.store(dst + 2 * ld, f32x4.mul(va, c21), 16);
    v128.store(dst + 3 * ld, f32x4.mul(va, c30)); v128.store(dst + 3 * ld, f32x4.mul(va, c31), 16);
  } else {
    const vb = f32x4.splat(beta);
    const r1 = dst + ld, r2 = dst + 2 * ld, r3 = dst + 3 * ld;
    if (beta == 1) {
      v128.store(dst, madd(va, c00, v128.load(dst))); v128.store(dst, madd(va, c01, v128.load(dst, 16)), 16);
      v128.store(r1, madd(va, c10, v128.load(r1))); v128.store(r1, madd(va, c11, v128.load(r1, 16)), 16);
      v128.store(r2, madd(va, c20, v128.load(r2))); v128.store(r2, madd(va, c21, v128.load(r2, 16)), 16);
      v128.store(r3, madd(va, c30, v128.load(r3))); v128.store(r3, madd(va, c31, v128.load(r3, 16)), 16);
    } else {
      v128.store(dst, madd(va, c00, f32x4.mul(vb, v128.load(dst)))); v128.store(dst, madd(va, c01, f32x4.mul(vb, v128.load(dst, 16))), 16);
      v128.store(r1, madd(va, c10, f32x4.mul(vb, v128.load(r1)))); v128.store(r1, madd(va, c11, f32x4.mul(vb, v128.load(r1, 16))), 16);
      v128.store(r2, madd(va, c20, f32x4.mul(vb, v128.load(r2)))); v128.store(r2, madd(va, c21, f32x4.mul(vb, v128.load(r2, 16))), 16);
      v128.store(r3, madd(va, c30, f32x4.mul(vb, v128.load(r3)))); v128.store(r3, madd(va, c31, f32x4.mul(vb, v128.load(r3, 16))), 16);
    }
  }
  if (!full) {
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const q = C + ((<usize>i * <usize>ldc + <usize>j) << 2);
        const v = load<f32>(edge + (<usize>(i * NR + j) << 2));
        store<f32>(q, beta == 0 ? v : v + beta * load<f32>(q));
      }
    }
  }
}

// ---- packing ----------------------------------------------------------------------------

/** 4×4 transpose of rows r0..r3 into columns, stored at dst, dst+s, dst+2s, dst+3s. */
// @ts-ignore: decorator
@inline function transpose4(r0: v128, r1: v128, r2: v128, r3: v128, dst: usize, s: usize): void {
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(dst + s, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
  v128.store(dst + 2 * s, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * s, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
}

/** A stored [m, k] (row-major): panel[p][r] = A[(i0+r)·k + p0+p]; rows past m are 0. */
function packA<T>(A: usize, k: i32, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    const src = A + el<T>(<usize>(i0 + ir) * <usize>k + <usize>p0);
    const ld = el<T>(<usize>k);
    let p = 0;
    if (rows == MR) {
      for (; p + 4 <= kc; p += 4) {
        const s = src + el<T>(<usize>p);
        transpose4(ld4<T>(s), ld4<T>(s + ld), ld4<T>(s + 2 * ld), ld4<T>(s + 3 * ld), dst, 16);
        dst += 64;
      }
    }
    for (; p < kc; p++) {
      for (let r = 0; r < MR; r++) {
        store<f32>(dst + (<usize>r << 2), r < rows ? ld1<T>(src + <usize>r * ld + el<T>(<usize>p)) : 0);
      }
      dst += 16;
    }
  }
}

/** A stored [k, m] (read transposed): panel[p][r] = A[(p0+p)·m + i0+r]. */
function packAT<T>(A: usize, m: i32, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    let src = A + el<T>(<usize>p0 * <usize>m + <usize>(i0 + ir));
    const ld = el<T>(<usize>m);
    if (rows == MR) {
      for (let p = 0; p < kc; p++) { v128.store(dst, ld4<T>(src)); src += ld; dst += 16; }
    } else {
      for (let p = 0; p < kc; p++) {
        for (let r = 0; r < MR; r++) store<f32>(dst + (<usize>r << 2), r < rows ? ld1<T>(src + el<T>(<usize>r)) : 0);
        src += ld; dst += 16;
      }
    }
  }
}

/** B stored [k, n] (row-major): panel[p][c] = B[(p0+p)·n + j0+c]; columns past n are 0. */
function packB<T>(B: usize, n: i32, j0: i32, nc: i32, p0: i32, kc: i32, dst: usize): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    let src = B + el<T>(<usize>p0 * <usize>n + <usize>(j0 + jr));
    const ld = el<T>(<usize>n);
    if (cols == NR) {
      for (let p = 0; p < kc; p++) {
        v128.store(dst, ld4<T>(src)); v128.store(dst, ld4<T>(src + el<T>(4)), 16);
        src += ld; dst += 32;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        for (let c = 0; c < NR; c++) store<f32>(dst + (<usize>c << 2), c < cols ? ld1<T>(src + el<T>(<usize>c)) : 0);
        src += ld; dst += 32;
      }
    }
  }
}

/** B stored [n, k] (read transposed, the x·Wᵀ of a linear layer): panel[p][c] = B[(j0+c)·k + p0+p]. */
function packBT<T>(B: usize, k: i32, j0: i32, nc: i32, p0: i32, kc: i32, dst: usize): void {
  const ld = el<T>(<usize>k);
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    const src = B + el<T>(<usize>(j0 + jr) * <usize>k + <usize>p0);
    let p = 0;
    if (cols == NR) {
      // Two 4×4 transposes per 4 values of p: columns 0..3 then 4..7 of each packed row.
      for (; p + 4 <= kc; p += 4) {
        const s = src + el<T>(<usize>p);
        transpose4(ld4<T>(s), ld4<T>(s + ld), ld4<T>(s + 2 * ld), ld4<T>(s + 3 * ld), dst, 32);
        const s4 = s + 4 * ld;
        transpose4(ld4<T>(s4), ld4<T>(s4 + ld), ld4<T>(s4 + 2 * ld), ld4<T>(s4 + 3 * ld), dst + 16, 32);
        dst += 128;
      }
    }
    for (; p < kc; p++) {
      for (let c = 0; c < NR; c++) {
        store<f32>(dst + (<usize>c << 2), c < cols ? ld1<T>(src + <usize>c * ld + el<T>(<usize>p)) : 0);
      }
      dst += 32;
    }
  }
}
