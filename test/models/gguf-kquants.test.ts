/**
 * GGUF k-quants (Q4_K, Q5_K, Q6_K, with Q5_0, Q5_1 and Q8_0 for rows of other lengths) and
 * llama.cpp's mixes: the quantisers' error against the bits they spend; the type each
 * tensor gets; and, against llama.cpp itself, what the bytes mean.
 * scripts/gguf-golden/make.mjs exported a random Llama (test/helpers/kquant-model.ts) in
 * f32, q8_0 and every k-quant mix, and in f32 with each RoPE scaling an export writes, and
 * recorded llama.cpp's next-token probabilities on each file; here the same files are
 * exported again (same SHA-256, so the golden applies to them), loaded with this
 * project's GGUF loader (its dequantisers), run through its own forward pass, and must
 * give llama.cpp's distributions — much closer than quantisation moves them, so a misread
 * layout fails. The lower-bit block types are also checked on bytes llama.cpp's own
 * quantisers wrote, against the values its dequantiser reads from them
 * (scripts/gguf-golden/make-llama-cpp-bytes.mjs).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BLOCKS, dequantize, quantize, type QuantType } from '../../src/io/ggml-quants.js';
import { QuantPool } from '../../src/io/quant-pool.js';
import { ggufTensorData, type GgufHeader } from '../../src/io/gguf-parse.js';
import { throwsLL } from '../helpers/errors.js';
import { parseLlamaConfig, type LlamaConfig } from '../../src/models/llama/config.js';
import { exportGguf, ggufWeightType, type GgufDType } from '../../src/models/llama/gguf.js';
import { permuteRotary, unpermuteRotary } from '../../src/models/llama/gguf-layout.js';
import { loadLlamaGguf } from '../../src/models/llama/gguf-load.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { Rng } from '../../src/tensor/random.js';
import { ROOT } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';
import { KQUANT_ARCHITECTURES, KQUANT_CONFIG, KQUANT_ROPE_SCALINGS, LOW_BIT_TYPE_IDS, lowBitValues, withRopeScaling, writeKquantModel } from '../helpers/kquant-model.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('gguf-kquants');
const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'gguf-golden');

function relRms(x: Float32Array, y: Float32Array): number {
  let e = 0, s = 0;
  for (let i = 0; i < x.length; i++) { e += (x[i]! - y[i]!) ** 2; s += x[i]! ** 2; }
  return Math.sqrt(e / s);
}

function softmax(row: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) mx = Math.max(mx, row[i]!);
  const p = Float64Array.from({ length: row.length }, (_, i) => Math.exp(row[i]! - mx));
  const s = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / s);
}

/**
 * How far apart two next-token distributions are, as logits: the RMS of the difference of
 * their log-probabilities with its mean removed (a logit offset does not change a
 * distribution), relative to the RMS of p's centred log-probabilities.
 */
function logitDistance(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const n = p.length;
  const lp = Float64Array.from({ length: n }, (_, i) => Math.log(p[i]!));
  const d = Float64Array.from({ length: n }, (_, i) => lp[i]! - Math.log(q[i]!));
  const mean = (a: Float64Array): number => a.reduce((x, y) => x + y, 0) / n;
  const rms = (a: Float64Array, m: number): number => Math.sqrt(a.reduce((x, y) => x + (y - m) ** 2, 0) / n);
  return rms(d, mean(d)) / rms(lp, mean(lp));
}

describe('GGUF k-quants', () => {
  it('each type reproduces Gaussian weights to within what its bits allow, zeros exactly, and refuses bad input', (t) => {
    const rng = new Rng(9);
    const x = Float32Array.from({ length: 256 * 64 }, () => rng.normal() * 0.02);
    // A b-bit grid over a block's range (about ±2.1σ for 32 Gaussian values) has a relative
    // RMS error near 4.2 / (2^b − 1) / √12: 0.005 for Q8_0, 0.02 for 6 bits, 0.04 for 5, 0.08
    // for 4, 0.16 for 3, 0.4 for 2 (the fitted offsets and searches do a little better; IQ4's
    // levels are denser near zero). Measured: Q8_0 0.0054, Q6_K 0.017, Q5_0 0.043, Q5_1 0.034,
    // Q5_K 0.036, Q4_K 0.071, Q4_0 0.081, Q4_1 0.070, IQ4_NL 0.075, IQ4_XS 0.076, Q3_K 0.144,
    // Q2_K 0.271; the bounds leave about 40% room.
    const bounds: Record<QuantType, number> = {
      Q8_0: 0.0075, Q6_K: 0.025, Q5_0: 0.06, Q5_1: 0.05, Q5_K: 0.05, Q4_K: 0.1, Q4_0: 0.115, Q4_1: 0.1, IQ4_NL: 0.105, IQ4_XS: 0.105, Q3_K: 0.2, Q2_K: 0.38,
    };
    for (const type of Object.keys(BLOCKS) as QuantType[]) {
      const q = quantize(type, x);
      assert.equal(q.length, (x.length / BLOCKS[type][0]) * BLOCKS[type][1], `${type} size`);
      const err = relRms(x, dequantize(type, q, x.length));
      t.diagnostic(`${type}: relative RMS error ${err.toFixed(4)}`);
      assert.ok(err < bounds[type], `${type}: relative RMS error ${err}`);
      assert.ok(err > bounds[type] / 20, `${type}: an error of ${err} is too small to be a real ${type} quantisation`);
      const zeros = dequantize(type, quantize(type, new Float32Array(BLOCKS[type][0] * 2)), BLOCKS[type][0] * 2);
      assert.ok(zeros.every((v) => v === 0), `${type}: zeros stay zero`);
      assert.throws(() => quantize(type, new Float32Array(BLOCKS[type][0] + 1)), new RegExp(`${type} needs a multiple of ${BLOCKS[type][0]}`));
      const bad = new Float32Array(BLOCKS[type][0]);
      bad[3] = NaN;
      assert.throws(() => quantize(type, bad), /value 3 is NaN; a quantised weight must be finite/);
    }
  });

  it('a value far above the rest of its block survives (scales follow the block, not the tensor)', () => {
    for (const type of ['Q4_K', 'Q5_K', 'Q6_K'] as const) {
      const x = new Float32Array(512).map((_, i) => Math.sin(i) * 0.01);
      x[300] = 5;
      const y = dequantize(type, quantize(type, x), x.length);
      assert.ok(Math.abs(y[300]! - 5) < 0.05, `${type}: ${y[300]}`);
      assert.ok(relRms(x.subarray(0, 256), y.subarray(0, 256)) < 0.1, `${type}: the other super-block keeps its own scale`);
    }
  });

  it('Q5_1 fits a block that does not take in zero with its signed offset', () => {
    const x = new Float32Array(64).map((_, i) => (i < 32 ? 1 + 0.01 * Math.sin(i) : -2 - 0.02 * Math.cos(i)));
    const y = dequantize('Q5_1', quantize('Q5_1', x), x.length);
    // 31 steps over a range of 0.02 (0.04): half a step is 3.3e-4 (6.5e-4), plus the f16 offset's rounding (≤ 2^-11·|m| ≈ 4.9e-4, 9.8e-4)
    for (let i = 0; i < 64; i++) assert.ok(Math.abs(y[i]! - x[i]!) < (i < 32 ? 1e-3 : 2e-3), `value ${i}: ${y[i]} for ${x[i]}`);
  });

  it('Q4_K_M gives llama.cpp\'s types: Q6_K for the output and for v_proj and down_proj in the layers it favours, fallbacks for short rows', () => {
    const c: LlamaConfig = { ...parseLlamaConfig(KQUANT_CONFIG), numLayers: 32, hiddenSize: 4096, intermediateSize: 11008 };
    const favoured = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]; // first and last 4 of 32, and every third from layer 6
    for (let l = 0; l < 32; l++) {
      const want = favoured.includes(l) ? 'Q6_K' : 'Q4_K';
      assert.equal(ggufWeightType('q4_k_m', `model.layers.${l}.self_attn.v_proj.weight`, [4096, 4096], c), want, `v_proj ${l}`);
      assert.equal(ggufWeightType('q4_k_m', `model.layers.${l}.mlp.down_proj.weight`, [4096, 11008], c), want, `down_proj ${l}`);
      assert.equal(ggufWeightType('q4_k_m', `model.layers.${l}.self_attn.q_proj.weight`, [4096, 4096], c), 'Q4_K');
    }
    assert.equal(ggufWeightType('q4_k_m', 'lm_head.weight', [32000, 4096], c), 'Q6_K');
    assert.equal(ggufWeightType('q4_k_m', 'model.embed_tokens.weight', [32000, 4096], c), 'Q4_K');
    assert.equal(ggufWeightType('q4_k_m', 'model.embed_tokens.weight', [32000, 4096], { ...c, tieWordEmbeddings: true }), 'Q6_K', 'tied embeddings are the output');
    assert.equal(ggufWeightType('q4_k_m', 'model.layers.0.input_layernorm.weight', [4096], c), 'F32');
    assert.equal(ggufWeightType('q4_k_m', 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), 'Q5_0', 'Q4_K → Q5_0 for rows of 896');
    assert.equal(ggufWeightType('q4_k_m', 'lm_head.weight', [32000, 896], c), 'Q8_0', 'Q6_K → Q8_0 for the output');
    assert.equal(ggufWeightType('q6_k', 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), 'Q8_0');
    assert.equal(ggufWeightType('q6_k', 'model.layers.4.mlp.up_proj.weight', [11008, 40], c), 'F16', 'no block type fits rows of 40');
    assert.equal(ggufWeightType('q8_0', 'model.layers.4.mlp.up_proj.weight', [11008, 40], c), 'F16');
  });

  it('Q5_K_M, Q5_K_S and Q4_K_S give llama.cpp\'s types, and a Llama 70B gets its v_proj in Q5_K', () => {
    const c: LlamaConfig = { ...parseLlamaConfig(KQUANT_CONFIG), numLayers: 32, hiddenSize: 4096, intermediateSize: 11008 };
    const favoured = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    const type = (dtype: GgufDType, l: number, part: string, cfg = c): string =>
      ggufWeightType(dtype, `model.layers.${l}.${part}.weight`, part === 'mlp.down_proj' ? [4096, 11008] : [4096, 4096], cfg);
    for (let l = 0; l < 32; l++) {
      assert.equal(type('q5_k_m', l, 'self_attn.v_proj'), favoured.includes(l) ? 'Q6_K' : 'Q5_K', `q5_k_m v_proj ${l}`);
      assert.equal(type('q5_k_m', l, 'mlp.down_proj'), favoured.includes(l) ? 'Q6_K' : 'Q5_K', `q5_k_m down_proj ${l}`);
      assert.equal(type('q5_k_m', l, 'self_attn.q_proj'), 'Q5_K');
      assert.equal(type('q5_k_s', l, 'self_attn.v_proj'), 'Q5_K', `q5_k_s v_proj ${l}`);
      assert.equal(type('q5_k_s', l, 'mlp.down_proj'), 'Q5_K');
      assert.equal(type('q4_k_s', l, 'self_attn.v_proj'), l < 4 ? 'Q5_K' : 'Q4_K', `q4_k_s v_proj ${l}`);
      assert.equal(type('q4_k_s', l, 'mlp.down_proj'), l < 4 ? 'Q5_K' : 'Q4_K', `q4_k_s down_proj ${l} (the first eighth)`);
      assert.equal(type('q4_k_s', l, 'mlp.gate_proj'), 'Q4_K');
    }
    for (const dtype of ['q5_k_m', 'q5_k_s', 'q4_k_s'] as const) {
      assert.equal(ggufWeightType(dtype, 'lm_head.weight', [32000, 4096], c), 'Q6_K', `${dtype} output`);
      assert.equal(ggufWeightType(dtype, 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), dtype.startsWith('q5') ? 'Q5_1' : 'Q5_0', `${dtype}: rows of 896`);
    }
    const llama70b: LlamaConfig = { ...c, numLayers: 80, numHeads: 64, numKvHeads: 8, hiddenSize: 8192 };
    assert.equal(type('q4_k_m', 10, 'self_attn.v_proj', llama70b), 'Q5_K', '70B: v_proj Q4_K → Q5_K');
    assert.equal(type('q4_k_m', 12, 'self_attn.v_proj', llama70b), 'Q6_K', '70B: a favoured layer keeps Q6_K');
    assert.equal(type('q4_k_m', 10, 'mlp.down_proj', llama70b), 'Q4_K', '70B: only v_proj');
    assert.equal(type('q4_k_s', 40, 'self_attn.v_proj', llama70b), 'Q5_K');
    assert.equal(type('q4_k_m', 10, 'self_attn.v_proj', { ...llama70b, numKvHeads: 64 }), 'Q4_K', 'an 80-layer model without GQA is not the 70B');
    assert.equal(type('q4_k_m', 10, 'self_attn.v_proj', { ...llama70b, modelType: 'qwen2' }), 'Q4_K', 'the rule is for the llama architecture');
  });

  it('Q4_0, IQ4_XS, IQ4_NL, Q3_K_L, Q3_K_M, Q3_K_S and Q2_K give llama.cpp\'s types (without an importance matrix)', () => {
    const c: LlamaConfig = { ...parseLlamaConfig(KQUANT_CONFIG), numLayers: 32, hiddenSize: 4096, intermediateSize: 11008, numHeads: 32, numKvHeads: 32 };
    const gqa8: LlamaConfig = { ...c, numKvHeads: 4 };
    const type = (dtype: GgufDType, l: number, part: string, cfg = c): string =>
      ggufWeightType(dtype, `model.layers.${l}.${part}.weight`, part === 'mlp.down_proj' ? [4096, 11008] : [4096, 4096], cfg);
    const want: Record<string, (l: number, part: string, cfg: LlamaConfig) => string> = {
      q4_0: () => 'Q4_0',
      iq4_xs: (l, p, cfg) => (p === 'self_attn.v_proj' && cfg.numHeads / cfg.numKvHeads >= 4) || (p === 'mlp.down_proj' && l < 4) ? 'Q5_K' : 'IQ4_XS',
      iq4_nl: (l, p, cfg) => (p === 'self_attn.v_proj' && cfg.numHeads / cfg.numKvHeads >= 4) || (p === 'mlp.down_proj' && l < 4) ? 'Q5_K' : 'IQ4_NL',
      q3_k_l: (_, p) => (['self_attn.v_proj', 'self_attn.o_proj', 'mlp.down_proj'].includes(p) ? 'Q5_K' : 'Q3_K'),
      q3_k_m: (l, p) => (p === 'self_attn.v_proj' ? (l < 2 ? 'Q5_K' : 'Q4_K') : p === 'mlp.down_proj' ? (l < 2 ? 'Q5_K' : 'Q4_K') : p === 'self_attn.o_proj' ? 'Q4_K' : 'Q3_K'),
      q3_k_s: () => 'Q3_K',
      q2_k: (_, p, cfg) => (p === 'self_attn.v_proj' ? (cfg.numHeads / cfg.numKvHeads >= 4 ? 'Q4_K' : 'Q3_K') : ['self_attn.o_proj', 'mlp.down_proj'].includes(p) ? 'Q3_K' : 'Q2_K'),
    };
    for (const [dtype, rule] of Object.entries(want) as Array<[GgufDType, (l: number, part: string, cfg: LlamaConfig) => string]>) {
      for (const cfg of [c, gqa8]) {
        for (let l = 0; l < 32; l++) {
          for (const part of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
            assert.equal(type(dtype, l, part, cfg), rule(l, part, cfg), `${dtype} ${part} ${l} (gqa ${cfg.numHeads / cfg.numKvHeads})`);
          }
        }
      }
      assert.equal(ggufWeightType(dtype, 'lm_head.weight', [32000, 4096], c), 'Q6_K', `${dtype} output`);
      assert.equal(ggufWeightType(dtype, 'model.embed_tokens.weight', [32000, 4096], c), want[dtype]!(5, 'mlp.gate_proj', c), `${dtype} embeddings: the base type`);
    }
    // rows that are not whole 256-value blocks: Q2_K and Q3_K → Q4_0, IQ4_XS → IQ4_NL
    assert.equal(ggufWeightType('q2_k', 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), 'Q4_0');
    assert.equal(ggufWeightType('q3_k_s', 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), 'Q4_0');
    assert.equal(ggufWeightType('iq4_xs', 'model.layers.4.mlp.up_proj.weight', [11008, 896], c), 'IQ4_NL');
    assert.equal(ggufWeightType('q4_0', 'model.layers.4.mlp.up_proj.weight', [11008, 40], c), 'F16');
    // a Llama 70B: v_proj Q5_K where it would be Q3_K or Q4_K
    const llama70b: LlamaConfig = { ...c, numLayers: 80, numHeads: 64, numKvHeads: 8, hiddenSize: 8192 };
    assert.equal(type('q3_k_s', 10, 'self_attn.v_proj', llama70b), 'Q5_K');
    assert.equal(type('q2_k', 10, 'self_attn.v_proj', llama70b), 'Q5_K');
    assert.equal(type('q3_k_m', 10, 'self_attn.v_proj', llama70b), 'Q5_K');
    assert.equal(type('q4_0', 10, 'self_attn.v_proj', llama70b), 'Q4_0', 'only Q3_K and Q4_K are raised');
  });

  it('quantising on several threads gives the bytes one thread gives, and the same error for a bad value', () => {
    const rng = new Rng(4);
    const x = Float32Array.from({ length: 256 * 37 }, () => rng.normal());
    const pool = new QuantPool(3, 1000);
    try {
      for (const type of Object.keys(BLOCKS) as QuantType[]) assert.deepEqual(pool.quantize(type, x), quantize(type, x), type);
      x[5000] = Infinity;
      assert.throws(() => pool.quantize('Q4_K', x), /value 5000 is Infinity/);
    } finally {
      pool.dispose();
    }
  });

  it('unpermuteRotary undoes permuteRotary', () => {
    const w = Float32Array.from({ length: 8 * 3 }, (_, i) => i);
    assert.deepEqual(unpermuteRotary(permuteRotary(w, 8, 3, 2), 8, 3, 2), w);
    assert.notDeepEqual(permuteRotary(w, 8, 3, 2), w);
  });

  it('Q4_0, Q4_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS bytes as llama.cpp\'s quantisers write them come out as llama.cpp\'s dequantiser reads them, bit for bit', (t) => {
    const golden = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'llama-cpp-bytes.json'), 'utf8')) as
      { values: number; types: Array<{ type: QuantType; id: number; bytes: [number, number]; values: [number, number] }> };
    const bin = fs.readFileSync(path.join(GOLDEN, 'llama-cpp-bytes.bin'));
    const x = lowBitValues();
    assert.deepEqual(golden.types.map((g) => [g.type, g.id]), Object.entries(LOW_BIT_TYPE_IDS), 'every lower-bit type is in the golden');
    for (const g of golden.types) {
      const bytes = new Uint8Array(bin.subarray(g.bytes[0], g.bytes[0] + g.bytes[1]));
      const theirs = new Float32Array(new Uint8Array(bin.subarray(g.values[0], g.values[0] + 4 * g.values[1])).buffer);
      assert.equal(bytes.length, (x.length / BLOCKS[g.type][0]) * BLOCKS[g.type][1], `${g.type}: block size`);
      const ours = dequantize(g.type, bytes, x.length);
      const off = ours.findIndex((v, i) => !Object.is(v, theirs[i]));
      assert.equal(off, -1, `${g.type}: value ${off} is ${ours[off]}, llama.cpp reads ${theirs[off]}`);
      const err = relRms(x, ours);
      t.diagnostic(`${g.type}: identical to llama.cpp's reading; ${err.toFixed(3)} relative RMS error against the values quantised`);
      assert.ok(err < (g.type === 'Q2_K' ? 0.4 : g.type === 'Q3_K' ? 0.25 : 0.16), `${g.type}: ${err}`);
    }
    assert.throws(() => dequantize('Q3_K', new Uint8Array(100), 256), /Q3_K: 100 bytes do not hold 256 values \(110 bytes per 256\)/);
    // as a GGUF tensor: read by its type id; a type with no dequantiser here is named with the fix
    const q4 = golden.types.find((g) => g.type === 'Q4_0')!;
    const header = (dtype: number): GgufHeader => ({ tensorDataOffset: 0n, tensorInfos: [{ name: 'w', shape: [256n, 2n], dtype, offset: 0n }] }) as unknown as GgufHeader;
    const read = (at: number, length: number): Uint8Array => new Uint8Array(bin.subarray(q4.bytes[0] + at, q4.bytes[0] + at + length));
    const got = ggufTensorData(header(2), 'w', read);
    assert.deepEqual([got.shape, got.data], [[2, 256], new Float32Array(new Uint8Array(bin.subarray(q4.values[0], q4.values[0] + 4 * q4.values[1])).buffer)]);
    throwsLL(() => ggufTensorData(header(16), 'w', read), 'GGUF tensor "w" is IQ2_XXS, which this reader does not dequantise (it reads F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS)', "use the model's Hugging Face checkpoint (config.json and safetensors) instead");
  });

  it('llama.cpp reads the exported files as this project does: the same next-token distributions in f32, q8_0, every k-quant mix, and with each RoPE scaling', async (t) => {
    const golden = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'golden.json'), 'utf8')) as
      { prompts: number[][]; vocab: number; exports: Array<{ dtype: GgufDType; rope_scaling?: Record<string, unknown>; arch?: string; sha256: string }> };
    const probs = new Float32Array(new Uint8Array(fs.readFileSync(path.join(GOLDEN, 'probs.bin'))).buffer);
    const dir = fresh();
    const modelDir = path.join(dir, 'model');
    await writeKquantModel(modelDir);
    const V = golden.vocab;
    const P = golden.prompts.length;
    const ours: Float64Array[][] = [];
    assert.deepEqual(golden.exports.filter((e) => e.rope_scaling).map((e) => e.rope_scaling), KQUANT_ROPE_SCALINGS, 'the golden has every scaling');
    assert.deepEqual([...new Set(golden.exports.flatMap((e) => (e.arch ? [e.arch] : [])))], Object.keys(KQUANT_ARCHITECTURES), 'and every architecture');
    const ref: Record<string, Float64Array[]> = {}; // each architecture's own f32 distributions, for what quantisation moves
    for (const [d, { dtype, rope_scaling: scaling, arch, sha256 }] of golden.exports.entries()) {
      const label = scaling ? `${dtype}, ${String(scaling.rope_type)} RoPE scaling${scaling.attention_factor ? ' with attention_factor' : ''}` : arch ? `${dtype}, ${arch}` : dtype;
      const file = path.join(dir, `${d}.gguf`);
      let source = scaling ? await withRopeScaling(modelDir, KQUANT_ROPE_SCALINGS.find((s) => JSON.stringify(s) === JSON.stringify(scaling))!) : modelDir;
      if (arch) {
        source = path.join(dir, arch);
        if (!fs.existsSync(source)) await writeKquantModel(source, arch);
      }
      exportGguf(source, file, { dtype, modelfile: false, name: 'kquant-test' });
      assert.equal(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'), sha256,
        `${label}: the export changed since the golden was made; if on purpose, regenerate it (scripts/gguf-golden/make.mjs)`);
      const model = await loadLlamaGguf(file, { dtype: 'f32' }); // the file alone: config, dequantised weights, q/k rows
      if (scaling) {
        const folder = await loadLlama(source, { dtype: 'f32' });
        assert.deepEqual(model.config.ropeScaling, folder.config.ropeScaling, `${label}: the scaling read back from the file`);
        folder.dispose();
      }
      ours.push([]);
      for (const [p, prompt] of golden.prompts.entries()) {
        const logits = await logitsOf(model, Int32Array.from(prompt), 1, prompt.length);
        const mine = softmax(logits.subarray((prompt.length - 1) * V));
        ours[d]!.push(mine);
        const theirs = probs.subarray((d * P + p) * V, (d * P + p + 1) * V);
        const agree = logitDistance(mine, theirs);
        if (arch && dtype === 'f32') (ref[arch] ??= []).push(mine);
        const moved = d === 0 || (arch && dtype === 'f32') ? 0 : logitDistance(mine, (arch ? ref[arch]! : ours[0]!)[p]!);
        t.diagnostic(`${label}, prompt ${p}: logits differ from llama.cpp's by ${agree.toExponential(2)}${moved ? `; ${scaling ? 'the scaling' : 'quantisation'} moved them by ${moved.toExponential(2)}` : ''} (relative RMS)`);
        // Reading a layout wrongly (nibbles or scales swapped) gives differences above 1; llama.cpp's
        // own rounding of the activations (8 bits) leaves about 0.02 here.
        assert.ok(agree < (dtype === 'f32' ? 1e-5 : 0.05), `${label}, prompt ${p}: logits differ from llama.cpp's by ${agree}`);
        if (dtype !== 'f32' && dtype !== 'q8_0') assert.ok(agree < moved / 2, `${label}, prompt ${p}: ${agree} is not well inside the quantisation's own effect, ${moved}`);
        if (arch && dtype === 'f32') assert.ok(logitDistance(mine, ours[0]![p]!) > 100 * agree, `${label}, prompt ${p}: not another model than the Llama`);
        if (scaling) assert.ok(agree < moved / 100, `${label}, prompt ${p}: ${agree} is not far inside what the scaling does, ${moved}`);
      }
      model.dispose();
    }
  });
});
