/**
 * SIMD helpers shared by every kernel: the fused multiply-add of the two builds, the
 * kernel-argument block, and a few vector idioms.
 *
 * Two builds come from these sources: with `--enable relaxed-simd` `madd` is one
 * relaxed fused multiply-add (an FMA instruction on x86 with FMA3, on ARM64 always);
 * without it, a multiply then an add. The host picks the build at run time.
 */

/** a·b + c on four f32 lanes. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** c − a·b on four f32 lanes. */
// @ts-ignore: decorator
@inline export function nmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_nmadd(a, b, c);
  return f32x4.sub(c, f32x4.mul(a, b));
}

/** Sum of the four lanes. */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.add(s, v128.shuffle<f32>(s, s, 1, 0, 3, 2)), 0);
}

/** Max of the four lanes. */
// @ts-ignore: decorator
@inline export function hmax(v: v128): f32 {
  const s = f32x4.max(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.max(s, v128.shuffle<f32>(s, s, 1, 0, 3, 2)), 0);
}

// ---- the argument block ---------------------------------------------------------------
//
// Every kernel export has the signature (args: usize, chunk: i32, tid: i32): the host
// writes the arguments as f64 slots into a block of wasm memory (pointers, sizes and
// float parameters alike: all are exact in f64), and each thread calls the export once
// per chunk of work it claims, with its thread index for per-thread scratch.

/** Slot i as an f64. */
// @ts-ignore: decorator
@inline export function argF(a: usize, i: i32): f64 { return load<f64>(a + (<usize>i << 3)); }
/** Slot i as an i32. */
// @ts-ignore: decorator
@inline export function argI(a: usize, i: i32): i32 { return <i32>load<f64>(a + (<usize>i << 3)); }
/** Slot i as a pointer (byte address). */
// @ts-ignore: decorator
@inline export function argP(a: usize, i: i32): usize { return <usize><u32>load<f64>(a + (<usize>i << 3)); }

/** Byte address of element i of an f32/i32 array at p. */
// @ts-ignore: decorator
@inline export function at4(p: usize, i: i32): usize { return p + (<usize>i << 2); }

/** Start of chunk c when n items are cut into pieces of `size`. */
// @ts-ignore: decorator
@inline export function chunkStart(c: i32, size: i32): i32 { return c * size; }
