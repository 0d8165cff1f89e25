/**
 * Golden bytes and values for the block types of llama.cpp's lower-bit mixes (Q4_0, Q4_1,
 * Q2_K, Q3_K, IQ4_NL, IQ4_XS), as llama.cpp's own quantisers write them (files this project
 * did not make hold such bytes): llama.cpp quantises the same values
 * (test/helpers/kquant-model.ts, lowBitValues) to each type and reads the bytes back with
 * its own dequantiser, through ggml_quantize.py (ctypes
 * on the libggml-base.so of node-llama-cpp's prebuilt CPU build, installed as the header of
 * make.mjs says). test/models/gguf-kquants.test.ts then checks that this project's
 * dequantiser reads the bytes to exactly llama.cpp's values.
 *
 *   npm run build
 *   NODE_LLAMA_CPP_DIR=~/llama-cpp-node node scripts/gguf-golden/make-llama-cpp-bytes.mjs
 *
 * Writes test/fixtures/gguf-golden/llama-cpp-bytes.json (per type: its ggml id, where its bytes
 * and values are) and llama-cpp-bytes.bin (each type's bytes, then its values as f32).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { LOW_BIT_TYPE_IDS, lowBitValues } = await import(path.join(root, 'dist', 'test', 'helpers', 'kquant-model.js'));
const from = process.env.NODE_LLAMA_CPP_DIR ? path.resolve(process.env.NODE_LLAMA_CPP_DIR) : root;
let libdir;
try {
  const entry = createRequire(path.join(from, 'package.json')).resolve('@node-llama-cpp/linux-x64');
  libdir = path.join(path.dirname(entry), '..', 'bins', 'linux-x64');
} catch {
  console.error(`@node-llama-cpp/linux-x64 is not installed in ${from}; see the header of make.mjs for the two commands that install it`);
  process.exit(1);
}
const python = process.env.LONGLORA_PYTHON ?? '/usr/bin/python3';
const x = lowBitValues();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-cpp-bytes-'));
fs.writeFileSync(path.join(work, 'x.f32'), new Uint8Array(x.buffer));
const chunks = [];
let at = 0;
const golden = { values: x.length, rowLength: 256, types: [] };
for (const [type, id] of Object.entries(LOW_BIT_TYPE_IDS)) {
  execFileSync(python, [path.join(root, 'scripts', 'gguf-golden', 'ggml_quantize.py'), libdir, work, String(id), '256'], { stdio: 'inherit' });
  const bytes = fs.readFileSync(path.join(work, 'theirs.bin'));
  const values = fs.readFileSync(path.join(work, 'theirs.deq.f32'));
  golden.types.push({ type, id, bytes: [at, bytes.length], values: [at + bytes.length, values.length / 4] });
  chunks.push(bytes, values);
  at += bytes.length + values.length;
  console.log(`${type}: ${bytes.length} bytes`);
}
const outDir = path.join(root, 'test', 'fixtures', 'gguf-golden');
fs.writeFileSync(path.join(outDir, 'llama-cpp-bytes.bin'), Buffer.concat(chunks));
fs.writeFileSync(path.join(outDir, 'llama-cpp-bytes.json'), `${JSON.stringify(golden, null, 2)}\n`);
fs.rmSync(work, { recursive: true, force: true });
console.log(`wrote ${path.relative(root, outDir)}/llama-cpp-bytes.json and llama-cpp-bytes.bin`);
