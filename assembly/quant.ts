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
 * 8 scaleBlockSize, 9 scaleOffset, 10 per.
 */
import { argF, argI, argP } from './simd';

export function dequantize4bit(args: usize, chunk: i32, _tid: i32): void {
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
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
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
