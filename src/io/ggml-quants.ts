/**
 * ggml's block-quantised tensor types that the GGUF export writes, with their exact byte
 * layouts (as llama.cpp's ggml-common.h declares the blocks and its dequantisers read
 * them), a quantiser for each, and the dequantiser that defines what the bytes mean:
 *
 *   Q8_0  32 values in 34 bytes:  d (f16) · 32 × int8 q;                 x = d·q
 *   Q5_0  32 values in 22 bytes:  d (f16) · qh (u32, the 5th bits) · 16 bytes of low nibbles
 *                                 (value j in the low nibble of byte j, value j+16 in the high);
 *                                 x = d·(q − 16)
 *   Q5_1  32 values in 24 bytes:  d (f16) · m (f16) · qh and nibbles as Q5_0; x = d·q + m
 *   Q4_K  256 values in 144 bytes: d (f16) · dmin (f16) · 12 bytes of eight 6-bit scales and
 *                                 eight 6-bit mins · 128 bytes of nibbles; the 32-value
 *                                 sub-block s has x = d·scale_s·q − dmin·min_s
 *   Q5_K  256 values in 176 bytes: Q4_K's d, dmin and scales · 32 bytes of 5th bits (byte l,
 *                                 bit s: value l of sub-block s) · Q4_K's 128 bytes of nibbles
 *   Q6_K  256 values in 210 bytes: 128 bytes of low nibbles · 64 bytes of high 2-bit pairs ·
 *                                 16 × int8 scales (one per 16 values) · d (f16);
 *                                 x = d·scale·(q − 32)
 *
 * And the types of llama.cpp's lower-bit mixes:
 *
 *   Q4_0    32 values in 18 bytes:  d (f16) · 16 bytes of nibbles (as Q5_0's); x = d·(q − 8)
 *   Q4_1    32 values in 20 bytes:  d (f16) · m (f16) · nibbles; x = d·q + m
 *   Q2_K   256 values in 84 bytes:  16 bytes of 4-bit scale / 4-bit min pairs (one per 16
 *                                   values) · 64 bytes of 2-bit q · d (f16) · dmin (f16);
 *                                   x = d·scale·q − dmin·min
 *   Q3_K  256 values in 110 bytes:  32 bytes of high bits (a set bit means + 4) · 64 bytes of
 *                                   2-bit q · 12 bytes of sixteen 6-bit scales · d (f16);
 *                                   x = d·(scale − 32)·(q − 4·(high bit unset))
 *   IQ4_NL  32 values in 18 bytes:  d (f16) · nibbles indexing a fixed table of 16 levels
 *                                   (−127 … 113); x = d·level
 *   IQ4_XS 256 values in 136 bytes: d (f16) · u16 of the scales' high 2 bits · 4 bytes of
 *                                   their low nibbles · 128 bytes of IQ4_NL nibbles per
 *                                   32-value sub-block; x = d·(scale − 32)·level
 *
 * The quantisers are this project's own (a small search per sub-block for the scale, and
 * the offset, with the least squared error); any quantiser that fills the layout is valid
 * for llama.cpp, which only dequantises. llama.cpp computes the block scales in f32 and
 * stores them in f16; so does this.
 */
import { LongLoraError } from '../errors.js';
import { f16BitsToF32, f32ToF16Bits } from '../tensor/dtype.js';

/** Values per block and bytes per block. */
export const BLOCKS = {
  Q8_0: [32, 34], Q5_0: [32, 22], Q5_1: [32, 24], Q4_0: [32, 18], Q4_1: [32, 20], IQ4_NL: [32, 18],
  Q2_K: [256, 84], Q3_K: [256, 110], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210], IQ4_XS: [256, 136],
} as const;
export type QuantType = keyof typeof BLOCKS;

/** IQ4_NL's (and IQ4_XS's) 16 levels (ggml's kvalues_iq4nl). */
const IQ4_LEVELS = Int8Array.from([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);

/** Values per Q8_0 block. */
export const Q8_0_BLOCK = 32;
/** Values per K-quant super-block (ggml's QK_K). */
export const QK_K = 256;

const f16 = (v: number): number => f16BitsToF32(f32ToF16Bits(v));

/** The number of `type` blocks in `x`; an error naming the problem when `x` cannot be quantised to it. */
export function blocksOf(x: Float32Array, type: QuantType): number {
  const [per] = BLOCKS[type];
  if (x.length % per !== 0) throw new LongLoraError(`${type} needs a multiple of ${per} values, got ${x.length}`);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]!)) throw new LongLoraError(`${type}: value ${i} is ${x[i]}; a quantised weight must be finite`);
  }
  return x.length / per;
}

/**
 * An importance matrix's row for one tensor: how much each input column matters (the mean
 * square of the activations it multiplies), and the column of x[0] (x is a run of rows of
 * `weights.length` values, or a part of one starting at that column).
 */
export interface Importance {
  weights: Float32Array;
  first?: number;
}

/** The importance of the quantise call in progress (see quantize), or null. */
let importance: Importance | null = null;

/**
 * Quantises `x` (a multiple of the block size long) to `type`. With `imp`, the fits of the
 * scales and offsets minimise the squared error weighted by each value's column importance
 * (what an importance matrix is for: the error of the layer's output, not of its weights;
 * see loadWeights); Q8_0 and Q5_0 take their scales from each block's largest value either
 * way, and IQ4_NL and IQ4_XS do not take it (it made them worse where measured).
 */
export function quantize(type: QuantType, x: Float32Array, imp?: Importance): Uint8Array {
  if (imp) {
    if (imp.weights.length === 0 || !imp.weights.every((w) => Number.isFinite(w) && w >= 0)) {
      throw new LongLoraError(`${type}: importance weights must be finite and ≥ 0, one per column`);
    }
    importance = imp;
  }
  try {
    return quantizeAs(type, x);
  } finally {
    importance = null;
  }
}

function quantizeAs(type: QuantType, x: Float32Array): Uint8Array {
  switch (type) {
    case 'Q8_0': return quantizeQ8_0(x);
    case 'Q5_0': return quantizeQ5_0(x);
    case 'Q5_1': return quantizeAffine32(x, 'Q5_1');
    case 'Q4_K': return quantizeAffineK(x, 'Q4_K');
    case 'Q5_K': return quantizeAffineK(x, 'Q5_K');
    case 'Q6_K': return quantizeQ6K(x);
    case 'Q4_0': return quantizeQ4_0(x);
    case 'Q4_1': return quantizeAffine32(x, 'Q4_1');
    case 'Q2_K': return quantizeQ2K(x);
    case 'Q3_K': return quantizeQ3K(x);
    case 'IQ4_NL': return quantizeIQ4(x, 'IQ4_NL');
    case 'IQ4_XS': return quantizeIQ4(x, 'IQ4_XS');
  }
}

/**
 * Q8_0: per block of 32 values, d = max|x| / 127 stored as f16, then round(x / d) (half
 * away from zero) as int8 — llama.cpp's reference quantize_row_q8_0.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q8_0');
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const at = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[at + j]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16Bits(d), true);
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[at + j]! * id);
      view.setInt8(b * 34 + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
    }
  }
  return out;
}

/** The 5-bit levels (0..31) of one Q5_0 or Q5_1 block, as its quantiser chose them. */
const levels5 = new Uint8Array(32);

/**
 * Stores levels5 as Q5_0 and Q5_1 hold them: 16 bytes of low nibbles at out[o] (level j in
 * the low nibble of byte j, level j+16 in the high); returns qh, their 5th bits.
 */
function packFiveBits(out: Uint8Array, o: number): number {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = levels5[j]!;
    const q1 = levels5[j + 16]!;
    out[o + j] = (q0 & 15) | ((q1 & 15) << 4);
    qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
  }
  return qh >>> 0;
}

/** Q5_0: per block of 32, the value of largest magnitude maps to −16, d = it / −16. */
export function quantizeQ5_0(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q5_0');
  const out = new Uint8Array(blocks * 22);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const at = b * 32;
    let peak = 0;
    for (let j = 0; j < 32; j++) if (Math.abs(x[at + j]!) > Math.abs(peak)) peak = x[at + j]!;
    const d = f16(peak / -16);
    const id = d !== 0 ? 1 / d : 0;
    for (let j = 0; j < 32; j++) levels5[j] = Math.max(0, Math.min(31, Math.round(x[at + j]! * id) + 16));
    view.setUint16(b * 22, f32ToF16Bits(d), true);
    view.setUint32(b * 22 + 2, packFiveBits(out, b * 22 + 6), true);
  }
  return out;
}

/** Q5_1 and Q4_1: per block of 32 an affine fit x ≈ d·q + m, q in 0..31 (0..15), d and m in f16. */
export function quantizeAffine32(x: Float32Array, type: 'Q5_1' | 'Q4_1'): Uint8Array {
  const blocks = blocksOf(x, type);
  const [qmax, size] = type === 'Q5_1' ? [31, 24] : [15, 20];
  const out = new Uint8Array(blocks * size);
  const view = new DataView(out.buffer);
  const fit = { s: 0, m: 0 };
  for (let b = 0; b < blocks; b++) {
    const at = b * 32;
    const o = b * size;
    fitAffine(x, at, 32, qmax, fit, false);
    const d = f16(fit.s);
    const m = f16(-fit.m);
    const id = d > 0 ? 1 / d : 0;
    for (let j = 0; j < 32; j++) levels5[j] = Math.max(0, Math.min(qmax, Math.round((x[at + j]! - m) * id)));
    view.setUint16(o, f32ToF16Bits(d), true);
    view.setUint16(o + 2, f32ToF16Bits(m), true);
    if (type === 'Q5_1') view.setUint32(o + 4, packFiveBits(out, o + 8), true);
    else packNibbles(out, o + 4);
  }
  return out;
}

/** Scratch of the fits: a sub-block's values widened once (and shifted by the affine fit's low end), and their weights. */
const fitValues = new Float64Array(32);
const fitShifted = new Float64Array(32);
const fitWeights = new Float64Array(32);

/**
 * Fills fitWeights with the weights of values off … off + n − 1 of the tensor being
 * quantised, or with ones (without an importance matrix, or where it is all zero); returns
 * their sum. As llama.cpp weighs them: the column's importance times √(σ² + x²), σ² the
 * values' mean square, so that within a column large values count more.
 */
function loadWeights(x: Float32Array, off: number, n: number): number {
  let sum = 0;
  if (importance) {
    const w = importance.weights;
    let sigma2 = 0;
    for (let i = 0; i < n; i++) sigma2 += x[off + i]! * x[off + i]!;
    sigma2 /= n;
    let c = ((importance.first ?? 0) + off) % w.length;
    for (let i = 0; i < n; i++) {
      sum += (fitWeights[i] = w[c]! * Math.sqrt(sigma2 + x[off + i]! * x[off + i]!));
      if (++c === w.length) c = 0;
    }
    if (sum > 0) return sum;
  }
  fitWeights.fill(1, 0, n);
  return n;
}

/**
 * The affine fit of n values to x ≈ s·q − m with q in 0..qmax and s ≥ 0: rounding at a
 * few scales around the one that spans the range, each followed by the least-squares s
 * and m for the levels it chose (its squared error in closed form from the same sums);
 * the lowest error wins. With `throughZero` (the k-quants, whose mins are unsigned) the
 * range always takes in zero and m ≥ 0; without it (Q5_1) m has either sign.
 */
function fitAffine(x: Float32Array, off: number, n: number, qmax: number, out: { s: number; m: number }, throughZero = true): void {
  let lo = throughZero ? 0 : Infinity;
  let hi = -Infinity;
  let sx = 0;
  let sxx = 0;
  const v = fitValues;
  const t = fitShifted;
  const w = fitWeights;
  const sw = loadWeights(x, off, n);
  for (let i = 0; i < n; i++) {
    const xi = x[off + i]!;
    v[i] = xi;
    lo = Math.min(lo, xi); hi = Math.max(hi, xi); sx += w[i]! * xi; sxx += w[i]! * xi * xi;
  }
  out.s = 0;
  out.m = -lo;
  if (!(hi > lo)) return;
  for (let i = 0; i < n; i++) t[i] = v[i]! - lo;
  let best = Infinity;
  for (let step = 0; step <= 20; step++) {
    const iscale = (qmax - 1 + 0.1 * step) / (hi - lo);
    let sq = 0, sqq = 0, sqx = 0;
    for (let i = 0; i < n; i++) {
      let q = (t[i]! * iscale + 0.5) | 0; // ≥ 0: round half up
      if (q > qmax) q = qmax;
      sq += w[i]! * q; sqq += w[i]! * q * q; sqx += w[i]! * q * v[i]!;
    }
    const det = sw * sqq - sq * sq;
    if (det <= 0) continue;
    let sc = (sw * sqx - sq * sx) / det;
    let c = (sqq * sx - sq * sqx) / det; // x ≈ s·q + c, c = −m
    if (c > 0 && throughZero) { c = 0; sc = sqx / sqq; }
    if (!(sc > 0)) continue;
    const err = sxx - 2 * sc * sqx - 2 * c * sx + sc * sc * sqq + 2 * sc * c * sq + sw * c * c;
    if (err < best) { best = err; out.s = sc; out.m = -c; }
  }
}

/**
 * The symmetric fit of n values to x ≈ s·q with q in −nmax..nmax−1: the value of largest
 * magnitude goes to −nmax at scales around that, each followed by the least-squares s
 * (whose error is Σx² − (Σqx)²/Σq², so the largest (Σqx)²/Σq² wins). s carries the sign
 * that puts the extra level on the peak's side.
 */
function fitSymmetric(x: Float32Array, off: number, n: number, nmax: number): number {
  let peak = 0;
  const v = fitValues;
  const w = fitWeights;
  loadWeights(x, off, n);
  for (let i = 0; i < n; i++) {
    v[i] = x[off + i]!;
    if (Math.abs(v[i]!) > Math.abs(peak)) peak = v[i]!;
  }
  if (peak === 0) return 0;
  let best = -Infinity;
  let bestS = -peak / nmax;
  for (let step = -9; step <= 9; step++) {
    const iscale = -(nmax + 0.1 * step) / peak;
    let sqx = 0, sqq = 0;
    for (let i = 0; i < n; i++) {
      let q = Math.floor(iscale * v[i]! + 0.5);
      if (q < -nmax) q = -nmax; else if (q > nmax - 1) q = nmax - 1;
      sqx += w[i]! * q * v[i]!; sqq += w[i]! * q * q;
    }
    if (sqq === 0) continue;
    const gain = (sqx * sqx) / sqq;
    if (gain > best) { best = gain; bestS = sqx / sqq; }
  }
  return bestS;
}

/**
 * Q4_K and Q5_K: eight 32-value affine sub-blocks per 256 (4- or 5-bit levels), their
 * scales and mins in 6 bits against f16 d and dmin.
 */
export function quantizeAffineK(x: Float32Array, type: 'Q4_K' | 'Q5_K'): Uint8Array {
  const blocks = blocksOf(x, type);
  const [qmax, size, nibbles] = type === 'Q4_K' ? [15, 144, 16] : [31, 176, 48];
  const out = new Uint8Array(blocks * size);
  const view = new DataView(out.buffer);
  const fit = { s: 0, m: 0 };
  const scales = new Float64Array(8);
  const mins = new Float64Array(8);
  const ls = new Uint8Array(8);
  const lm = new Uint8Array(8);
  const L = new Uint8Array(QK_K);
  for (let b = 0; b < blocks; b++) {
    const at = b * QK_K;
    const o = b * size;
    let maxS = 0, maxM = 0;
    for (let j = 0; j < 8; j++) {
      fitAffine(x, at + 32 * j, 32, qmax, fit);
      scales[j] = fit.s; mins[j] = fit.m;
      maxS = Math.max(maxS, fit.s); maxM = Math.max(maxM, fit.m);
    }
    const d = f16(maxS / 63);
    const dmin = f16(maxM / 63);
    for (let j = 0; j < 8; j++) {
      ls[j] = d > 0 ? Math.min(63, Math.round(scales[j]! / d)) : 0;
      lm[j] = dmin > 0 ? Math.min(63, Math.round(mins[j]! / dmin)) : 0;
    }
    view.setUint16(o, f32ToF16Bits(d), true);
    view.setUint16(o + 2, f32ToF16Bits(dmin), true);
    const sc = out.subarray(o + 4, o + 16);
    for (let j = 0; j < 4; j++) {
      sc[j] = ls[j]! | ((ls[j + 4]! >> 4) << 6);
      sc[j + 4] = lm[j]! | ((lm[j + 4]! >> 4) << 6);
      sc[j + 8] = (ls[j + 4]! & 15) | ((lm[j + 4]! & 15) << 4);
    }
    for (let j = 0; j < 8; j++) {
      const dd = d * ls[j]!;
      const dm = dmin * lm[j]!;
      for (let i = 0; i < 32; i++) L[32 * j + i] = dd > 0 ? Math.max(0, Math.min(qmax, Math.round((x[at + 32 * j + i]! + dm) / dd))) : 0;
    }
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const [lo, hi] = [L[64 * c + l]!, L[64 * c + 32 + l]!];
        out[o + nibbles + 32 * c + l] = (lo & 15) | ((hi & 15) << 4);
        if (qmax > 15) out[o + 16 + l]! |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
      }
    }
  }
  return out;
}

/** Fills `scales` with `fit(j)` for sub-blocks j < `count`; returns the one of largest magnitude (its sign kept). */
function peakOfScales(count: number, scales: Float64Array, fit: (j: number) => number): number {
  let peak = 0;
  for (let j = 0; j < count; j++) {
    scales[j] = fit(j);
    if (Math.abs(scales[j]!) > Math.abs(peak)) peak = scales[j]!;
  }
  return peak;
}

/** Q6_K: sixteen 16-value symmetric sub-blocks per 256, their scales as int8 against an f16 d. */
export function quantizeQ6K(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q6_K');
  const out = new Uint8Array(blocks * 210);
  const view = new DataView(out.buffer);
  const scales = new Float64Array(16);
  const L = new Uint8Array(QK_K);
  for (let b = 0; b < blocks; b++) {
    const at = b * QK_K;
    const o = b * 210;
    const peak = peakOfScales(16, scales, (j) => fitSymmetric(x, at + 16 * j, 16, 32));
    if (peak === 0) continue; // all zero: d = 0, every byte 0
    const d = f16(peak / -128);
    for (let j = 0; j < 16; j++) {
      const sc = d !== 0 ? Math.max(-128, Math.min(127, Math.round(scales[j]! / d))) : 0;
      view.setInt8(o + 192 + j, sc);
      const dd = d * sc;
      for (let i = 0; i < 16; i++) L[16 * j + i] = 32 + (dd !== 0 ? Math.max(-32, Math.min(31, Math.round(x[at + 16 * j + i]! / dd))) : 0);
    }
    view.setUint16(o + 208, f32ToF16Bits(d), true);
    for (let h = 0; h < 2; h++) {
      for (let l = 0; l < 32; l++) {
        const [q1, q2, q3, q4] = [L[128 * h + l]!, L[128 * h + l + 32]!, L[128 * h + l + 64]!, L[128 * h + l + 96]!];
        out[o + 64 * h + l] = (q1 & 15) | ((q3 & 15) << 4);
        out[o + 64 * h + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
        out[o + 128 + 32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}

/** Stores 32 4-bit levels (levels5's first 32, 0..15) as Q4_0, Q4_1 and IQ4_NL hold them: level j in the low nibble of byte j, j+16 in the high. */
function packNibbles(out: Uint8Array, o: number): void {
  for (let j = 0; j < 16; j++) out[o + j] = levels5[j]! | (levels5[j + 16]! << 4);
}

/** Q4_0: per block of 32 the symmetric fit x ≈ d·(q − 8), q in 0..15 (fitSymmetric's search, d in f16). */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q4_0');
  const out = new Uint8Array(blocks * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const at = b * 32;
    const d = f16(fitSymmetric(x, at, 32, 8));
    const id = d !== 0 ? 1 / d : 0;
    for (let j = 0; j < 32; j++) levels5[j] = Math.max(0, Math.min(15, Math.round(x[at + j]! * id) + 8));
    view.setUint16(b * 18, f32ToF16Bits(d), true);
    packNibbles(out, b * 18 + 2);
  }
  return out;
}

/**
 * Stores 256 2-bit values (L, 0..3) as Q2_K and Q3_K hold them: value 128·h + 32·k + m in
 * bits 2k of byte 32·h + m.
 */
function packTwoBits(L: Uint8Array, out: Uint8Array, o: number): void {
  for (let h = 0; h < 2; h++) {
    for (let m = 0; m < 32; m++) {
      const i = 128 * h + m;
      out[o + 32 * h + m] = (L[i]! & 3) | ((L[i + 32]! & 3) << 2) | ((L[i + 64]! & 3) << 4) | ((L[i + 96]! & 3) << 6);
    }
  }
}

/** Q2_K: sixteen 16-value affine sub-blocks per 256 (2-bit levels), their scales and mins in 4 bits against f16 d and dmin. */
export function quantizeQ2K(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q2_K');
  const out = new Uint8Array(blocks * 84);
  const view = new DataView(out.buffer);
  const fit = { s: 0, m: 0 };
  const scales = new Float64Array(16);
  const mins = new Float64Array(16);
  const L = new Uint8Array(QK_K);
  for (let b = 0; b < blocks; b++) {
    const at = b * QK_K;
    const o = b * 84;
    let maxS = 0, maxM = 0;
    for (let j = 0; j < 16; j++) {
      fitAffine(x, at + 16 * j, 16, 3, fit);
      scales[j] = fit.s; mins[j] = fit.m;
      maxS = Math.max(maxS, fit.s); maxM = Math.max(maxM, fit.m);
    }
    const d = f16(maxS / 15);
    const dmin = f16(maxM / 15);
    for (let j = 0; j < 16; j++) {
      const ls = d > 0 ? Math.min(15, Math.round(scales[j]! / d)) : 0;
      const lm = dmin > 0 ? Math.min(15, Math.round(mins[j]! / dmin)) : 0;
      out[o + j] = ls | (lm << 4);
      const dd = d * ls;
      const dm = dmin * lm;
      for (let i = 0; i < 16; i++) L[16 * j + i] = dd > 0 ? Math.max(0, Math.min(3, Math.round((x[at + 16 * j + i]! + dm) / dd))) : 0;
    }
    packTwoBits(L, out, o + 16);
    view.setUint16(o + 80, f32ToF16Bits(d), true);
    view.setUint16(o + 82, f32ToF16Bits(dmin), true);
  }
  return out;
}

/**
 * Q3_K: sixteen 16-value symmetric sub-blocks per 256 (3-bit levels −4..3: two low bits,
 * and a high bit set for levels ≥ 0), their scales in 6 bits (−32..31) against an f16 d.
 */
export function quantizeQ3K(x: Float32Array): Uint8Array {
  const blocks = blocksOf(x, 'Q3_K');
  const out = new Uint8Array(blocks * 110);
  const view = new DataView(out.buffer);
  const scales = new Float64Array(16);
  const L = new Uint8Array(QK_K);
  for (let b = 0; b < blocks; b++) {
    const at = b * QK_K;
    const o = b * 110;
    const d = f16(peakOfScales(16, scales, (j) => fitSymmetric(x, at + 16 * j, 16, 4)) / -32);
    for (let j = 0; j < 16; j++) {
      const ls = d !== 0 ? Math.max(-32, Math.min(31, Math.round(scales[j]! / d))) : 0;
      const s6 = ls + 32; // low nibble in byte j (j < 8) or j − 8's high nibble; high 2 bits in byte 8 + (j & 3) at bit 2·(j >> 2)
      out[o + 96 + (j & 7)]! |= (s6 & 15) << (j < 8 ? 0 : 4);
      out[o + 104 + (j & 3)]! |= (s6 >> 4) << (2 * (j >> 2));
      const dd = d * ls;
      for (let i = 0; i < 16; i++) {
        const k = 16 * j + i;
        const q = dd !== 0 ? Math.max(-4, Math.min(3, Math.round(x[at + k]! / dd))) : 0;
        L[k] = q + 4;
        if (q >= 0) out[o + (k & 31)]! |= 1 << (k >> 5); // high bit: no −4
      }
    }
    packTwoBits(L, out, o + 32);
    view.setUint16(o + 108, f32ToF16Bits(d), true);
  }
  return out;
}

/** IQ4_MID[i]: halfway between levels i and i + 1 (a value there goes to the lower). */
const IQ4_MID = Float64Array.from({ length: 16 }, (_, i) => (i < 15 ? (IQ4_LEVELS[i]! + IQ4_LEVELS[i + 1]!) / 2 : Infinity));
/** IQ4_CELL[c + 128]: the index of the level nearest c, for the whole numbers c in −128..114. */
const IQ4_CELL = Uint8Array.from({ length: 243 }, (_, k) => {
  let i = 0;
  while (k - 128 > IQ4_MID[i]!) i++;
  return i;
});

/**
 * The index of the IQ4 level nearest v: the one nearest ⌊v⌋, or the next when v is past
 * their midpoint (levels are at least 10 apart, so a unit cell holds at most one midpoint).
 */
function nearestIQ4(v: number): number {
  const c = Math.floor(v);
  if (c < -128) return 0;
  if (c > 114) return 15;
  const i = IQ4_CELL[c + 128]!;
  return v > IQ4_MID[i]! ? i + 1 : i;
}

/**
 * The fit of n values to x ≈ s·level[q] over IQ4's 16 levels: the value of largest
 * magnitude goes to the extreme level −127 at scales around that, each followed by the
 * least-squares s for the levels it chose; the largest (Σ level·x)² / Σ level² wins. The
 * chosen level indices are left in levels5.
 */
function fitIQ4(x: Float32Array, off: number, n: number): number {
  // Not weighted by an importance matrix: on the main job's model it made IQ4_NL worse (docs/BENCHMARKS.md).
  let peak = 0;
  const v = fitValues;
  for (let i = 0; i < n; i++) {
    v[i] = x[off + i]!;
    if (Math.abs(v[i]!) > Math.abs(peak)) peak = v[i]!;
  }
  if (peak === 0) { levels5.fill(8, 0, n); return 0; } // level 1: the value nearest zero (× a zero scale)
  let best = -Infinity;
  let bestS = 0;
  let bestStep = 0;
  for (let step = -7; step <= 7; step++) {
    const iscale = (-127 + step) / peak;
    let slx = 0, sll = 0;
    for (let i = 0; i < n; i++) {
      const l = IQ4_LEVELS[nearestIQ4(v[i]! * iscale)]!;
      slx += l * v[i]!; sll += l * l;
    }
    if (sll > 0 && slx * slx > best * sll) { best = (slx * slx) / sll; bestS = slx / sll; bestStep = step; }
  }
  const iscale = (-127 + bestStep) / peak;
  for (let i = 0; i < n; i++) levels5[i] = nearestIQ4(v[i]! * iscale);
  return bestS;
}

/**
 * IQ4_NL: per block of 32 an f16 scale over IQ4's 16 non-uniform levels; IQ4_XS: the same
 * levels with one f16 d per 256 and a 6-bit scale (−32..31) per 32.
 */
export function quantizeIQ4(x: Float32Array, type: 'IQ4_NL' | 'IQ4_XS'): Uint8Array {
  const blocks = blocksOf(x, type);
  const size = BLOCKS[type][1];
  const out = new Uint8Array(blocks * size);
  const view = new DataView(out.buffer);
  const scales = new Float64Array(8);
  const assign = (at: number, s: number, o: number): void => {
    const is = s !== 0 ? 1 / s : 0;
    for (let j = 0; j < 32; j++) levels5[j] = nearestIQ4(x[at + j]! * is);
    packNibbles(out, o);
  };
  for (let b = 0; b < blocks; b++) {
    const at = b * BLOCKS[type][0];
    const o = b * size;
    if (type === 'IQ4_NL') {
      const d = f16(fitIQ4(x, at, 32));
      view.setUint16(o, f32ToF16Bits(d), true);
      assign(at, d, o + 2);
      continue;
    }
    const d = f16(peakOfScales(8, scales, (j) => fitIQ4(x, at + 32 * j, 32)) / -32);
    let high = 0;
    for (let j = 0; j < 8; j++) {
      const ls = d !== 0 ? Math.max(-32, Math.min(31, Math.round(scales[j]! / d))) : 0;
      out[o + 4 + (j >> 1)]! |= ((ls + 32) & 15) << (4 * (j & 1));
      high |= ((ls + 32) >> 4) << (2 * j);
      assign(at + 32 * j, d * ls, o + 8 + 16 * j);
    }
    view.setUint16(o, f32ToF16Bits(d), true);
    view.setUint16(o + 2, high, true);
  }
  return out;
}

/** The values `bytes` of `type` hold (`n` of them): what llama.cpp reads from them. */
export function dequantize(type: QuantType, bytes: Uint8Array, n: number): Float32Array {
  const [per, size] = BLOCKS[type];
  if (n % per !== 0 || bytes.length !== (n / per) * size) {
    throw new LongLoraError(`${type}: ${bytes.length} bytes do not hold ${n} values (${size} bytes per ${per})`);
  }
  const y = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const half = (at: number): number => f16BitsToF32(view.getUint16(at, true));
  for (let b = 0; b < n / per; b++) {
    const o = b * size;
    const at = b * per;
    switch (type) {
      case 'Q8_0': {
        const d = half(o);
        for (let j = 0; j < 32; j++) y[at + j] = d * view.getInt8(o + 2 + j);
        break;
      }
      case 'Q5_0':
      case 'Q5_1': {
        const d = half(o);
        const m = type === 'Q5_1' ? half(o + 2) : 0;
        const bits = type === 'Q5_1' ? o + 4 : o + 2;
        const qh = view.getUint32(bits, true);
        for (let j = 0; j < 16; j++) {
          const byte = bytes[bits + 4 + j]!;
          const q0 = (byte & 15) | (((qh >>> j) & 1) << 4);
          const q1 = (byte >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          // Q5_0: d·(q − 16), exact in f32 (16 levels either side of an f16 d); Q5_1: d·q + m in f32 steps
          y[at + j] = type === 'Q5_0' ? d * (q0 - 16) : Math.fround(d * q0) + m;
          y[at + j + 16] = type === 'Q5_0' ? d * (q1 - 16) : Math.fround(d * q1) + m;
        }
        break;
      }
      case 'Q4_K':
      case 'Q5_K': {
        const d = half(o);
        const dmin = half(o + 2);
        const sc = bytes.subarray(o + 4, o + 16);
        const high = type === 'Q5_K';
        const nibbles = o + (high ? 48 : 16);
        for (let j = 0; j < 8; j++) {
          const [s, m] = j < 4
            ? [sc[j]! & 63, sc[j + 4]! & 63]
            : [(sc[j + 4]! & 15) | ((sc[j - 4]! >> 6) << 4), (sc[j + 4]! >> 4) | ((sc[j]! >> 6) << 4)];
          const d1 = Math.fround(d * s);
          const m1 = Math.fround(dmin * m);
          const c = j >> 1; // 64-value chunk: its 32 bytes hold sub-block 2c in low nibbles, 2c+1 in high
          for (let l = 0; l < 32; l++) {
            const byte = bytes[nibbles + 32 * c + l]!;
            const q = ((j & 1) === 0 ? byte & 15 : byte >> 4) | (high ? ((bytes[o + 16 + l]! >> j) & 1) << 4 : 0);
            y[at + 32 * j + l] = Math.fround(d1 * q) - m1; // f32 steps, as llama.cpp's
          }
        }
        break;
      }
      case 'Q6_K': {
        const d = half(o + 208);
        for (let h = 0; h < 2; h++) {
          for (let l = 0; l < 32; l++) {
            const lo0 = bytes[o + 64 * h + l]!;
            const lo1 = bytes[o + 64 * h + l + 32]!;
            const hi = bytes[o + 128 + 32 * h + l]!;
            const q = [(lo0 & 15) | ((hi & 3) << 4), (lo1 & 15) | (((hi >> 2) & 3) << 4), (lo0 >> 4) | (((hi >> 4) & 3) << 4), (lo1 >> 4) | (((hi >> 6) & 3) << 4)];
            for (let k = 0; k < 4; k++) {
              const i = 128 * h + l + 32 * k;
              y[at + i] = Math.fround(d * view.getInt8(o + 192 + (i >> 4))) * (q[k]! - 32);
            }
          }
        }
        break;
      }
      case 'Q4_0':
      case 'Q4_1':
      case 'IQ4_NL': {
        const d = half(o);
        const m = type === 'Q4_1' ? half(o + 2) : 0;
        const qs = o + (type === 'Q4_1' ? 4 : 2);
        for (let j = 0; j < 16; j++) {
          const byte = bytes[qs + j]!;
          for (const [k, q] of [[j, byte & 15], [j + 16, byte >> 4]] as const) {
            // each product is exact in f32 (an f16 times a small integer); Q4_1 rounds its sum once
            y[at + k] = type === 'Q4_0' ? d * (q - 8) : type === 'IQ4_NL' ? d * IQ4_LEVELS[q]! : d * q + m;
          }
        }
        break;
      }
      case 'Q2_K':
      case 'Q3_K': {
        // 16-value groups g: q[l] of bytes qs + 32·(g >> 3) + 16·(g & 1) + l, bits 2·((g >> 1) & 3)
        const q2 = type === 'Q2_K';
        const qs = o + (q2 ? 16 : 32);
        const d = half(o + (q2 ? 80 : 108));
        const dmin = q2 ? half(o + 82) : 0;
        for (let g = 0; g < 16; g++) {
          let dl: number, ml = 0;
          if (q2) {
            const sc = bytes[o + g]!;
            dl = d * (sc & 15);
            ml = dmin * (sc >> 4);
          } else {
            // sixteen 6-bit scales: low nibbles in bytes 0-7 (g < 8 low, g ≥ 8 high), high 2 bits in bytes 8-11
            const sc = o + 96;
            const low = g < 8 ? bytes[sc + g]! & 15 : bytes[sc + g - 8]! >> 4;
            const high = (bytes[sc + 8 + (g & 3)]! >> (2 * (g >> 2))) & 3;
            dl = d * ((low | (high << 4)) - 32);
          }
          const shift = 2 * ((g >> 1) & 3);
          const base = qs + 32 * (g >> 3) + 16 * (g & 1);
          for (let l = 0; l < 16; l++) {
            const q = (bytes[base + l]! >> shift) & 3;
            const i = 16 * g + l;
            if (q2) y[at + i] = Math.fround(dl * q) - ml;
            else y[at + i] = dl * (q - ((bytes[o + (i & 31)]! >> (i >> 5)) & 1 ? 0 : 4));
          }
        }
        break;
      }
      case 'IQ4_XS': {
        const d = half(o);
        const scalesH = view.getUint16(o + 2, true);
        for (let j = 0; j < 8; j++) {
          const ls = ((bytes[o + 4 + (j >> 1)]! >> (4 * (j & 1))) & 15) | (((scalesH >> (2 * j)) & 3) << 4);
          const dl = d * (ls - 32);
          for (let l = 0; l < 16; l++) {
            const byte = bytes[o + 8 + 16 * j + l]!;
            y[at + 32 * j + l] = dl * IQ4_LEVELS[byte & 15]!;
            y[at + 32 * j + l + 16] = dl * IQ4_LEVELS[byte >> 4]!;
          }
        }
        break;
      }
    }
  }
  return y;
}
