/**
 * NF4 with double quantisation: QLoRA's storage of a frozen weight in about 4.13 bits per
 * value (Dettmers et al., 2023, arXiv 2305.14314; bitsandbytes `quantize_4bit(...,
 * quant_type="nf4", compress_statistics=True)`). Host-side: weights are quantised once,
 * when the base model is loaded; dequantisation is a backend kernel
 * (`Backend.dequantize4bit`), so a GPU dequantises on the device.
 *
 * For a tensor of n values, flattened row-major ([out, in] for a linear weight):
 * 1. Blocks of 64 values, each with its absmax; each value divided by its block's absmax
 *    (as x · f32(1/absmax)) and mapped to the nearest of the 16 NF4 codes (`quantizeBlockwise`,
 *    codebooks.ts). A last block shorter than 64 is quantised with its own absmax.
 * 2. Packing (DECISION, bitsandbytes' order): two codes per byte, the FIRST element of each
 *    pair in the HIGH nibble: byte j = codes[2j] << 4 | codes[2j+1]. An odd n gets one
 *    padding nibble, the code of 0 (7), in the low nibble of the last byte.
 * 3. Double quantisation of the ⌈n/64⌉ float32 absmax values ("scales"): their mean is
 *    subtracted (the offset), and the centred scales are quantised blockwise again with
 *    block size 256 against the signed 8-bit dynamic map, one float32 absmax per 256 scales.
 *    DECISION (offset): the mean is summed left to right in float64 and rounded to float32
 *    once (bitsandbytes takes torch's float32 mean, whose summation order is the library's;
 *    the offset is stored, so this only decides which offset is chosen, by at most an ulp).
 *    Centring is one float32 subtraction: f32(absmax − offset).
 *
 * Dequantisation (the kernel): scale = f32(f32(code8[c8] · absmax2) + offset), then
 * value = f32(code4[c4] · scale).
 *
 * Error bound of one value of block b (used by the tests): with a = absmax[b] and s its
 * dequantised scale, |x − x̂| ≤ (G4/2)·a + |a − s| (+ float32 rounding), where G4 is the
 * largest gap between neighbouring NF4 codes (0.3038, between −1 and −0.6962); and the
 * scale's own error |a − s| ≤ (G8/2)·absmax2 (+ rounding), G8 the largest gap of the
 * dynamic map (0.0141).
 */
import { LongLoraError } from '../errors.js';
import {
  DYNAMIC_CODE, DYNAMIC_MIDPOINTS, NF4_CODE, NF4_MIDPOINTS, NF4_ZERO, largestGap, nearestCode,
} from './codebooks.js';

// ---- blockwise absmax quantisation ------------------------------------------------

/** The smallest divisor bitsandbytes clamps an absmax to (float32 of 1e-38). */
const TINY = Math.fround(1e-38);

export interface BlockwiseCodes {
  /** One code index per element. */
  codes: Uint8Array;
  /** One absmax per block (⌈n / blockSize⌉), float32. */
  absmax: Float32Array;
}

/** Number of blocks of `blockSize` covering n elements (the last one may be partial). */
export function blockCount(n: number, blockSize: number): number {
  return Math.ceil(n / blockSize);
}

/**
 * Blockwise absmax quantisation against a code book (bitsandbytes' scheme, used twice by
 * NF4: 4-bit codes for the weights, 8-bit codes for their block scales).
 *
 * The flat tensor is cut into blocks of `blockSize` consecutive elements; the last block
 * may be shorter (DECISION: like bitsandbytes, a tensor whose size is not a multiple of the
 * block is not padded with values: its last block is quantised with the absmax of its own
 * elements). Per block, in float32 arithmetic:
 *
 *   absmax   = max |v|                      (stored unclamped: an all-zero block keeps 0)
 *   inv      = f32(1 / max(absmax, f32(1e-38)))
 *   scaled   = clamp(f32(v · inv), −1, 1)   (the product may exceed 1 by an ulp, hence the clamp)
 *   code     = nearest code book entry of scaled, ties to the lower one (codebooks.ts)
 *
 * Multiplying by the float32 reciprocal instead of dividing is what bitsandbytes does (its
 * CUDA kernel and its torch reference); it decides which code a value near a midpoint gets.
 *
 * `values` are float32 values (read as numbers); `mid` the code book's float32 midpoints.
 */
export function quantizeBlockwise(values: ArrayLike<number>, mid: Float32Array, blockSize: number): BlockwiseCodes {
  const n = values.length;
  const blocks = blockCount(n, blockSize);
  const codes = new Uint8Array(n);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize;
    const end = Math.min(n, start + blockSize);
    let m = 0;
    for (let i = start; i < end; i++) m = Math.max(m, Math.abs(values[i]!));
    absmax[b] = m;
    const inv = Math.fround(1 / Math.max(m, TINY));
    for (let i = start; i < end; i++) {
      const scaled = Math.min(1, Math.max(-1, Math.fround(values[i]! * inv)));
      codes[i] = nearestCode(mid, scaled);
    }
  }
  return { codes, absmax };
}

// ---- NF4 -------------------------------------------------------------------------

/** Values per 4-bit block (one absmax each). */
export const NF4_BLOCK_SIZE = 64;
/** Scales per block of the 8-bit double quantisation (one absmax each). */
export const SCALE_BLOCK_SIZE = 256;

/** A tensor in NF4 with double-quantised scales, on the host. */
export interface Nf4Data {
  /** Number of values. */
  n: number;
  /** ⌈n/2⌉ bytes, two 4-bit codes each (first element in the high nibble). */
  packed: Uint8Array;
  /** ⌈n/64⌉ 8-bit codes of the centred block scales (indices into DYNAMIC_CODE). */
  scaleCodes: Uint8Array;
  /** ⌈(n/64)/256⌉ float32 absmax values of the centred scales. */
  scaleAbsmax: Float32Array;
  /** Float32 mean of the block scales, added back when dequantising. */
  scaleOffset: number;
}

/** Two 4-bit codes per byte, first in the high nibble; an odd count is padded with the code of 0. */
export function packNibbles(codes: Uint8Array): Uint8Array {
  const packed = new Uint8Array(Math.ceil(codes.length / 2));
  for (let j = 0; j < packed.length; j++) {
    const hi = codes[2 * j]!;
    const lo = 2 * j + 1 < codes.length ? codes[2 * j + 1]! : NF4_ZERO;
    packed[j] = (hi << 4) | lo;
  }
  return packed;
}

/** The n 4-bit codes of packed bytes (the inverse of `packNibbles`). */
export function unpackNibbles(packed: Uint8Array, n: number): Uint8Array {
  const codes = new Uint8Array(n);
  for (let i = 0; i < n; i++) codes[i] = (i & 1) === 0 ? packed[i >> 1]! >> 4 : packed[i >> 1]! & 0x0f;
  return codes;
}

/** Float32 mean, summed left to right in float64, rounded once. */
function meanF32(values: Float32Array): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return Math.fround(s / values.length);
}

/**
 * Quantises float32 values to NF4 with double-quantised scales. `what` names the tensor in
 * errors. Non-finite values are an error (a block with one would lose every other value).
 */
export function quantizeNf4(values: Float32Array, what = 'tensor'): Nf4Data {
  const n = values.length;
  if (n === 0) throw new LongLoraError(`NF4: ${what} is empty; there is nothing to quantise`);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new LongLoraError(`NF4: ${what} holds ${values[i]} at index ${i}; a weight must be finite to be quantised (is the checkpoint damaged?)`);
    }
  }
  const weights = quantizeBlockwise(values, NF4_MIDPOINTS, NF4_BLOCK_SIZE);
  const scaleOffset = meanF32(weights.absmax);
  const centred = weights.absmax.map((a) => Math.fround(a - scaleOffset));
  const scales = quantizeBlockwise(centred, DYNAMIC_MIDPOINTS, SCALE_BLOCK_SIZE);
  return { n, packed: packNibbles(weights.codes), scaleCodes: scales.codes, scaleAbsmax: scales.absmax, scaleOffset };
}

/** The dequantised block scales: f32(f32(code8[c] · absmax2) + offset), as the kernel computes them. */
export function dequantizeScales(q: Nf4Data): Float32Array {
  const s = new Float32Array(q.scaleCodes.length);
  for (let b = 0; b < s.length; b++) {
    s[b] = Math.fround(Math.fround(DYNAMIC_CODE[q.scaleCodes[b]!]! * q.scaleAbsmax[Math.floor(b / SCALE_BLOCK_SIZE)]!) + q.scaleOffset);
  }
  return s;
}

/** Checks the sizes of an Nf4Data against its element count (data read from elsewhere). */
export function checkNf4Data(q: Nf4Data, what = 'tensor'): void {
  const blocks = blockCount(q.n, NF4_BLOCK_SIZE);
  const want: Array<[string, number, number]> = [
    ['packed bytes', q.packed.length, Math.ceil(q.n / 2)],
    ['scale codes', q.scaleCodes.length, blocks],
    ['scale absmax values', q.scaleAbsmax.length, blockCount(blocks, SCALE_BLOCK_SIZE)],
  ];
  for (const [name, got, expected] of want) {
    if (got !== expected) throw new LongLoraError(`NF4: ${what} has ${got} ${name}, but ${q.n} values need ${expected}`);
  }
}

/** Device bytes of an n-value NF4 tensor (packed codes, scale codes, float32 scale absmax). */
export function nf4Bytes(n: number): number {
  const blocks = blockCount(n, NF4_BLOCK_SIZE);
  return Math.ceil(n / 2) + blocks + 4 * blockCount(blocks, SCALE_BLOCK_SIZE);
}

/** Half the largest gap between neighbouring NF4 codes (0.1519): the normalised rounding bound. */
export const NF4_HALF_GAP = largestGap(NF4_CODE) / 2;
/** Half the largest gap of the 8-bit dynamic map (0.0070): the bound of a centred scale / its absmax. */
export const DYNAMIC_HALF_GAP = largestGap(DYNAMIC_CODE) / 2;
