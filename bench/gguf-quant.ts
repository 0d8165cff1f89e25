/**
 * GGUF quantisation: the speed of each block type's quantiser on a Llama-2-7B MLP weight
 * (11008 × 4096 Gaussian values), against converting the same tensor to f16 in the same
 * run; Q4_K and Q6_K on all the machine's threads (QuantPool, as the export runs them)
 * against one; and the bits per weight of each export dtype on Llama-2-7B's shapes (norms in f32
 * included), from the types ggufWeightType gives each tensor.
 *
 *   npm run build && node dist/bench/gguf-quant.js [--reps 3]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { BLOCKS, quantize, type QuantType } from '../src/io/ggml-quants.js';
import { ggufTensorBytes } from '../src/io/gguf.js';
import { QuantPool } from '../src/io/quant-pool.js';
import { llamaTensorShapes, parseLlamaConfig } from '../src/models/llama/config.js';
import { GGUF_DTYPES, ggufWeightType } from '../src/models/llama/gguf.js';
import { fromFloatArray } from '../src/tensor/dtype.js';
import { Rng } from '../src/tensor/random.js';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '3' } } });
const reps = Number(values.reps);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rng = new Rng(1);
const x = Float32Array.from({ length: 11008 * 4096 }, () => rng.normal() * 0.02);
const time = (f: () => unknown): number => {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) { const t = performance.now(); f(); ts.push((performance.now() - t) / 1000); }
  return median(ts);
};
console.log(`quantising 11008 × 4096 values, median of ${reps}; Node ${process.version}`);
const f16 = time(() => fromFloatArray(x, 'f16'));
console.log(`${'f16 (reference)'.padEnd(16)}${f16.toFixed(2).padStart(8)} s${(x.length / f16 / 1e6).toFixed(1).padStart(8)} M values/s`);
for (const type of Object.keys(BLOCKS) as QuantType[]) {
  const s = time(() => quantize(type, x));
  console.log(`${type.padEnd(16)}${s.toFixed(2).padStart(8)} s${(x.length / s / 1e6).toFixed(1).padStart(8)} M values/s${(s / f16).toFixed(1).padStart(7)}× f16's time`);
}
const pool = new QuantPool();
const threads = os.availableParallelism();
for (const type of ['Q4_K', 'Q6_K'] as const) {
  const one = time(() => quantize(type, x));
  const all = time(() => pool.quantize(type, x));
  console.log(`${type} on ${threads} threads: ${all.toFixed(2)} s against ${one.toFixed(2)} s on one, ${(one / all).toFixed(2)}× (same bytes: ${Buffer.compare(pool.quantize(type, x), quantize(type, x)) === 0})`);
}
pool.dispose();
const config = parseLlamaConfig({ // Llama-2-7B's config.json, in the fields that decide the shapes
  model_type: 'llama', vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096, rms_norm_eps: 1e-5, tie_word_embeddings: false,
});
const shapes = [...llamaTensorShapes(config)];
const params = shapes.reduce((a, [, s]) => a + s.reduce((p, d) => p * d, 1), 0);
console.log(`\nLlama-2-7B (${(params / 1e9).toFixed(2)} B parameters), bits per weight of the GGUF tensors:`);
for (const dtype of GGUF_DTYPES) {
  const bytes = shapes.reduce((a, [n, shape]) => a + ggufTensorBytes({ shape, type: ggufWeightType(dtype, n, shape, config) }), 0);
  console.log(`${dtype.padEnd(8)}${((bytes * 8) / params).toFixed(2).padStart(7)} bits  ${(bytes / 1e9).toFixed(2).padStart(6)} GB`);
}
