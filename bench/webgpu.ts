/**
 * The WebGPU benchmark, in one run (issue 7's "must show" list):
 *  1. matmul TFLOP/s: f32, 16-bit weights read directly (x f32 · W bf16ᵀ), and f16 compute
 *     (both operands f16, when the adapter has shader-f16); and, where the adapter offers
 *     Dawn's experimental subgroup matrices (tensor cores), f16 · f16 on them, on a second
 *     device checked against the CPU first;
 *  2. fused attention forward + backward at 4k / 16k / 32k tokens, dense causal and S²-Attn
 *     (segmented, G = N/4), with a ~1B Llama's attention shape (32 heads, 4 kv heads, D 64),
 *     with scalar and vec4 head-dim lanes on a hardware adapter (`--attn-lanes auto`; the
 *     training step then uses the faster); and (after the training step) forward +
 *     backward with f16 q, k, v, dO on the general kernels against the tensor-core ones;
 *  3. training tokens/s of a ~1B-parameter Llama (TinyLlama-1.1B shape: 22 layers, hidden
 *     2048, MLP 5632, 32/4 heads, vocab 32000) at 8k and 16k tokens with S²-Attn, LongLoRA
 *     (LoRA r=8 on q,k,v,o + trainable embeddings and norms), activation checkpointing,
 *     AdamW — one sequence per step; and, when the tensor-core matmul passed its check, the
 *     same step with an f16 base and f16 activations on it (its frozen projections run
 *     there);
 *  4. when PyTorch with CUDA is importable (`python3 -c 'import torch'`), the same training
 *     step in PyTorch (bf16, scaled_dot_product_attention, bench/webgpu_torch.py) on the
 *     same GPU, run before ours, and each of our variants' tokens/s against it;
 *  5. decoding: one row of x · Wᵀ (a 7B Llama's layer shapes) on the matrix-vector
 *     kernel against the tiled matmul, with W in NF4 on the fused 4-bit kernel against
 *     the weight expanded per call and then multiplied, and one token's attention over a KV cache of 4k,
 *     16k and 32k on the decoding kernel against the general one (a second device with
 *     `decodeKernels: false`), as ms and their ratio.
 * Every kernel is checked against the CPU reference on small shapes before it is timed. A
 * part that fails (a kernel that does not compile or disagrees, an adapter limit) prints
 * why and the run goes on with the next part; `--json` is rewritten after every part, so a
 * run cut short keeps what it measured.
 *
 *   npm run build && node dist/bench/webgpu.js [--smoke] [--skip-train] [--skip-torch] [--json out.json]
 *     [--attn-lanes auto|1|2|4] [--profile fast|light] [--precision f32|bf16|f16[,...]] [--base-dtype f32|bf16|f16]
 *     [--widened] [--train-model tinyllama|small] [--train-lengths 8192,16384] [--only-train] [--only-decode]
 *     [--skip-tensor-cores] [--emulate-subgroup-matrix]
 *
 * The training step defaults to what PyTorch runs beside it: a bf16 frozen base, bf16
 * activations (`--precision`), f32 trainable weights. Several precisions are run one after
 * the other and compared with the first (memory above the weights, tokens/s); `--widened`
 * adds, for each 16-bit one, the same step with the kernels' own 16-bit reads and writes
 * turned off (every 16-bit operand widened to f32 copies). Memory counts do not depend on
 * the adapter, so a software adapter measures them (`--train-model small`).
 *
 * `--smoke` runs tiny shapes (a software adapter such as lavapipe can run it); timings
 * from it mean nothing. Results go to docs/BENCHMARKS.md with the command and the machine.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { AttentionArgs, AttentionMask, Backend, DeviceBuffer, Linear4bitArgs, MatmulArgs } from '../src/backend/backend.js';
import { cpuBackend, registerBackend, setBackend } from '../src/backend/registry.js';
import { createWebGpuBackend, type WebGpuBackend } from '../src/backend/webgpu/webgpu.js';
import { parseLlamaConfig, type LlamaConfig } from '../src/models/llama/config.js';
import { DYNAMIC_CODE, NF4_CODE } from '../src/quant/codebooks.js';
import { NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE, quantizeNf4 } from '../src/quant/nf4.js';
import { fromFloatArray, toFloatArray } from '../src/tensor/dtype.js';
import { zeroGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/tensor/random.js';
import { benchOptimizer, longloraBenchModel, measureSteps } from './setup.js';
import { trainStep } from '../src/train/step.js';
import { LossScaler } from '../src/train/loss-scale.js';
import { PRECISIONS, type Precision } from '../src/models/llama/model.js';

const { values: flags } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    'skip-train': { type: 'boolean', default: false },
    'skip-torch': { type: 'boolean', default: false },
    json: { type: 'string' },
    'attn-lanes': { type: 'string', default: 'auto' },
    profile: { type: 'string' },
    precision: { type: 'string', default: 'bf16' },
    'base-dtype': { type: 'string', default: 'bf16' },
    widened: { type: 'boolean', default: false },
    'train-model': { type: 'string', default: 'tinyllama' },
    'train-lengths': { type: 'string' },
    'only-train': { type: 'boolean', default: false },
    'only-decode': { type: 'boolean', default: false },
    'skip-tensor-cores': { type: 'boolean', default: false },
    'emulate-subgroup-matrix': { type: 'boolean', default: false },
  },
});
const SMOKE = flags.smoke!;
const PRECISION_LIST = flags.precision!.split(',') as Precision[];
for (const p of PRECISION_LIST) if (!PRECISIONS.includes(p)) throw new Error(`--precision: ${p} is not one of ${PRECISIONS.join(', ')}`);
if (!['tinyllama', 'small'].includes(flags['train-model']!)) throw new Error('--train-model must be tinyllama or small');
type BaseDType = 'f32' | 'bf16' | 'f16';
const BASE_DTYPE = flags['base-dtype'] as BaseDType;
if (!['f32', 'bf16', 'f16'].includes(BASE_DTYPE)) throw new Error('--base-dtype must be f32, bf16 or f16');
const results: Record<string, unknown> = {};
const failures: Record<string, string> = {};
const started = performance.now();

/** Runs one part of the benchmark; a failure is printed and recorded, and the run goes on. */
async function part(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    failures[name] = msg;
    console.log(`\n${name} FAILED: ${msg}`);
  }
  console.log(`  [${name} done, ${((performance.now() - started) / 1000).toFixed(0)} s into the run]`);
  if (Object.keys(failures).length > 0) results.failures = failures;
  if (flags.json) fs.writeFileSync(flags.json, `${JSON.stringify(results, null, 2)}\n`);
}

// Registered and made current: the training step creates its id tensors on the current backend.
// --attn-lanes: the attention kernels' head-dim lanes (scalar, vec2, vec4); 'auto' times 1
// and 4 in the attention part on a hardware adapter and trains with the faster.
const LANES = flags['attn-lanes'] === 'auto' ? null : Number(flags['attn-lanes']);
if (LANES !== null && ![1, 2, 4].includes(LANES)) throw new Error('--attn-lanes must be auto, 1, 2 or 4');
const backendOptions = {
  ...(flags.profile ? { profile: flags.profile as 'fast' | 'light' } : {}),
};
const GPU_LANES = LANES ?? 1;
const gpu = await createWebGpuBackend({ ...backendOptions, attentionTiles: { W: GPU_LANES } });
registerBackend('webgpu-bench', -1, () => gpu);
/** Lane widths the attention part compares (a software adapter takes minutes to compile vec4 lanes). */
const LANE_CHOICES = LANES !== null ? [LANES] : SMOKE || gpu.adapter.software ? [1] : [1, 4];
/** The lanes the training step uses: the fastest S² attention of the attention part. */
let trainLanes = GPU_LANES;
/** One device per attention lane width (the kernels' constants are fixed per device), made once and registered for the training step. */
const laneDevices = new Map<number, { be: WebGpuBackend; name: string }>([[GPU_LANES, { be: gpu, name: 'webgpu-bench' }]]);
async function laneDevice(W: number): Promise<{ be: WebGpuBackend; name: string }> {
  let d = laneDevices.get(W);
  if (!d) {
    const be = await createWebGpuBackend({ ...backendOptions, attentionTiles: { W } });
    d = { be, name: `webgpu-bench-lanes-${W}` };
    registerBackend(d.name, -1, () => be);
    laneDevices.set(W, d);
  }
  return d;
}
await setBackend('webgpu-bench');
console.log(`device: ${gpu.describe()}`);
console.log(`host: ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, node ${process.version}${SMOKE ? '  (SMOKE: tiny shapes, timings meaningless)' : ''}`);
results.device = gpu.describe();

const rng = new Rng(7);
function randomF32(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

/** Uploads `data` to a new buffer on `be`. */
function put(be: Backend, data: Float32Array | Uint16Array, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): DeviceBuffer {
  const b = be.alloc(dtype, data.length);
  be.upload(b, data);
  return b;
}

/** Median seconds of `iters` runs of `fn` (each followed by a sync), after `warmup` runs. */
async function time(be: Backend, fn: () => void, iters: number, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) fn();
  await be.sync();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    await be.sync();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]!;
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return d / (s || 1);
}

// ---- 1. matmul ------------------------------------------------------------------------

/** x · Wᵀ on `be` against the CPU, in f32 or with both operands f16 (the CPU on the rounded values). */
async function checkMatmul(be: WebGpuBackend, dtype: 'f32' | 'f16' = 'f32'): Promise<void> {
  const [m, n, k] = [131, 78, 259];
  const args: MatmulArgs = { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
  const round = (a: Float32Array): Float32Array => dtype === 'f32' ? a : toFloatArray(fromFloatArray(a, dtype), dtype, 'f32') as Float32Array;
  const x = round(randomF32(m * k));
  const w = round(randomF32(n * k));
  const cpu = cpuBackend();
  const [xc, wc, oc] = [put(cpu, x), put(cpu, w), cpu.alloc('f32', m * n)];
  cpu.matmul(xc, wc, oc, args);
  const want = await cpu.download(oc);
  const onGpu = (a: Float32Array): DeviceBuffer => dtype === 'f32' ? put(be, a) : put(be, fromFloatArray(a, dtype) as Uint16Array, dtype);
  const [xg, wg, og] = [onGpu(x), onGpu(w), be.alloc('f32', m * n)];
  be.matmul(xg, wg, og, args);
  const rel = maxRel(await be.download(og), want);
  // f16 compute sums each tile's products in f16 (kernels/matmul.ts); subgroup matrices accumulate in f32
  const tol = dtype === 'f32' || be.sgm ? 1e-5 : 5e-3;
  if (rel > tol) throw new Error(`matmul check failed (${dtype}${be.sgm ? ', subgroup matrices' : ''}): rel ${rel}`);
  for (const b of [xc, wc, oc]) cpu.free(b);
  for (const b of [xg, wg, og]) be.free(b);
}

const tensorCores = new Map<number, Promise<WebGpuBackend | null>>();

/**
 * A second device with the subgroup-matrix (tensor-core) matmul and attention lanes W,
 * checked against the CPU, or null with the reason printed (also with --skip-tensor-cores).
 * Made once per W; registered as 'webgpu-bench-tc-W' for the training step.
 * --emulate-subgroup-matrix (with --smoke on a software adapter) runs the kernel's
 * plain-WGSL form through the same paths.
 */
function tensorCoreBackend(W: number): Promise<WebGpuBackend | null> {
  const made = tensorCores.get(W);
  if (made) return made;
  const making = (async () => {
    if (flags['skip-tensor-cores']) return null;
    let be: WebGpuBackend | null = null;
    try {
      be = await createWebGpuBackend({ ...backendOptions, attentionTiles: { W }, subgroupMatrix: true, emulateSubgroupMatrix: flags['emulate-subgroup-matrix'] });
      if (!be.sgm) {
        console.log(`  (no subgroup-matrix matmul: ${be.subgroupMatrixNote})`);
        be.destroy();
        return null;
      }
      console.log(`  (subgroup-matrix matmul: ${be.subgroupMatrixNote})`);
      await checkMatmul(be, 'f16');
      const tc = be;
      registerBackend(`webgpu-bench-tc-${W}`, -1, () => tc);
      return be;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      failures['tensor cores'] = msg;
      console.log(`  subgroup-matrix matmul failed: ${msg}`);
      be?.destroy();
      return null;
    }
  })();
  tensorCores.set(W, making);
  return making;
}

async function benchMatmul(): Promise<void> {
  const plain = gpu;
  await checkMatmul(plain);
  const sizes = SMOKE ? [256] : [2048, 4096, 8192];
  console.log('\nmatmul (m = n = k, x · Wᵀ)      size    ms      TFLOP/s');
  const tc = await tensorCoreBackend(GPU_LANES);
  const rows: Array<Record<string, unknown>> = [];
  results.matmul = rows;
  for (const s of sizes) {
    const args: MatmulArgs = { batch: 1, m: s, n: s, k: s, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
    const x32 = randomF32(s * s);
    const w32 = randomF32(s * s);
    const variants: Array<[string, 'f32' | 'f16' | 'bf16', 'f32' | 'f16' | 'bf16', WebGpuBackend]> = [['f32', 'f32', 'f32', plain], ['x f32 · W bf16', 'f32', 'bf16', plain]];
    if (plain.hasF16) variants.push(['f16 compute (f16 · f16)', 'f16', 'f16', plain]);
    if (tc) variants.push(['f16 · f16, subgroup matrices', 'f16', 'f16', tc]);
    for (const [name, at, bt, be] of variants) {
      const a = put(be, at === 'f32' ? x32 : fromFloatArray(x32, at) as Uint16Array, at);
      const b = put(be, bt === 'f32' ? w32 : fromFloatArray(w32, bt) as Uint16Array, bt);
      const o = be.alloc('f32', s * s);
      const iters = SMOKE ? 2 : s >= 8192 ? 5 : 10;
      const sec = await time(be, () => be.matmul(a, b, o, args), iters);
      const tflops = (2 * s * s * s) / sec / 1e12;
      console.log(`  ${name.padEnd(28)} ${String(s).padStart(5)}  ${(sec * 1e3).toFixed(2).padStart(7)}  ${tflops.toFixed(2).padStart(7)}`);
      rows.push({ variant: name, size: s, ms: sec * 1e3, tflops });
      for (const buf of [a, b, o]) be.free(buf);
    }
  }
}

/**
 * The same row with W in NF4: expanded into an f32 copy (dequantize4bit) and then multiplied
 * on the matrix-vector kernel, against the fused 4-bit kernel that reads the packed weight.
 */
async function decodeNf4(name: string, n: number, k: number, w32: Float32Array, x32: Float32Array): Promise<Record<string, unknown>> {
  const q = quantizeNf4(w32);
  const blocks = q.scaleCodes.length;
  const fused: Linear4bitArgs = { m: 1, n, k, blockSize: NF4_BLOCK_SIZE, scaleBlockSize: SCALE_BLOCK_SIZE, scaleOffset: q.scaleOffset };
  const mm: MatmulArgs = { batch: 1, m: 1, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
  const b = {
    x: put(gpu, x32), packed: gpu.alloc('u8', q.packed.length), codes: gpu.alloc('u8', blocks), absmax: put(gpu, q.scaleAbsmax),
    code4: put(gpu, Float32Array.from(NF4_CODE)), code8: put(gpu, Float32Array.from(DYNAMIC_CODE)), o1: gpu.alloc('f32', n), o2: gpu.alloc('f32', n),
  };
  gpu.upload(b.packed, q.packed);
  gpu.upload(b.codes, q.scaleCodes);
  const bytes = q.packed.length + blocks + 4 * q.scaleAbsmax.length;
  let w: DeviceBuffer | null = null;
  try {
    if (4 * n * k > gpu.limits.maxBinding) throw new Error('the expanded f32 weight is larger than this adapter\'s largest buffer binding');
    const wExp = w = gpu.alloc('f32', n * k);
    const expanded = (): void => {
      gpu.dequantize4bit(b.packed, b.code4, b.codes, b.code8, b.absmax, wExp, { n: n * k, blockSize: NF4_BLOCK_SIZE, scaleBlockSize: SCALE_BLOCK_SIZE, scaleOffset: q.scaleOffset });
      gpu.matmul(b.x, wExp, b.o2, mm);
    };
    const run = (): void => { if (!gpu.linear4bit(b.x, b.packed, b.code4, b.codes, b.code8, b.absmax, b.o1, fused)) throw new Error('the fused 4-bit kernel declined'); };
    const sec = [await time(gpu, expanded, SMOKE ? 2 : 20, 2), await time(gpu, run, SMOKE ? 2 : 20, 2)];
    const rel = maxRel(await gpu.download(b.o1) as Float32Array, await gpu.download(b.o2) as Float32Array);
    if (rel > 1e-5) throw new Error(`decoding matmul ${name} nf4: the fused kernel and the expanded weight differ (rel ${rel})`);
    const gbs = bytes / sec[1]! / 1e9;
    console.log(`  ${name.padEnd(30)} nf4    ${(sec[0]! * 1e3).toFixed(3).padStart(9)}  ${(sec[1]! * 1e3).toFixed(3).padStart(16)}  ${(sec[0]! / sec[1]!).toFixed(2).padStart(5)}×  ${gbs.toFixed(1).padStart(8)}   (expanded, then matrix-vector | fused 4-bit)`);
    return { shape: name, n, k, weight: 'nf4', expandedMs: sec[0]! * 1e3, fusedMs: sec[1]! * 1e3, speedup: sec[0]! / sec[1]!, fusedGBs: gbs };
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    console.log(`  ${name.padEnd(30)} nf4    skipped: ${why}`);
    return { shape: name, n, k, weight: 'nf4', skipped: why };
  } finally {
    for (const x of [...Object.values(b), ...(w ? [w] : [])]) gpu.free(x);
  }
}

/** m = 1 row of x · Wᵀ (decoding) on the matrix-vector kernel and on the tiled one, in one run. */
async function benchDecode(): Promise<void> {
  const tiled = await createWebGpuBackend({ ...backendOptions, decodeKernels: false });
  const shapes: Array<[string, number, number]> = SMOKE
    ? [['smoke', 512, 256]]
    : [['q/o proj (4096 × 4096)', 4096, 4096], ['MLP up (11008 × 4096)', 11008, 4096], ['MLP down (4096 × 11008)', 4096, 11008], ['lm head (32000 × 4096)', 32000, 4096]];
  console.log('\ndecoding matmul (m = 1, x · Wᵀ)    W          tiled ms  matrix-vector ms  ratio   matrix-vector GB/s of W');
  const rows: Array<Record<string, unknown>> = [];
  results.decode = rows;
  for (const [name, n, k] of shapes) {
    const args: MatmulArgs = { batch: 1, m: 1, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
    const x32 = randomF32(k);
    const w32 = randomF32(n * k, 0.02);
    for (const wt of ['f32', 'bf16'] as const) {
      if (n * k * (wt === 'f32' ? 4 : 2) > gpu.limits.maxBinding) {
        console.log(`  ${name.padEnd(30)} ${wt.padEnd(5)}  skipped: W is larger than this adapter's largest buffer binding`);
        continue;
      }
      const wData = wt === 'f32' ? w32 : fromFloatArray(w32, wt) as Uint16Array;
      const sec: number[] = [];
      const outs: Float32Array[] = [];
      for (const be of [tiled, gpu]) {
        const [xb, wb, ob] = [put(be, x32), put(be, wData, wt), be.alloc('f32', n)];
        sec.push(await time(be, () => be.matmul(xb, wb, ob, args), SMOKE ? 2 : 20, 2));
        outs.push(await be.download(ob) as Float32Array);
        for (const b of [xb, wb, ob]) be.free(b);
      }
      const rel = maxRel(outs[1]!, outs[0]!);
      if (rel > 1e-5) throw new Error(`decoding matmul ${name} ${wt}: the matrix-vector kernel and the tiled one differ (rel ${rel})`);
      const gbs = (n * k * (wt === 'f32' ? 4 : 2)) / sec[1]! / 1e9;
      console.log(`  ${name.padEnd(30)} ${wt.padEnd(5)}  ${(sec[0]! * 1e3).toFixed(3).padStart(9)}  ${(sec[1]! * 1e3).toFixed(3).padStart(16)}  ${(sec[0]! / sec[1]!).toFixed(2).padStart(5)}×  ${gbs.toFixed(1).padStart(8)}`);
      rows.push({ shape: name, n, k, weight: wt, tiledMs: sec[0]! * 1e3, gemvMs: sec[1]! * 1e3, speedup: sec[0]! / sec[1]!, gemvGBs: gbs });
    }
    rows.push(await decodeNf4(name, n, k, w32, x32));
  }
  // Attention of one new token over a KV cache (TinyLlama's heads): the decoding kernel
  // against the general one, which runs the row on one thread per head.
  const [H, Hkv, D] = [32, 4, 64];
  console.log(`\ndecoding attention (1 query row, H ${H}, Hkv ${Hkv}, D ${D})            cache  general ms  decoding ms  ratio`);
  for (const N of SMOKE ? [512] : [4096, 16384, 32768]) {
    const args: AttentionArgs = { B: 1, Nq: 1, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: N - 1, mask: { kind: 'causal' } };
    const [q, k, v] = [randomF32(H * D), randomF32(N * Hkv * D), randomF32(N * Hkv * D)];
    const sec: number[] = [];
    const outs: Float32Array[] = [];
    for (const be of [tiled, gpu]) {
      const [qb, kb, vb, ob, lb] = [put(be, q), put(be, k), put(be, v), be.alloc('f32', H * D), be.alloc('f32', H)];
      sec.push(await time(be, () => be.attention(qb, kb, vb, ob, lb, args), SMOKE ? 2 : 10, 1));
      outs.push(await be.download(ob) as Float32Array);
      for (const b of [qb, kb, vb, ob, lb]) be.free(b);
    }
    const rel = maxRel(outs[1]!, outs[0]!);
    if (rel > 1e-5) throw new Error(`decoding attention at ${N}: the two kernels differ (rel ${rel})`);
    console.log(`  ${''.padEnd(50)} ${String(N).padStart(6)}  ${(sec[0]! * 1e3).toFixed(2).padStart(10)}  ${(sec[1]! * 1e3).toFixed(2).padStart(11)}  ${(sec[0]! / sec[1]!).toFixed(1).padStart(5)}×`);
    rows.push({ attention: 'decode', N, generalMs: sec[0]! * 1e3, decodeMs: sec[1]! * 1e3, speedup: sec[0]! / sec[1]! });
  }
  tiled.destroy();
}

// ---- 2. attention ---------------------------------------------------------------------

async function checkAttention(be: WebGpuBackend, W: number, mask: AttentionMask): Promise<void> {
  const [B, N, H, Hkv, D] = [1, 70, 4, 2, 64];
  const args: AttentionArgs = { B, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / 8, qOffset: 0, mask };
  const [q, k, v, dout] = [randomF32(B * N * H * D), randomF32(B * N * Hkv * D), randomF32(B * N * Hkv * D), randomF32(B * N * H * D)];
  const outs: Array<Array<Float32Array>> = [];
  for (const b of [cpuBackend(), be as Backend]) {
    const [qb, kb, vb, gb] = [put(b, q), put(b, k), put(b, v), put(b, dout)];
    const [o, l, dq, dk, dv] = [b.alloc('f32', q.length), b.alloc('f32', B * H * N), b.alloc('f32', q.length), b.alloc('f32', k.length), b.alloc('f32', v.length)];
    b.attention(qb, kb, vb, o, l, args);
    b.attentionBackward(qb, kb, vb, o, l, gb, dq, dk, dv, args);
    const got: Float32Array[] = [];
    for (const x of [o, dq, dk, dv]) got.push(await b.download(x) as Float32Array);
    for (const x of [qb, kb, vb, gb, o, l, dq, dk, dv]) b.free(x);
    outs.push(got);
  }
  outs[0]!.forEach((c, i) => {
    const rel = maxRel(outs[1]![i]!, c);
    if (rel > 1e-5) throw new Error(`attention check (${mask.kind}, lanes ${W}) failed on output ${i}: rel ${rel}`);
  });
}

/**
 * The forward pass with f16 q, k, v on `be` against the CPU: within 2^-11 · max|v| (the
 * subgroup-matrix kernel multiplies P in f16; kernels/attention-sgm.ts) plus f32 noise.
 * (The backward kernels are checked by the unit tests, which bench/gpu.sh runs first.)
 */
async function checkAttentionF16(be: WebGpuBackend, mask: AttentionMask): Promise<void> {
  const [B, N, H, Hkv, D] = [1, 70, 4, 2, 64];
  const args: AttentionArgs = { B, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / 8, qOffset: 0, mask };
  const [q, k, v] = [randomF32(B * N * H * D), randomF32(B * N * Hkv * D), randomF32(B * N * Hkv * D)].map((a) => fromFloatArray(a, 'f16') as Uint16Array);
  const outs: Float32Array[] = [];
  for (const b of [cpuBackend(), be as Backend]) {
    const [qb, kb, vb] = [put(b, q!, 'f16'), put(b, k!, 'f16'), put(b, v!, 'f16')];
    const [o, l] = [b.alloc('f32', q!.length), b.alloc('f32', B * H * N)];
    b.attention(qb, kb, vb, o, l, args);
    outs.push(await b.download(o) as Float32Array);
    for (const x of [qb, kb, vb, o, l]) b.free(x);
  }
  const maxV = Math.max(...Array.from(toFloatArray(v!, 'f16', 'f32'), Math.abs));
  let worst = 0;
  for (let i = 0; i < outs[0]!.length; i++) worst = Math.max(worst, Math.abs(outs[1]![i]! - outs[0]![i]!));
  if (worst > 2 ** -11 * maxV + 1e-5) throw new Error(`f16 attention check (${mask.kind}, tensor cores) failed: max|diff| ${worst}`);
}

async function benchAttention(): Promise<void> {
  const [H, Hkv, D] = [32, 4, 64];
  const lengths = SMOKE ? [256] : [4096, 16384, 32768];
  console.log(`\nattention fwd + bwd (B 1, H ${H}, Hkv ${Hkv}, D ${D})   N  lanes   fwd ms   bwd ms   total ms`);
  const rows: Array<Record<string, unknown>> = [];
  results.attention = rows;
  const devices: Array<[number, WebGpuBackend]> = [];
  for (const W of LANE_CHOICES) devices.push([W, (await laneDevice(W)).be]);
  const s2Total = new Map<number, number>();
  for (const N of lengths) {
    const masks: Array<[string, AttentionMask]> = [['dense causal', { kind: 'causal' }], ['S² segmented G=N/4', { kind: 's2', form: 'segmented', group: N / 4 }]];
    for (const [name, mask] of masks) {
      for (const [W, be] of devices) {
        if (N === lengths[0]) await checkAttention(be, W, mask.kind === 'causal' ? mask : { ...mask, group: 16 });
        const args: AttentionArgs = { B: 1, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: 0, mask };
        const [q, k, v, g] = [put(be, randomF32(N * H * D)), put(be, randomF32(N * Hkv * D)), put(be, randomF32(N * Hkv * D)), put(be, randomF32(N * H * D))];
        const [o, l, dq, dk, dv] = [be.alloc('f32', N * H * D), be.alloc('f32', H * N), be.alloc('f32', N * H * D), be.alloc('f32', N * Hkv * D), be.alloc('f32', N * Hkv * D)];
        const iters = SMOKE ? 1 : N >= 32768 ? 3 : 5;
        const fwd = await time(be, () => be.attention(q, k, v, o, l, args), iters);
        const bwd = await time(be, () => be.attentionBackward(q, k, v, o, l, g, dq, dk, dv, args), iters);
        console.log(`  ${name.padEnd(44)} ${String(N).padStart(6)}  ${String(W).padStart(5)}  ${(fwd * 1e3).toFixed(1).padStart(7)}  ${(bwd * 1e3).toFixed(1).padStart(7)}  ${((fwd + bwd) * 1e3).toFixed(1).padStart(9)}`);
        rows.push({ mask: name, N, lanes: W, fwdMs: fwd * 1e3, bwdMs: bwd * 1e3 });
        if (mask.kind === 's2' && N <= 16384) s2Total.set(W, fwd + bwd); // the training lengths; the longest one measured counts
        for (const b of [q, k, v, g, o, l, dq, dk, dv]) be.free(b);
      }
    }
  }
  if (LANES === null && s2Total.size > 1) {
    trainLanes = [...s2Total.entries()].sort((x, y) => x[1] - y[1])[0]![0];
    console.log(`  (the training step uses lanes ${trainLanes}: the fastest S² fwd + bwd above at the training lengths)`);
  }
  results.trainLanes = trainLanes;
}

/** f16 q, k, v, dO (what f16 training runs): the general attention kernels against the tensor-core ones. */
async function benchAttentionTensorCores(): Promise<void> {
  const [H, Hkv, D] = [32, 4, 64];
  const lengths = SMOKE ? [256] : [4096, 16384, 32768];
  const tc = await tensorCoreBackend(GPU_LANES);
  if (!tc) return;
  console.log(`\nattention fwd + bwd, f16 q, k, v, dO, out             N   general fwd / bwd ms   tensor cores fwd / bwd ms   ratio`);
  const tcRows: Array<Record<string, unknown>> = [];
  results.attentionTensorCores = tcRows;
  for (const N of lengths) {
    const masks: Array<[string, AttentionMask]> = [['dense causal', { kind: 'causal' }], ['S² segmented G=N/4', { kind: 's2', form: 'segmented', group: N / 4 }]];
    for (const [name, mask] of masks) {
      if (N === lengths[0]) await checkAttentionF16(tc, mask.kind === 'causal' ? mask : { ...mask, group: 16 });
      const args: AttentionArgs = { B: 1, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: 0, mask };
      const data = [randomF32(N * H * D), randomF32(N * Hkv * D), randomF32(N * Hkv * D), randomF32(N * H * D)].map((a) => fromFloatArray(a, 'f16') as Uint16Array);
      const sec: Array<[number, number]> = [];
      for (const be of [gpu, tc]) {
        const [q, k, v, g] = data.map((x) => put(be, x, 'f16'));
        const [o, l, dq, dk, dv] = [be.alloc('f16', N * H * D), be.alloc('f32', H * N), be.alloc('f16', N * H * D), be.alloc('f16', N * Hkv * D), be.alloc('f16', N * Hkv * D)];
        const iters = SMOKE ? 1 : N >= 32768 ? 3 : 5;
        const fwd = await time(be, () => be.attention(q!, k!, v!, o, l, args), iters);
        const bwd = await time(be, () => be.attentionBackward(q!, k!, v!, o, l, g!, dq, dk, dv, args), iters);
        sec.push([fwd, bwd]);
        for (const b of [q!, k!, v!, g!, o, l, dq, dk, dv]) be.free(b);
      }
      const [[gf, gb], [tf, tb]] = sec as [[number, number], [number, number]];
      const ms = (a: number, b: number): string => `${(a * 1e3).toFixed(1)} / ${(b * 1e3).toFixed(1)}`;
      console.log(`  ${name.padEnd(44)} ${String(N).padStart(6)}  ${ms(gf, gb).padStart(20)}  ${ms(tf, tb).padStart(26)}  ${((gf + gb) / (tf + tb)).toFixed(2).padStart(6)}×`);
      tcRows.push({ mask: name, N, generalFwdMs: gf * 1e3, generalBwdMs: gb * 1e3, tensorCoresFwdMs: tf * 1e3, tensorCoresBwdMs: tb * 1e3 });
    }
  }
}

// ---- 3. training ----------------------------------------------------------------------

const TINYLLAMA = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22,
  num_attention_heads: 32, num_key_value_heads: 4, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000,
};
const SMOKE_MODEL = { ...TINYLLAMA, vocab_size: 512, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };

function paramCount(c: LlamaConfig): number {
  const C = c.hiddenSize;
  const kv = c.headDim * c.numKvHeads;
  const layer = 2 * C * C + 2 * C * kv + 3 * C * c.intermediateSize + 2 * C;
  return c.numLayers * layer + 2 * c.vocabSize * C + C;
}

/** 4 layers, hidden 256: the step's memory, measurable on a software adapter in seconds per step. */
const SMALL_MODEL = { ...TINYLLAMA, vocab_size: 4096, hidden_size: 256, intermediate_size: 768, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2 };

/** One training configuration: activations, frozen base, and the device it runs on. */
interface Variant { precision: Precision; base: BaseDType; widened: boolean; tensorCores: boolean }
interface StepFigures { N: number; seconds: number; tokensPerSecond: number; peakBytes: number; aboveWeights: number; loss: number }

function variantName(v: Variant): string {
  return `${v.precision}${v.base === BASE_DTYPE ? '' : ` (${v.base} base)`}${v.widened ? ' widened' : ''}${v.tensorCores ? ' tensor cores' : ''}`;
}

/** The random base weights, drawn once (1.1 billion normal draws in JavaScript for the 1B shape) and shared by every variant. */
const TRAIN_WEIGHTS = new Map<string, Float32Array>();

/** Median-timed LongLoRA steps of `config` at each length on `be`, after a warm-up step that compiles every pipeline. */
async function trainVariant(be: WebGpuBackend, config: LlamaConfig, lengths: number[], v: Variant, report: (f: StepFigures) => void): Promise<void> {
  const { model, runtime } = longloraBenchModel(config, { backend: be, dtype: v.base, hostCache: TRAIN_WEIGHTS });
  const opt = benchOptimizer(model);
  try {
    for (const N of lengths) {
      const ids = Int32Array.from({ length: N }, (_, i) => (i * 7919 + 13) % config.vocabSize);
      const mask: AttentionMask = { kind: 's2', form: 'segmented', group: N / 4 };
      const opts = { mask, maxGradNorm: 1, checkpointing: true, rngs: [runtime.rng], precision: v.precision, ...(v.precision === 'f16' ? { scaler: new LossScaler() } : {}) };
      await trainStep(model, opt, [{ ids, B: 1, N }], 2e-5, opts); // warm-up: compiles every pipeline
      const steps = SMOKE || be.adapter.software ? 1 : 3; // a software adapter's timings mean nothing
      const m = await measureSteps(be, model, opt, ids, opts, steps);
      report({ N, tokensPerSecond: N / m.seconds, ...m });
    }
  } finally {
    zeroGrad(model.parameters());
    opt.dispose();
    model.dispose();
  }
}

/** Each variant's figures (in run order; a failed variant prints why and is left out). */
const TRAIN_LENGTHS = flags['train-lengths'] ? flags['train-lengths'].split(',').map(Number) : SMOKE ? [128] : [8192, 16384];

/**
 * Each variant's figures (in run order; a failed variant prints why and is left out), with
 * its tokens/s against PyTorch's at the same length where `torch` has it.
 */
async function benchTraining(torch: Map<number, number>): Promise<void> {
  const rows: Record<string, StepFigures[]> = {};
  results.training = rows;
  if (torch.size) results.vsTorch = {};
  const config = parseLlamaConfig(SMOKE ? SMOKE_MODEL : flags['train-model'] === 'small' ? SMALL_MODEL : TINYLLAMA, 'bench');
  const lengths = TRAIN_LENGTHS;
  const variants: Variant[] = PRECISION_LIST.flatMap((precision) => [
    { precision, base: BASE_DTYPE, widened: false, tensorCores: false },
    ...(flags.widened && precision !== 'f32' ? [{ precision, base: BASE_DTYPE, widened: true, tensorCores: false }] : []),
  ]);
  // Tensor cores take f16 · f16 products only: an f16 base and f16 activations (with loss scaling).
  const tc = await tensorCoreBackend(trainLanes);
  // The plain variants run on the device with the lanes the attention part chose.
  const plain = await laneDevice(trainLanes);
  if (tc) variants.push({ precision: 'f16', base: 'f16', widened: false, tensorCores: true });
  console.log(`\ntraining: Llama ${(paramCount(config) / 1e9).toFixed(2)}B (${config.numLayers} layers, hidden ${config.hiddenSize}), LongLoRA (LoRA r=8 q,k,v,o + embed + norm), S² segmented G=N/4, checkpointing, AdamW, 1 sequence per step; ` +
    `attention lanes ${trainLanes}, frozen base in ${BASE_DTYPE} unless named, activations in ${variants.map(variantName).join(' / ')}, trainable weights f32` +
    (variants.length > 1 ? `; ratios against ${variantName(variants[0]!)} in this run` : ''));
  console.log(`  variant                        N        step s   tokens/s   peak GiB   above weights MiB   loss${torch.size ? '     × PyTorch' : ''}`);
  // Widened variants run on a second device whose kernels do not touch 16-bit operands.
  let widened: WebGpuBackend | null = null;
  for (const v of variants) {
    if (v.widened && !widened) {
      const w = await createWebGpuBackend({ ...backendOptions, attentionTiles: { W: trainLanes }, native16: false });
      registerBackend('webgpu-bench-widened', -1, () => w);
      widened = w;
    }
    const [be, registered] = v.widened ? [widened!, 'webgpu-bench-widened'] : v.tensorCores ? [tc!, `webgpu-bench-tc-${trainLanes}`]
      : [plain.be, plain.name];
    await setBackend(registered); // the step makes its id tensors there
    const figs: StepFigures[] = [];
    try {
      await trainVariant(be, config, lengths, v, (f) => {
        if (figs.length === 0) rows[variantName(v)] = figs;
        figs.push(f);
        const first = rows[variantName(variants[0]!)]?.find((r) => r.N === f.N);
        const ratio = v === variants[0] || !first ? '' : `   vs ${variantName(variants[0]!)}: memory above weights ${(f.aboveWeights / first.aboveWeights).toFixed(2)}×, tokens/s ${(f.tokensPerSecond / first.tokensPerSecond).toFixed(2)}×`;
        const pt = torch.get(f.N);
        const vsTorch = pt ? `${(f.tokensPerSecond / pt).toFixed(3).padStart(10)}×` : '';
        console.log(`  ${variantName(v).padEnd(30)} ${String(f.N).padEnd(7)} ${f.seconds.toFixed(3).padStart(7)}  ${f.tokensPerSecond.toFixed(0).padStart(9)}  ${(f.peakBytes / 2 ** 30).toFixed(2).padStart(8)}   ${(f.aboveWeights / 2 ** 20).toFixed(1).padStart(17)}   ${f.loss.toFixed(4)}${vsTorch}${ratio}`);
        if (pt) (results.vsTorch as Record<string, number>)[`${variantName(v)} @ ${f.N}`] = f.tokensPerSecond / pt;
        if (flags.json) fs.writeFileSync(flags.json, `${JSON.stringify(results, null, 2)}\n`);
      });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      failures[`training ${variantName(v)}`] = msg;
      console.log(`  ${variantName(v).padEnd(30)} FAILED: ${msg}`);
    } finally {
      await setBackend('webgpu-bench');
    }
  }
  widened?.destroy();
}

// ---- 4. PyTorch -----------------------------------------------------------------------

/** A Python with PyTorch (with CUDA unless smoke-testing): $LONGLORA_PYTHON, python3, /usr/bin/python3. */
function findTorch(): string | null {
  const check = SMOKE ? 'import torch' : 'import torch; assert torch.cuda.is_available()';
  for (const py of [process.env.LONGLORA_PYTHON, 'python3', '/usr/bin/python3']) {
    if (!py) continue;
    try {
      execFileSync(py, ['-c', check], { stdio: 'ignore' });
      return py;
    } catch { /* next */ }
  }
  return null;
}

/**
 * The same step in PyTorch at each training length (run before ours, so that each of our
 * rows can print its ratio as it is measured): tokens/s by N into `out`.
 */
async function benchTorch(out: Map<number, number>): Promise<void> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'webgpu_torch.py');
  const py = findTorch();
  if (!py) {
    console.log(`\nno PyTorch${SMOKE ? '' : ' with CUDA'} importable (tried $LONGLORA_PYTHON, python3, /usr/bin/python3): no PyTorch comparison.`);
    return;
  }
  console.log(`\nPyTorch (${py}), the training step below (bf16 autocast, SDPA attention, S² by the official roll over groups, checkpointing, fused AdamW):`);
  const rows: Array<Record<string, unknown>> = [];
  results.torch = rows;
  for (const N of TRAIN_LENGTHS) {
    const argv = [script, '--seq', String(N), ...(SMOKE ? ['--smoke', '--steps', '1'] : [])];
    const json = JSON.parse(execFileSync(py, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!) as { tokens_per_second: number; device: string };
    console.log(`  N ${N}: ${json.tokens_per_second.toFixed(0)} tokens/s on ${json.device}`);
    rows.push({ N, torchTokensPerSecond: json.tokens_per_second, device: json.device });
    out.set(N, json.tokens_per_second);
  }
}

/** The issue's targets against this run's best figures (matmul ≥ 25 TFLOP/s, training ≥ 0.25× PyTorch's tokens/s). */
function summary(): void {
  const lines: string[] = [];
  const matmul = (results.matmul ?? []) as Array<{ variant: string; size: number; tflops: number }>;
  if (matmul.length > 0) {
    const best = matmul.reduce((x, y) => (y.tflops > x.tflops ? y : x));
    lines.push(`matmul: best ${best.tflops.toFixed(2)} TFLOP/s (${best.variant}, ${best.size}³); target 25: ${best.tflops >= 25 ? 'met' : 'not met'}`);
  }
  const vs = results.vsTorch as Record<string, number> | undefined;
  if (vs && Object.keys(vs).length > 0) {
    const [name, ratio] = Object.entries(vs).reduce((x, y) => (y[1] > x[1] ? y : x));
    lines.push(`training: best ${ratio.toFixed(3)}× PyTorch's tokens/s (${name}); target 0.25×: ${ratio >= 0.25 ? 'met' : 'not met'}`);
  }
  if (lines.length > 0) console.log(`\nsummary${SMOKE ? ' (SMOKE: meaningless)' : ''}:\n  ${lines.join('\n  ')}`);
  results.summary = lines;
  if (flags.json) fs.writeFileSync(flags.json, `${JSON.stringify(results, null, 2)}\n`);
}

// The parts in the order of what matters most, should a run be cut short: the kernels, the
// training step against PyTorch, then the tensor-core attention and decoding comparisons.
const onlyDecode = flags['only-decode']!;
if (!flags['only-train'] && !onlyDecode) {
  await part('matmul', benchMatmul);
  await part('attention', benchAttention);
}
if (!flags['skip-train'] && !onlyDecode) {
  const torch = new Map<number, number>();
  // PyTorch runs the TinyLlama shape (bench/webgpu_torch.py) with bf16 activations.
  if (!flags['skip-torch'] && flags['train-model'] === 'tinyllama') await part('PyTorch', () => benchTorch(torch));
  await part('training', () => benchTraining(torch));
}
if (!flags['only-train'] && !onlyDecode) await part('attention on tensor cores', benchAttentionTensorCores);
if (!flags['only-train']) await part('decoding', benchDecode);
for (const made of tensorCores.values()) (await made)?.destroy();
for (const { be } of laneDevices.values()) be.destroy(); // gpu among them
summary();
if (Object.keys(failures).length > 0) {
  console.log(`\n${Object.keys(failures).length} part(s) failed: ${Object.keys(failures).join(', ')}`);
  process.exitCode = 1;
}
