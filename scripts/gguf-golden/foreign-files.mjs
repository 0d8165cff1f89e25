/**
 * GGUF files that llama.cpp quantised, read here: the k-quant test model
 * (test/helpers/kquant-model.ts) is exported in f32, llama.cpp's own llama-quantize turns
 * that file into each of its mixes that use the block types this project only reads
 * (llama_quantize.py: Q4_0, Q4_1, Q2_K, Q3_K_M, IQ4_NL, IQ4_XS; no importance matrix), and
 * each file is run by llama.cpp and by this project's GGUF loader and forward pass on the
 * golden prompts. Prints, per file, the tensor types llama.cpp chose and how far apart the
 * two next-token distributions are (relative RMS of the centred log-probabilities, as the
 * golden test measures them) against how far quantisation moved them from the f32 file.
 * A check by hand (the files are too large to keep as fixtures; the dequantisers
 * themselves are checked bit for bit in the tests):
 *
 *   npm run build
 *   NODE_LLAMA_CPP_DIR=~/llama-cpp-node node scripts/gguf-golden/foreign-files.mjs
 *
 * node-llama-cpp is installed as the header of make.mjs says. Writes nothing in the project.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = (p) => import(path.join(root, 'dist', p));
const { writeKquantModel, KQUANT_PROMPTS, KQUANT_CONFIG } = await dist('test/helpers/kquant-model.js');
const { exportGguf } = await dist('src/models/llama/gguf.js');
const { loadLlamaGguf } = await dist('src/models/llama/gguf-load.js');
const { ggmlTypeName, readGgufHeader } = await dist('src/io/gguf-read.js');
const { logitsOf } = await dist('test/helpers/model.js');
const from = process.env.NODE_LLAMA_CPP_DIR ? path.resolve(process.env.NODE_LLAMA_CPP_DIR) : root;
let entry, libdir;
try {
  const req = createRequire(path.join(from, 'package.json'));
  entry = req.resolve('node-llama-cpp');
  libdir = path.join(path.dirname(req.resolve('@node-llama-cpp/linux-x64')), '..', 'bins', 'linux-x64');
} catch {
  console.error(`node-llama-cpp is not installed in ${from}; see the header of make.mjs for the two commands that install it`);
  process.exit(1);
}
const { getLlama } = await import(pathToFileURL(entry).href);
const python = process.env.LONGLORA_PYTHON ?? '/usr/bin/python3';
const MIXES = [['Q4_0', 2], ['Q4_1', 3], ['Q2_K', 10], ['Q3_K_M', 12], ['IQ4_NL', 25], ['IQ4_XS', 30]];

const V = KQUANT_CONFIG.vocab_size;
const softmax = (row) => {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  const p = Array.from(row, (v) => Math.exp(v - m));
  const s = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / s);
};
const distance = (p, q) => {
  const n = p.length;
  const lp = p.map(Math.log);
  const d = p.map((v, i) => Math.log(v) - Math.log(q[i]));
  const mean = (a) => a.reduce((x, y) => x + y, 0) / n;
  const rms = (a, m) => Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / n);
  return rms(d, mean(d)) / rms(lp, mean(lp));
};
const ours = async (model) => {
  const out = [];
  for (const prompt of KQUANT_PROMPTS) out.push(softmax((await logitsOf(model, Int32Array.from(prompt), 1, prompt.length)).subarray((prompt.length - 1) * V)));
  return out;
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'foreign-files-'));
await writeKquantModel(path.join(work, 'model'));
const f32 = path.join(work, 'f32.gguf');
exportGguf(path.join(work, 'model'), f32, { dtype: 'f32', modelfile: false });
const reference = await loadLlamaGguf(f32);
const unquantised = await ours(reference);
reference.dispose();
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
console.log('| llama.cpp mix | tensor types | prompt | differs from llama.cpp | quantisation moved |\n|---|---|---:|---:|---:|');
for (const [name, ftype] of MIXES) {
  const file = path.join(work, `${name}.gguf`);
  execFileSync(python, [path.join(root, 'scripts', 'gguf-golden', 'llama_quantize.py'), libdir, f32, file, String(ftype)], { stdio: 'ignore' });
  const types = [...new Set((await readGgufHeader(file)).tensorInfos.map((t) => ggmlTypeName(t.dtype)))].join(', ');
  const model = await llama.loadModel({ modelPath: file });
  // as make.mjs: an f32 KV cache and no flash attention, so that only the weights differ
  const ctx = await model.createContext({ contextSize: 64, batchSize: 64, flashAttention: false,
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
  const seq = ctx.getSequence();
  const mine = await loadLlamaGguf(file);
  const got = await ours(mine);
  mine.dispose();
  for (const [p, prompt] of KQUANT_PROMPTS.entries()) {
    await seq.clearHistory();
    const items = prompt.map((t, i) => (i === prompt.length - 1 ? [t, { generateNext: { probabilities: true } }] : t));
    const out = await seq.controlledEvaluate(items);
    const theirs = new Float64Array(V);
    for (const [tok, pr] of out[prompt.length - 1].next.probabilities) theirs[tok] = pr;
    console.log(`| ${name} | ${types} | ${p} | ${distance(got[p], theirs).toExponential(2)} | ${distance(got[p], unquantised[p]).toExponential(2)} |`);
  }
  seq.dispose();
  await ctx.dispose();
  await model.dispose();
}
fs.rmSync(work, { recursive: true, force: true });
