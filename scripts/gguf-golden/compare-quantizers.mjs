/**
 * This project's GGUF quantisers against llama.cpp's own, on the same values: for each block
 * type the export writes (Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0, IQ4_XS, IQ4_NL, Q3_K,
 * Q2_K), the relative RMS error of
 * each quantisation, whether the bytes are the same, and a check that llama.cpp's dequantiser and this project's read both
 * byte streams to the same values. llama.cpp's functions come from the libggml-base.so of
 * node-llama-cpp's prebuilt CPU build (installed in a folder of its own, as for make.mjs),
 * called from /usr/bin/python3 with ctypes (ggml_quantize.py; no Python packages needed).
 * llama.cpp's quantisers are its reference ones with no importance matrix, what
 * llama-quantize does without --imatrix.
 *
 *   npm run build
 *   NODE_LLAMA_CPP_DIR=~/llama-cpp-node node scripts/gguf-golden/compare-quantizers.mjs
 *
 * Prints a table; writes nothing in the project.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { quantize, dequantize } = await import(path.join(root, 'dist', 'src', 'io', 'ggml-quants.js'));
const { GGML_TYPES } = await import(path.join(root, 'dist', 'src', 'io', 'gguf.js'));
const { Rng } = await import(path.join(root, 'dist', 'src', 'tensor', 'random.js'));
const from = process.env.NODE_LLAMA_CPP_DIR ? path.resolve(process.env.NODE_LLAMA_CPP_DIR) : root;
let libdir;
try {
  const entry = createRequire(path.join(from, 'package.json')).resolve('@node-llama-cpp/linux-x64'); // its dist/index.js
  libdir = path.join(path.dirname(entry), '..', 'bins', 'linux-x64');
} catch {
  console.error(`@node-llama-cpp/linux-x64 is not installed in ${from}; see the header of make.mjs for the two commands that install it`);
  process.exit(1);
}
const python = process.env.LONGLORA_PYTHON ?? '/usr/bin/python3';

const ROWS = 64;
const COLS = 4096;
const rng = new Rng(2026);
const normal = () => rng.normal();
const DATA = {
  'Gaussian': () => normal() * 0.02,
  // Student's t with 4 degrees of freedom: heavier tails, as trained weights have
  'heavy-tailed (t, 4 dof)': () => (normal() * 0.02) / Math.sqrt((normal() ** 2 + normal() ** 2 + normal() ** 2 + normal() ** 2) / 4),
  // one value in a thousand 20 times larger, as the outlier features of large models
  'Gaussian, 0.1% outliers ×20': () => normal() * 0.02 * (rng.uniform() < 0.001 ? 20 : 1),
};
const TYPES = ['Q8_0', 'Q6_K', 'Q5_K', 'Q5_1', 'Q5_0', 'Q4_K', 'Q4_1', 'Q4_0', 'IQ4_XS', 'IQ4_NL', 'Q3_K', 'Q2_K'];

const relRms = (x, y) => {
  let e = 0, s = 0;
  for (let i = 0; i < x.length; i++) { e += (x[i] - y[i]) ** 2; s += x[i] ** 2; }
  return Math.sqrt(e / s);
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const readF32 = (file) => { const b = fs.readFileSync(file); return new Float32Array(b.buffer, b.byteOffset, b.length / 4); };

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-quantizers-'));
let mismatch = false;
try {
  console.log(`${ROWS} rows × ${COLS} values per distribution; relative RMS error of the quantised values (lower is better)\n`);
  console.log('| values | type | llama.cpp | this project | ratio | same bytes |');
  console.log('|---|---|---:|---:|---:|---|');
  for (const [label, draw] of Object.entries(DATA)) {
    const x = Float32Array.from({ length: ROWS * COLS }, draw);
    fs.writeFileSync(path.join(work, 'x.f32'), new Uint8Array(x.buffer));
    for (const type of TYPES) {
      const ours = quantize(type, x);
      fs.writeFileSync(path.join(work, 'ours.bin'), ours);
      execFileSync(python, [path.join(root, 'scripts', 'gguf-golden', 'ggml_quantize.py'), libdir, work, String(GGML_TYPES[type]), String(COLS)], { stdio: 'inherit' });
      const theirs = new Uint8Array(fs.readFileSync(path.join(work, 'theirs.bin')));
      const oursByThem = readF32(path.join(work, 'ours.deq.f32'));
      const theirsByThem = readF32(path.join(work, 'theirs.deq.f32'));
      // both dequantisers on both byte streams: the same values (up to one f32 rounding where the C compiler fuses a multiply-add)
      const d1 = maxDiff(oursByThem, dequantize(type, ours, x.length));
      const d2 = maxDiff(theirsByThem, dequantize(type, theirs, x.length));
      if (d1 > 1e-7 || d2 > 1e-7) { mismatch = true; console.error(`${type}: the dequantisers differ by ${Math.max(d1, d2)}`); }
      const a = relRms(x, theirsByThem);
      const b = relRms(x, oursByThem);
      const same = Buffer.compare(Buffer.from(ours), Buffer.from(theirs)) === 0;
      console.log(`| ${label} | ${type} | ${a.toFixed(4)} | ${b.toFixed(4)} | ${(b / a).toFixed(2)} | ${same ? 'yes' : 'no'} |`);
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
if (mismatch) process.exit(1);
