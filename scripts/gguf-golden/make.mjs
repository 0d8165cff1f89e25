/**
 * Golden next-token probabilities from llama.cpp for the GGUF exports of the k-quant test
 * model (test/helpers/kquant-model.ts) in f32, q8_0 and each quantised mix (q6_k, q5_k_m,
 * q5_k_s, q4_k_m, q4_k_s, q4_0, iq4_xs, iq4_nl, q3_k_l, q3_k_m, q3_k_s, q2_k), and in f32 with each RoPE scaling an export writes (linear,
 * llama3's frequency factors, yarn with and without an explicit attention factor; an
 * original context of 16 tokens, so that the prompts reach past it), and as a Qwen 2 and a
 * Qwen 3 (llama.cpp's qwen2 and qwen3 architectures) in f32 and q4_k_m: llama.cpp, through
 * node-llama-cpp's prebuilt CPU binary, loads
 * each file this project wrote and evaluates
 * the prompts. test/models/gguf-kquants.test.ts then checks that this project's reading of
 * the same bytes (dequantised, run through its own forward pass) gives the same
 * distributions. node-llama-cpp is not a dependency (its install pulls GPU builds of
 * several hundred MB); install it, CPU build only, in a folder of its own and name that
 * folder:
 *
 *   npm run build
 *   mkdir -p ~/llama-cpp-node && (cd ~/llama-cpp-node && npm init -y >/dev/null &&
 *     npm install --omit=optional --ignore-scripts node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1)
 *   NODE_LLAMA_CPP_DIR=~/llama-cpp-node node scripts/gguf-golden/make.mjs
 *
 * Writes test/fixtures/gguf-golden/{golden.json, probs.bin}: per export its SHA-256 (the
 * test re-exports and checks it, so a changed quantiser asks for new goldens) and the
 * probabilities over the whole vocabulary after each prompt, as f32.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { writeKquantModel, withRopeScaling, KQUANT_PROMPTS, KQUANT_CONFIG, KQUANT_ROPE_SCALINGS, KQUANT_ARCHITECTURES } = await import(path.join(root, 'dist', 'test', 'helpers', 'kquant-model.js'));
const { exportGguf } = await import(path.join(root, 'dist', 'src', 'models', 'llama', 'gguf.js'));
const from = process.env.NODE_LLAMA_CPP_DIR ? path.resolve(process.env.NODE_LLAMA_CPP_DIR) : root;
let entry;
try {
  entry = createRequire(path.join(from, 'package.json')).resolve('node-llama-cpp');
} catch {
  console.error(`node-llama-cpp is not installed in ${from}; see the header of this script for the two commands that install it`);
  process.exit(1);
}
const { getLlama } = await import(pathToFileURL(entry).href);
const llamaVersion = JSON.parse(fs.readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')).version;

const EXPORTS = [
  ...['f32', 'q8_0', 'q6_k', 'q5_k_m', 'q5_k_s', 'q4_k_m', 'q4_k_s', 'q4_0', 'iq4_xs', 'iq4_nl', 'q3_k_l', 'q3_k_m', 'q3_k_s', 'q2_k'].map((dtype) => ({ dtype })),
  ...KQUANT_ROPE_SCALINGS.map((rope_scaling) => ({ dtype: 'f32', rope_scaling })),
  ...Object.keys(KQUANT_ARCHITECTURES).flatMap((arch) => [{ dtype: 'f32', arch }, { dtype: 'q4_k_m', arch }]),
];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-golden-'));
const modelDir = path.join(work, 'model');
await writeKquantModel(modelDir);
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const V = KQUANT_CONFIG.vocab_size;
const probs = new Float32Array(EXPORTS.length * KQUANT_PROMPTS.length * V);
const golden = { llamaCpp: `node-llama-cpp ${llamaVersion} (prebuilt llama.cpp, CPU)`, vocab: V, prompts: KQUANT_PROMPTS, exports: [] };
for (const [d, { dtype, rope_scaling, arch }] of EXPORTS.entries()) {
  const label = rope_scaling ? `${dtype}-${rope_scaling.rope_type}${rope_scaling.attention_factor ? '-attn' : ''}` : arch ? `${dtype}-${arch}` : dtype;
  const file = path.join(work, `${label}.gguf`);
  let source = modelDir;
  if (rope_scaling) source = await withRopeScaling(modelDir, rope_scaling);
  if (arch) {
    source = path.join(work, arch);
    if (!fs.existsSync(source)) await writeKquantModel(source, arch);
  }
  exportGguf(source, file, { dtype, modelfile: false, name: 'kquant-test' });
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const model = await llama.loadModel({ modelPath: file });
  // f32 key/value cache and no flash attention (llama.cpp's defaults are an f16 cache and, on the CPU, f16 attention),
  // so that only the weights' format differs from this project's forward pass
  const ctx = await model.createContext({ contextSize: 64, batchSize: 64, flashAttention: false,
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
  const seq = ctx.getSequence();
  for (const [p, prompt] of KQUANT_PROMPTS.entries()) {
    await seq.clearHistory();
    const items = prompt.map((t, i) => (i === prompt.length - 1 ? [t, { generateNext: { probabilities: true } }] : t));
    const out = await seq.controlledEvaluate(items);
    const dist = out[prompt.length - 1].next.probabilities;
    if (dist.size !== V) throw new Error(`${label}: llama.cpp gave ${dist.size} probabilities, expected ${V}`);
    const row = probs.subarray((d * KQUANT_PROMPTS.length + p) * V, (d * KQUANT_PROMPTS.length + p + 1) * V);
    for (const [tok, pr] of dist) row[tok] = pr;
  }
  seq.dispose();
  await ctx.dispose();
  await model.dispose();
  golden.exports.push({ dtype, ...(rope_scaling ? { rope_scaling } : {}), ...(arch ? { arch } : {}), sha256, bytes: fs.statSync(file).size });
  console.log(`${label}: ${fs.statSync(file).size} bytes, sha256 ${sha256.slice(0, 16)}…`);
}
const outDir = path.join(root, 'test', 'fixtures', 'gguf-golden');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'probs.bin'), new Uint8Array(probs.buffer));
fs.writeFileSync(path.join(outDir, 'golden.json'), `${JSON.stringify(golden, null, 2)}\n`);
fs.rmSync(work, { recursive: true, force: true });
console.log(`wrote ${path.relative(root, outDir)}/golden.json and probs.bin`);
