/**
 * The host-side LoRA update of the one-tensor-at-a-time merge (addLoraDelta: W + s·B·A,
 * summed in f64) on Llama-2-7B's projection shapes, against the plain loop that takes one
 * output row and one rank at a time (what the merge used before), in the same run. Both
 * must give the same bits; the bench checks it. Prints seconds per tensor, GMAC/s, the
 * ratio, and the projected B·A time of a whole 7B merge (32 layers × q/k/v/o for the
 * default targets; all seven projections for all-linear).
 *
 *   npm run build && node dist/bench/merge.js [--ranks 8,64] [--reps 3]
 */
import { parseArgs } from 'node:util';
import { addLoraDelta } from '../src/lora/delta.js';
import { Rng } from '../src/tensor/random.js';

const { values } = parseArgs({ options: { ranks: { type: 'string', default: '8,64' }, reps: { type: 'string', default: '3' } } });
const ranks = values.ranks!.split(',').map(Number);
const reps = Number(values.reps);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One output row and one rank at a time: the reference. */
function rowByRank(W: Float32Array, B: Float32Array, A: Float32Array, out: number, inF: number, r: number, s: number): Float32Array {
  const row = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const b = B[o * r + k]!;
      const off = k * inF;
      for (let i = 0; i < inF; i++) row[i]! += b * A[off + i]!;
    }
    const base = o * inF;
    for (let i = 0; i < inF; i++) W[base + i] = Math.fround(W[base + i]! + Math.fround(s * Math.fround(row[i]!)));
  }
  return W;
}

const rng = new Rng(5);
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * 0.02);
const shapes = [['q/k/v/o_proj', 4096, 4096], ['gate/up_proj', 11008, 4096], ['down_proj', 4096, 11008]] as const;
console.log(`addLoraDelta vs one row and one rank at a time; median of ${reps}; Node ${process.version}`);
console.log('shape'.padEnd(14) + 'rank'.padStart(5) + 'reference s'.padStart(13) + 'tiled s'.padStart(10) + 'GMAC/s'.padStart(9) + 'ratio'.padStart(8));
const perLayer = new Map<number, { ref: number; tiled: number; refAll: number; tiledAll: number }>();
for (const r of ranks) {
  const acc = { ref: 0, tiled: 0, refAll: 0, tiledAll: 0 };
  for (const [name, out, inF] of shapes) {
    const W = rand(out * inF);
    const B = rand(out * r);
    const A = rand(r * inF);
    const tr: number[] = [];
    const tt: number[] = [];
    let same = true;
    for (let i = 0; i < reps; i++) {
      const w1 = W.slice();
      let t = performance.now();
      rowByRank(w1, B, A, out, inF, r, 2);
      tr.push((performance.now() - t) / 1000);
      const w2 = W.slice();
      t = performance.now();
      addLoraDelta(w2, B, A, out, inF, r, 2);
      tt.push((performance.now() - t) / 1000);
      for (let j = 0; j < w1.length && same; j++) same = Object.is(w1[j], w2[j]);
    }
    if (!same) throw new Error(`${name} rank ${r}: the tiled update differs from the reference`);
    const [ref, tiled] = [median(tr), median(tt)];
    console.log(name.padEnd(14) + String(r).padStart(5) + ref.toFixed(3).padStart(13) + tiled.toFixed(3).padStart(10)
      + ((out * inF * r) / tiled / 1e9).toFixed(2).padStart(9) + (ref / tiled).toFixed(2).padStart(7) + '×');
    const n = name === 'q/k/v/o_proj' ? 4 : name === 'gate/up_proj' ? 2 : 1;
    if (name === 'q/k/v/o_proj') { acc.ref += n * ref; acc.tiled += n * tiled; }
    acc.refAll += n * ref;
    acc.tiledAll += n * tiled;
  }
  perLayer.set(r, acc);
}
for (const [r, a] of perLayer) {
  const min = (s: number): string => `${(32 * s / 60).toFixed(1)} min`;
  console.log(`rank ${r}, 32 layers: q/k/v/o ${min(a.ref)} → ${min(a.tiled)}; all-linear ${min(a.refAll)} → ${min(a.tiledAll)}`);
}
