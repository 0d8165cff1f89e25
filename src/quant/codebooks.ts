/**
 * The code books of QLoRA's 4-bit NormalFloat format (Dettmers et al., 2023, arXiv
 * 2305.14314; bitsandbytes `functional.py`), and the nearest-code rule.
 *
 * A code book is a sorted table of float32 values in [−1, 1]; a quantised value is an index
 * into it. Quantising a value v (already divided by its block's absmax) picks the nearest
 * entry. DECISION (ties): the midpoints between neighbours are computed in float32 as
 * f32(f32(c[j] + c[j+1]) / 2), and v gets index #{j : mid[j] < v} — a value exactly on a
 * midpoint goes to the LOWER code. This is bitsandbytes' reference backend
 * (`torch.bucketize(scaled, midpoints)` with right=False) and its CUDA NF4 decision tree
 * (`x > threshold` picks the upper code).
 */

/**
 * NF4: 16 values, the quantiles of N(0, 1) that give each bin equal probability mass,
 * asymmetric (8 negative, 0, 7 positive) so that 0 is exact; normalised to [−1, 1].
 * bitsandbytes `create_normal_map(offset=0.9677083, use_extra_value=True)`: 9 quantiles
 * Φ⁻¹(linspace(0.9677083, 0.5, 9)[:-1]), 0, and −Φ⁻¹(linspace(0.9677083, 0.5, 8)[:-1]),
 * sorted and divided by the largest. Stored as the float32 values bitsandbytes hard-codes;
 * the golden script recomputes them from the quantiles.
 */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Index of 0 in NF4_CODE: the code of a zero (and of the padding nibble). */
export const NF4_ZERO = 7;

/**
 * The positive half of bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True,
 * max_exponent_bits=7, total_bits=8)`, Dettmers 2015, arXiv 1511.04561), without 1.0: for
 * i = 0..6, the midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i − 6). The torch float32
 * linspace the published function uses rounds some entries differently from an exact
 * formula, so the table is stored as computed by that function (torch 1.13); the golden
 * script computes it again, and the tests compare it with the exact formula (< 2e-7 relative).
 */
const DYNAMIC_POSITIVE = [
  0.00000055000004, 0.0000032500002, 0.00000775, 0.000021249998, 0.00004375, 0.00006625, 0.00008875, 0.00015625001,
  0.00026875004, 0.00038125002, 0.00049375003, 0.0006062501, 0.00071875006, 0.00083125, 0.0009437501, 0.0012812499,
  0.00184375, 0.00240625, 0.00296875, 0.0035312497, 0.00409375, 0.0046562497, 0.0052187503, 0.00578125,
  0.00634375, 0.00690625, 0.00746875, 0.00803125, 0.00859375, 0.009156249, 0.00971875, 0.01140625,
  0.01421875, 0.01703125, 0.01984375, 0.02265625, 0.02546875, 0.028281247, 0.03109375, 0.033906247,
  0.036718752, 0.03953125, 0.042343747, 0.04515625, 0.04796875, 0.05078125, 0.05359375, 0.05640625,
  0.059218753, 0.062031247, 0.06484375, 0.067656256, 0.070468746, 0.07328125, 0.07609375, 0.07890625,
  0.08171874, 0.08453125, 0.08734375, 0.09015625, 0.092968754, 0.095781244, 0.09859375, 0.107031256,
  0.12109375, 0.13515624, 0.14921875, 0.16328125, 0.17734374, 0.19140625, 0.20546874, 0.21953125,
  0.23359376, 0.24765626, 0.26171875, 0.27578127, 0.28984374, 0.30390626, 0.31796873, 0.33203125,
  0.3460937, 0.36015624, 0.37421876, 0.38828123, 0.40234375, 0.4164062, 0.43046874, 0.44453126,
  0.45859373, 0.47265625, 0.48671877, 0.50078124, 0.51484376, 0.5289062, 0.54296875, 0.5570313,
  0.5710938, 0.58515626, 0.5992187, 0.61328125, 0.6273438, 0.64140624, 0.65546876, 0.6695313,
  0.68359375, 0.6976563, 0.7117188, 0.72578126, 0.7398438, 0.75390625, 0.7679688, 0.78203124,
  0.7960937, 0.8101562, 0.82421875, 0.8382812, 0.85234374, 0.8664062, 0.8804687, 0.89453125,
  0.9085938, 0.92265624, 0.9367187, 0.9507812, 0.96484375, 0.9789062, 0.99296874,
];

/**
 * The signed 8-bit dynamic map, sorted: 127 negative values, 0, 127 positive values and 1
 * (256 entries; the negatives mirror the positives, and there is no −1). The double
 * quantisation stores each centred block scale as an index into it.
 */
export const DYNAMIC_CODE: Float32Array = Float32Array.from([
  ...DYNAMIC_POSITIVE.map((v) => -v).reverse(), 0, ...DYNAMIC_POSITIVE, 1,
]);

/** Float32 midpoints between neighbouring entries: f32(f32(c[j] + c[j+1]) / 2). */
export function midpoints(code: Float32Array): Float32Array {
  const mid = new Float32Array(code.length - 1);
  for (let j = 0; j < mid.length; j++) mid[j] = Math.fround(Math.fround(code[j]! + code[j + 1]!) / 2);
  return mid;
}

/** The code index of v: the number of midpoints strictly below v (ties go to the lower code). */
export function nearestCode(mid: Float32Array, v: number): number {
  let lo = 0;
  let hi = mid.length; // answer in [lo, hi]
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if (mid[m]! < v) lo = m + 1;
    else hi = m;
  }
  return lo;
}

/** The largest gap between neighbouring entries (the rounding error bound is half of it). */
export function largestGap(code: Float32Array): number {
  let g = 0;
  for (let j = 1; j < code.length; j++) g = Math.max(g, code[j]! - code[j - 1]!);
  return g;
}

export const NF4_MIDPOINTS = midpoints(NF4_CODE);
export const DYNAMIC_MIDPOINTS = midpoints(DYNAMIC_CODE);
