/**
 * Reference loops for quantised weights: dequantisation of a blockwise 4-bit tensor with
 * double-quantised scales (QLoRA NF4; the format is described in `src/quant/nf4.ts`, the
 * kernel contract in `Dequantize4bitArgs`). Every product and sum is rounded to float32 with
 * `Math.fround`, exactly as a float32 GPU kernel computes it (a float64 product of two
 * float32 values rounded once to float32 is the correctly rounded float32 product).
 */
import type { Dequantize4bitArgs } from '../backend.js';
import type { F } from './elementwise.js';

/** scale[b] = f32(f32(code8[codes[b]] · absmax[⌊b / scaleBlockSize⌋]) + offset). */
function dequantizeScales(codes: Uint8Array, code8: F, absmax: F, scaleBlockSize: number, offset: number): Float32Array {
  const scales = new Float32Array(codes.length);
  for (let b = 0; b < codes.length; b++) {
    const product = Math.fround(code8[codes[b]!]! * absmax[Math.floor(b / scaleBlockSize)]!);
    scales[b] = Math.fround(product + offset);
  }
  return scales;
}

export function dequantize4bit(packed: Uint8Array, code4: F, scaleCodes: Uint8Array, code8: F, scaleAbsmax: F,
  out: F, a: Dequantize4bitArgs): void {
  const scales = dequantizeScales(scaleCodes, code8, scaleAbsmax, a.scaleBlockSize, a.scaleOffset);
  for (let i = 0; i < a.n; i++) {
    const byte = packed[i >> 1]!;
    const nibble = (i & 1) === 0 ? byte >> 4 : byte & 0x0f; // first element in the high nibble
    out[i] = Math.fround(code4[nibble]! * scales[Math.floor(i / a.blockSize)]!);
  }
}
