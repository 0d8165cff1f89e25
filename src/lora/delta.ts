/**
 * A LoRA update on host arrays, without Node: the merge (adapted.ts) and the GGUF readers'
 * LoRA adapters (gguf-model.ts) add it to a weight as they read it.
 */

/**
 * W + s·B·A for W [out, in], B [out, r], A [r, in], in place on W: each product summed in
 * f64 over the ranks in order, then rounded to f32 as a kernel's result would be, scaled
 * and added in f32. Two output rows and four ranks are taken per pass over a row of A, so
 * each A value read serves eight products and each f64 partial sum is loaded and stored
 * once per four ranks; the sums are the same as one rank at a time (same order), so the
 * result does not depend on the tiling.
 */
export function addLoraDelta(W: Float32Array, B: Float32Array, A: Float32Array, out: number, inF: number, r: number, s: number): Float32Array {
  const row0 = new Float64Array(inF);
  const row1 = new Float64Array(inF);
  for (let o = 0; o < out; o += 2) {
    const pair = o + 1 < out;
    const b0 = o * r;
    const b1 = pair ? b0 + r : -1;
    const bAt = (base: number, k: number): number => (base < 0 ? 0 : B[base + k]!);
    row0.fill(0);
    row1.fill(0);
    let k = 0;
    for (; k + 4 <= r; k += 4) {
      const p0 = bAt(b0, k), p1 = bAt(b0, k + 1), p2 = bAt(b0, k + 2), p3 = bAt(b0, k + 3);
      const q0 = bAt(b1, k), q1 = bAt(b1, k + 1), q2 = bAt(b1, k + 2), q3 = bAt(b1, k + 3);
      const a0 = k * inF, a1 = a0 + inF, a2 = a1 + inF, a3 = a2 + inF;
      for (let i = 0; i < inF; i++) {
        const x0 = A[a0 + i]!, x1 = A[a1 + i]!, x2 = A[a2 + i]!, x3 = A[a3 + i]!;
        row0[i] = row0[i]! + p0 * x0 + p1 * x1 + p2 * x2 + p3 * x3;
        row1[i] = row1[i]! + q0 * x0 + q1 * x1 + q2 * x2 + q3 * x3;
      }
    }
    for (; k < r; k++) {
      const p = bAt(b0, k), q = bAt(b1, k), a = k * inF;
      for (let i = 0; i < inF; i++) {
        const x = A[a + i]!;
        row0[i]! += p * x;
        row1[i]! += q * x;
      }
    }
    for (let j = 0; j < (pair ? 2 : 1); j++) {
      const row = j === 0 ? row0 : row1;
      const base = (o + j) * inF;
      for (let i = 0; i < inF; i++) W[base + i] = Math.fround(W[base + i]! + Math.fround(s * Math.fround(row[i]!)));
    }
  }
  return W;
}
