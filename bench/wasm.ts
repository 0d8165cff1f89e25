/**
 * The wasm backend benchmark, in one run (issue 4's "must show" list):
 *  1. matmul GFLOP/s on the wasm backend (1024³ and 4096×512×512, the x·Wᵀ of a linear
 *     layer), on one thread and on all of them, and the CPU reference backend on 256³
 *     for scale; and x·Wᵀ with a bf16 weight (decode, m = 1, and a 512-token block), read
 *     directly by the kernel, against the f32 weight (also through the packed kernel, as
 *     x·W with W stored [k, n]) and against the bf16 weight widened to an f32 copy per call
 *     (a second backend with `native16: false`), in ms per call;
 *  2. fused attention forward + backward (8 heads, head dim 64), dense causal and
 *     S²-Attn (segmented, G = N/4), at 1k / 4k / 16k tokens, and the dense / S² ratio;
 *  3. training tokens/s of a fixed small Llama (8 layers, hidden 512, MLP 1536, 8 heads,
 *     vocab 32000; LoRA r=8 on q,k,v,o + trainable embeddings and norms; activation
 *     checkpointing; AdamW; one sequence per step) with S²-Attn at 4k / 8k / 16k / 32k
 *     tokens and with dense attention at 4k and 16k, and the peak memory of each step
 *     (the backend's live-bytes high-water mark: it should grow linearly with the length);
 *  4. when /usr/bin/python3 can import torch: the same training step in PyTorch on the CPU
 *     with the same threads (bench/wasm_torch.py) at 4k tokens (16k with --torch-long:
 *     hours with a reference BLAS), and the ratio;
 *  5. decoding with a 4-bit base: one row of x·Wᵀ with W in f32, bf16 and NF4 (expanded
 *     per call, and through the fused kernel), and greedy decoding tokens/s of a
 *     TinyLlama-width Llama with its decoder layers in f32, bf16 and NF4; sampling one token
 *     (top-p) against sorting the whole vocabulary; one token's
 *     attention over an f32 and a bf16 KV cache of 4k and 16k keys; and the same
 *     model decoding after a long prompt with its KV cache in f32, bf16 and f16, and that
 *     prompt run at once and in pieces (prefill time and peak memory).
 * Kernels are checked against the CPU reference on small shapes before they are timed.
 *
 *   npm run bench                       # the whole run (about half an hour on 2 cores)
 *   node dist/bench/wasm.js --quick     # shorter lengths, a few minutes
 *   node dist/bench/wasm.js [--only matmul,attention,train,decode] [--train-lengths 4096,16384] [--train-attention s2,dense] [--precision f32,bf16] [--loss-chunk 1024,auto] [--skip-torch] [--torch-long] [--json out.json]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { AttentionArgs, AttentionMask, Backend, DeviceBuffer, MatmulArgs } from '../src/backend/backend.js';
import { cpuBackend, getBackend, registerBackend, setBackend } from '../src/backend/registry.js';
import { WasmBackend } from '../src/backend/wasm/wasm.js';
import { candidates, GREEDY } from '../src/eval/sampling.js';
import { generate, Generator } from '../src/eval/generate.js';
import { parseLlamaConfig } from '../src/models/llama/config.js';
import { randomLlama } from '../src/models/llama/init.js';
import { PRECISIONS, type Precision } from '../src/models/llama/model.js';
import { Nf4Weight } from '../src/quant/nf4-weight.js';
import { quantizeModel } from '../src/quant/quantize-model.js';
import { noGrad } from '../src/tensor/autograd.js';
import { fromFloatArray } from '../src/tensor/dtype.js';
import { lossChunkRows } from '../src/nn/lm-loss.js';
import { linear } from '../src/tensor/ops/matmul.js';
import { Rng } from '../src/tensor/random.js';
import { tidy } from '../src/tensor/scope.js';
import { fromHost, type Tensor } from '../src/tensor/tensor.js';
import { SMALL_LLAMA, smallLlamaConfig, timedTrainingStep, type TimedStep } from './setup.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'skip-torch': { type: 'boolean', default: false },
    'torch-long': { type: 'boolean', default: false },
    'train-lengths': { type: 'string' },
    'train-attention': { type: 'string' },
    precision: { type: 'string' },
    'loss-chunk': { type: 'string' },
    json: { type: 'string' },
  },
});
const sections = new Set((flags.only ?? 'matmul,attention,train,decode').split(','));
const quick = flags.quick!;
const results: Record<string, unknown> = {};

// ---- helpers ----------------------------------------------------------------------------

const rng = new Rng(7);
function randomBuffer(be: Backend, n: number): DeviceBuffer {
  const b = be.alloc('f32', n);
  be.upload(b, Float32Array.from({ length: n }, () => rng.normal()));
  return b;
}

/** Best wall time of `reps` runs after one warm-up, in ms (reps 0: the one run, timed). */
function bestMs(fn: () => void, reps: number): number {
  const t0 = performance.now();
  fn();
  let best = reps === 0 ? performance.now() - t0 : Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return d / (s || 1);
}

const f1 = (x: number): string => x.toFixed(1);
const pad = (s: string, n: number): string => s.padEnd(n);

// ---- 1. matmul --------------------------------------------------------------------------

function matmulGflops(be: Backend, m: number, n: number, k: number, transB: boolean, reps: number): number {
  const a = randomBuffer(be, m * k);
  const b = randomBuffer(be, k * n);
  const c = be.alloc('f32', m * n);
  const args: MatmulArgs = { batch: 1, m, n, k, transA: false, transB, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
  const ms = bestMs(() => be.matmul(a, b, c, args), reps);
  for (const x of [a, b, c]) be.free(x);
  return (2 * m * n * k) / ms / 1e6;
}

async function checkMatmul(be: Backend): Promise<number> {
  const [m, n, k] = [67, 45, 130];
  const host = [Float32Array.from({ length: m * k }, () => rng.normal()), Float32Array.from({ length: n * k }, () => rng.normal())];
  const out: Array<ArrayLike<number>> = [];
  for (const b of [be, cpuBackend()]) {
    const [x, w, y] = [b.alloc('f32', m * k), b.alloc('f32', n * k), b.alloc('f32', m * n)];
    b.upload(x, host[0]!); b.upload(w, host[1]!);
    b.matmul(x, w, y, { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 });
    out.push(await b.download(y) as Float32Array);
    for (const t of [x, w, y]) b.free(t);
  }
  return maxRelDiff(out[0]!, out[1]!);
}

async function benchMatmul(wasm: WasmBackend, single: WasmBackend): Promise<void> {
  console.log(`\n## matmul (f32)   [checked against the CPU reference: rel ${(await checkMatmul(wasm)).toExponential(1)}]`);
  console.log(`${pad('shape', 34)} ${pad(`wasm ${wasm.threads} threads`, 16)} wasm 1 thread`);
  const rows: Array<[string, number, number, number, boolean]> = [
    ['1024 × 1024 × 1024', 1024, 1024, 1024, false],
    ['4096 × 512 × 512 (x·Wᵀ)', 4096, 512, 512, true],
  ];
  const out: Record<string, unknown> = {};
  for (const [name, m, n, k, tB] of rows) {
    const all = matmulGflops(wasm, m, n, k, tB, 5);
    const one = matmulGflops(single, m, n, k, tB, 3);
    console.log(`${pad(name, 34)} ${pad(`${f1(all)} GFLOP/s`, 16)} ${f1(one)} GFLOP/s`);
    out[name] = { all, one };
  }
  out.bf16Weight = await benchBf16Weight(wasm);
  const cpu = matmulGflops(cpuBackend(), 256, 256, 256, false, 1);
  console.log(`${pad('256³ on the CPU reference backend', 34)} ${f1(cpu)} GFLOP/s (plain TypeScript loops, for scale)`);
  out.cpu256 = cpu;
  results.matmul = out;
}

/**
 * ms of x [m, k] f32 · Wᵀ with W [n, k] stored as `wDtype` (best of `reps`); `stored` 'kn'
 * keeps W as [k, n] and multiplies x·W instead: the same product through the packed
 * kernel, which a few rows of x·Wᵀ (m ≤ 4) bypass.
 */
function linearMs(be: Backend, m: number, n: number, k: number, wDtype: 'f32' | 'bf16', reps: number, stored: 'nk' | 'kn' = 'nk'): number {
  const x = randomBuffer(be, m * k);
  const w32 = Float32Array.from({ length: n * k }, () => rng.normal());
  const w = be.alloc(wDtype, n * k);
  be.upload(w, fromFloatArray(w32, wDtype));
  const y = be.alloc('f32', m * n);
  const ms = bestMs(() => be.matmul(x, w, y, { batch: 1, m, n, k, transA: false, transB: stored === 'nk', alpha: 1, beta: 0, strideA: 0, strideB: 0 }), reps);
  for (const b of [x, w, y]) be.free(b);
  return ms;
}

/** A linear layer with a bf16 weight (a `--dtype bf16` model): read directly, widened per call, and f32 for reference. */
async function benchBf16Weight(wasm: WasmBackend): Promise<Record<string, unknown>> {
  const widening = await WasmBackend.create({ threads: wasm.threads, native16: false });
  console.log(`\n${pad('x·Wᵀ, W 4096×4096', 34)} ${pad('W f32', 12)} ${pad('W f32 packed', 14)} ${pad('W bf16 read', 14)} ${pad('W bf16 widened', 16)} read / f32   widened / read`);
  const out: Record<string, unknown> = {};
  try {
    for (const m of [1, 512]) {
      const [n, k] = [4096, 4096];
      const reps = m === 1 ? 20 : 3;
      const f32 = linearMs(wasm, m, n, k, 'f32', reps);
      const packed = linearMs(wasm, m, n, k, 'f32', reps, 'kn');
      const read = linearMs(wasm, m, n, k, 'bf16', reps);
      const widened = linearMs(widening, m, n, k, 'bf16', reps);
      console.log(`${pad(m === 1 ? 'm = 1 (decoding one token)' : `m = ${m} (a block of tokens)`, 34)} ${pad(`${f32.toFixed(2)} ms`, 12)} ${pad(`${packed.toFixed(2)} ms`, 14)} ` +
        `${pad(`${read.toFixed(2)} ms`, 14)} ${pad(`${widened.toFixed(2)} ms`, 16)} ${(read / f32).toFixed(2)}×        ${(widened / read).toFixed(2)}×`);
      out[`m${m}`] = { f32Ms: f32, f32PackedMs: packed, bf16ReadMs: read, bf16WidenedMs: widened };
    }
  } finally {
    await widening.dispose();
  }
  return out;
}

// ---- 2. attention -----------------------------------------------------------------------

function attentionArgs(N: number, mask: AttentionMask): AttentionArgs {
  return { B: 1, Nq: N, Nk: N, kvStride: N, H: 8, Hkv: 8, D: 64, scale: 1 / 8, qOffset: 0, mask };
}

/** Forward and backward ms of one attention call. */
function attentionMs(be: Backend, g: AttentionArgs, reps: number): { fwd: number; bwd: number } {
  const n = g.B * g.Nq * g.H * g.D;
  const [q, k, v, dout] = [0, 1, 2, 3].map(() => randomBuffer(be, n)) as [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer];
  const [out, dq, dk, dv] = [0, 1, 2, 3].map(() => be.alloc('f32', n)) as [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer];
  const lse = be.alloc('f32', g.B * g.H * g.Nq);
  const fwd = bestMs(() => be.attention(q, k, v, out, lse, g), reps);
  const bwd = bestMs(() => be.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, g), reps);
  for (const b of [q, k, v, dout, out, dq, dk, dv, lse]) be.free(b);
  return { fwd, bwd };
}

async function checkAttention(be: Backend): Promise<number> {
  const g: AttentionArgs = { B: 1, Nq: 150, Nk: 150, kvStride: 150, H: 4, Hkv: 2, D: 64, scale: 0.125, qOffset: 0, mask: { kind: 's2', form: 'segmented', group: 50 } };
  const nq = 150 * 4 * 64, nk = 150 * 2 * 64;
  const host = [nq, nk, nk, nq].map((n) => Float32Array.from({ length: n }, () => rng.normal()));
  const res: Array<Array<ArrayLike<number>>> = [];
  for (const b of [be, cpuBackend()]) {
    const [q, k, v, dout] = host.map((h) => { const x = b.alloc('f32', h.length); b.upload(x, h); return x; }) as [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer];
    const [out, dq] = [b.alloc('f32', nq), b.alloc('f32', nq)];
    const [dk, dv] = [b.alloc('f32', nk), b.alloc('f32', nk)];
    const lse = b.alloc('f32', 4 * 150);
    b.attention(q, k, v, out, lse, g);
    b.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, g);
    res.push([await b.download(out), await b.download(dq), await b.download(dk), await b.download(dv)] as Array<ArrayLike<number>>);
    for (const x of [q, k, v, dout, out, dq, dk, dv, lse]) b.free(x);
  }
  return Math.max(...res[0]!.map((a, i) => maxRelDiff(a, res[1]![i]!)));
}

async function benchAttention(wasm: WasmBackend): Promise<void> {
  console.log(`\n## fused attention, forward + backward (8 heads, head dim 64, f32)   [checked: rel ${(await checkAttention(wasm)).toExponential(1)}]`);
  console.log(`${pad('tokens', 8)} ${pad('dense causal ms (fwd + bwd)', 32)} ${pad('S² G=N/4 ms (fwd + bwd)', 30)} dense / S²`);
  const out: Record<string, unknown> = {};
  for (const N of quick ? [1024, 4096] : [1024, 4096, 16384]) {
    const reps = N <= 1024 ? 5 : N <= 4096 ? 2 : 0;
    const d = attentionMs(wasm, attentionArgs(N, { kind: 'causal' }), reps);
    const s = attentionMs(wasm, attentionArgs(N, { kind: 's2', form: 'segmented', group: N / 4 }), reps);
    const [dt, st] = [d.fwd + d.bwd, s.fwd + s.bwd];
    console.log(`${pad(String(N), 8)} ${pad(`${f1(dt)} (${f1(d.fwd)} + ${f1(d.bwd)})`, 32)} ${pad(`${f1(st)} (${f1(s.fwd)} + ${f1(s.bwd)})`, 30)} ${(dt / st).toFixed(2)}×`);
    out[N] = { dense: d, s2: s };
  }
  results.attention = out;
}

// ---- 3–5. training ----------------------------------------------------------------------

const MODEL = SMALL_LLAMA;

/** One timed LongLoRA training step on the current backend (after a short warm-up step). */
function trainingStep(be: Backend, N: number, mask: AttentionMask, precision: Precision, lossChunkRows?: number): Promise<TimedStep> {
  return timedTrainingStep(be, smallLlamaConfig(N), Int32Array.from({ length: N }, () => rng.int(MODEL.vocab)), mask, precision, lossChunkRows);
}

interface TorchResult { seconds: number; tokens_per_second: number; loss: number; error?: string }

function torchAvailable(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch { return false; }
}

const torchScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'wasm_torch.py');

function torchStep(N: number, attn: 'dense' | 's2', threads: number): TorchResult {
  try {
    const out = execFileSync('/usr/bin/python3', [torchScript, '--seq', String(N), '--attn', attn, '--threads', String(threads)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
    return JSON.parse(out.trim().split('\n').at(-1)!) as TorchResult;
  } catch (e) {
    return { seconds: NaN, tokens_per_second: NaN, loss: NaN, error: (e as Error).message.split('\n')[0] };
  }
}

/** PyTorch's own matmul speed on this machine (its BLAS decides the training ratio). */
function torchMatmulGflops(threads: number): number {
  const code = `import torch, time\ntorch.set_num_threads(${threads})\na = torch.randn(1024, 1024); b = torch.randn(1024, 1024); a @ b\n` +
    'best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(3))\nprint(2 * 1024 ** 3 / best / 1e9)';
  try { return Number(execFileSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' }).trim()); } catch { return NaN; }
}

/**
 * Training tokens/s and peak memory: S²-Attn at 4k…32k (the memory series) and dense
 * attention at 4k and 16k, each one timed step; PyTorch's step beside it where asked.
 */
async function benchTraining(wasm: WasmBackend): Promise<void> {
  const torch = !flags['skip-torch'] && torchAvailable();
  const torchLengths = new Set(flags['torch-long'] ? [4096, 16384] : [4096]);
  console.log(`\n## training step: ${MODEL.layers} layers, hidden ${MODEL.hidden}, MLP ${MODEL.intermediate}, ${MODEL.heads} heads, vocab ${MODEL.vocab}; ` +
    'LoRA r=8 on q,k,v,o + embed + norm; activation checkpointing; AdamW; one sequence per step');
  if (torch) {
    console.log(`PyTorch (bench/wasm_torch.py, same step, ${wasm.threads} threads) at ${[...torchLengths].join(', ')} tokens; ` +
      `its 1024³ matmul here: ${f1(torchMatmulGflops(wasm.threads))} GFLOP/s`);
  } else console.log(flags['skip-torch'] ? '(PyTorch skipped)' : '(PyTorch not importable by /usr/bin/python3: no comparison)');
  // 'bf16-widened': bf16 activations on a second backend created with native16: false,
  // where every 16-bit operand goes through f32 copies (the reference for the native kernels)
  const precisions = (flags.precision ?? 'f32').split(',');
  for (const p of precisions) if (!PRECISIONS.includes(p as Precision) && p !== 'bf16-widened') throw new Error(`--precision: ${p} is not one of ${PRECISIONS.join(', ')}, bf16-widened`);
  // (the step makes its ids on the current backend, so the widening one becomes current for it)
  if (precisions.includes('bf16-widened')) registerBackend('wasm-widened', -1, () => WasmBackend.create({ threads: wasm.threads, native16: false }));
  const backendFor = async (p: string): Promise<Backend> => setBackend(p === 'bf16-widened' ? 'wasm-widened' : 'wasm');
  if (precisions.length > 1) console.log(`activations stored in ${precisions.join(', ')} (--precision); ratios against the first in the same run`);
  // --loss-chunk 1024,auto: rows of the loss head at once (auto: lossChunkRows(V)), compared in the same run
  const lossChunks = (flags['loss-chunk'] ?? 'auto').split(',').map((c) => {
    if (c === 'auto') return undefined;
    if (!/^\d+$/.test(c) || Number(c) < 1) throw new Error(`--loss-chunk: ${c} is not a number of rows or auto`);
    return Number(c);
  });
  const variants = precisions.flatMap((precision) => lossChunks.map((chunk) => ({ precision, chunk })));
  const chunkName = (c: number | undefined): string => (c === undefined ? `auto (${lossChunkRows(MODEL.vocab)})` : String(c));
  if (lossChunks.length > 1) console.log(`loss head in chunks of ${lossChunks.map(chunkName).join(', ')} rows (--loss-chunk); ratios against the first in the same run`);
  console.log(`${pad('tokens', 8)} ${pad('attention', 12)} ${pad('act.', 12)} ${pad('tokens/s', 10)} ${pad('step s', 8)} ${pad('peak MiB', 10)} ${pad('above weights', 14)} ${pad('MiB / 1k tok', 13)} ${torch ? 'torch tokens/s   wasm / torch' : ''}`);
  const s2 = (N: number): AttentionMask => ({ kind: 's2', form: 'segmented', group: N / 4 });
  const runs: Array<[number, 's2' | 'dense']> = quick
    ? [[2048, 's2'], [4096, 's2'], [8192, 's2'], [4096, 'dense']]
    : [[4096, 's2'], [8192, 's2'], [16384, 's2'], [32768, 's2'], [4096, 'dense'], [16384, 'dense']];
  const keep = flags['train-lengths'] ? new Set(flags['train-lengths'].split(',').map(Number)) : null;
  const kinds = flags['train-attention'] ? new Set(flags['train-attention'].split(',')) : null;
  const out: Record<string, unknown> = {};
  for (const [N, attn] of runs.filter(([n, a]) => (!keep || keep.has(n)) && (!kinds || kinds.has(a)))) {
    let first: TimedStep | null = null;
    for (const { precision, chunk } of variants) {
      const tag = `${precision}${lossChunks.length > 1 ? `/${chunk ?? 'auto'}` : ''}`;
      const key = `${N} ${attn}${variants.length > 1 ? ` ${tag}` : ''}`;
      const label = `${pad(String(N), 8)} ${pad(attn === 's2' ? 'S² G=N/4' : 'dense', 12)} ${pad(tag, 12)}`;
      let w: TimedStep;
      try {
        w = await trainingStep(await backendFor(precision), N, attn === 's2' ? s2(N) : { kind: 'causal' }, precision === 'bf16-widened' ? 'bf16' : precision as Precision, chunk);
      } catch (e) {
        console.log(`${label} failed: ${(e as Error).message}`);
        out[key] = { error: (e as Error).message };
        continue;
      }
      const t = torch && torchLengths.has(N) && !first ? torchStep(N, attn, wasm.threads) : null;
      const tcol = t ? (t.error ? `failed: ${t.error}` : `${pad(f1(t.tokens_per_second), 16)} ${(w.tokensPerSecond / t.tokens_per_second).toFixed(2)}×`) : '';
      const rcol = first ? `vs ${variants[0]!.precision}${lossChunks.length > 1 ? `/${variants[0]!.chunk ?? 'auto'}` : ''}: memory above weights ${(w.aboveWeightsMiB / first.aboveWeightsMiB).toFixed(2)}×, tokens/s ${(w.tokensPerSecond / first.tokensPerSecond).toFixed(2)}×` : '';
      console.log(`${label} ${pad(f1(w.tokensPerSecond), 10)} ${pad(w.seconds.toFixed(1), 8)} ` +
        `${pad(f1(w.peakMiB), 10)} ${pad(f1(w.aboveWeightsMiB), 14)} ${pad(f1(w.aboveWeightsMiB / (N / 1024)), 13)} ${tcol}${rcol}`);
      out[key] = { wasm: w, torch: t };
      first ??= w;
    }
  }
  results.train = out;
  await setBackend('wasm');
}

// ---- 4. decoding with a 4-bit (NF4) base -----------------------------------------------

/** Best ms of `reps` calls of a tensor op (after a warm-up), the result freed each time. */
function bestTensorMs(fn: () => Tensor, reps: number): number {
  return bestMs(() => noGrad(fn).dispose(), reps);
}

/**
 * One generated token's x·Wᵀ (m = 1) through a linear layer whose weight is f32, bf16 or
 * NF4 — NF4 both expanded to an f32 copy per call and then multiplied (what a packed layer
 * did before the fused kernel) and through the fused kernel — and whole-model greedy
 * decoding of a Llama with its layers in f32, bf16 and NF4.
 */
async function benchDecode(wasm: WasmBackend): Promise<void> {
  const layerShapes: Array<[string, number, number]> = quick
    ? [['4096 × 4096 (q/o proj)', 4096, 4096]]
    : [['4096 × 4096 (q/o proj)', 4096, 4096], ['11008 × 4096 (MLP up)', 11008, 4096], ['4096 × 11008 (MLP down)', 4096, 11008]];
  console.log(`\n## decoding: one row of x·Wᵀ (best of 20 calls)`);
  console.log(`${pad('W (n × k)', 26)} ${pad('f32', 10)} ${pad('bf16', 10)} ${pad('NF4 expanded', 14)} ${pad('NF4 fused', 11)} expanded / fused   fused / bf16`);
  const layers: Record<string, unknown> = {};
  for (const [name, n, k] of layerShapes) {
    const w32 = Float32Array.from({ length: n * k }, () => 0.02 * rng.normal());
    const x = fromHost(Float32Array.from({ length: k }, () => rng.normal()), [1, k], 'f32', wasm).keep();
    const wf = fromHost(w32, [n, k], 'f32', wasm).keep();
    const wb = fromHost(fromFloatArray(w32, 'bf16'), [n, k], 'bf16', wasm).keep();
    const q = Nf4Weight.quantize(w32, [n, k], { backend: wasm });
    const expanded = (): Tensor => tidy(() => linear(x, q.dequantize('f32')));
    const [a, b] = [noGrad(() => q.linear(x)), noGrad(expanded)];
    const same = maxRelDiff(await a.floats(), await b.floats());
    a.dispose(); b.dispose();
    if (same !== 0) throw new Error(`decoding ${name}: the fused NF4 product differs from the expanded one (rel ${same})`);
    const ms = {
      f32: bestTensorMs(() => linear(x, wf), 20),
      bf16: bestTensorMs(() => linear(x, wb), 20),
      nf4Expanded: bestTensorMs(expanded, 20),
      nf4Fused: bestTensorMs(() => q.linear(x), 20),
    };
    console.log(`${pad(name, 26)} ${pad(`${ms.f32.toFixed(2)} ms`, 10)} ${pad(`${ms.bf16.toFixed(2)} ms`, 10)} ${pad(`${ms.nf4Expanded.toFixed(2)} ms`, 14)} ` +
      `${pad(`${ms.nf4Fused.toFixed(2)} ms`, 11)} ${pad(`${(ms.nf4Expanded / ms.nf4Fused).toFixed(2)}×`, 18)} ${(ms.nf4Fused / ms.bf16).toFixed(2)}×`);
    layers[name] = ms;
    for (const t of [x, wf, wb]) t.dispose();
    q.dispose();
  }
  // Sampling one token (the official temperature 0.6 and top-p 0.9) on the host: the
  // candidates sorted only at their head, against sorting the whole vocabulary (the previous code).
  // Logits 3·N(0, 1): a few hundred tokens in the nucleus (a trained model's is often
  // smaller; a random model's spans most of the vocabulary, and then both sort it all).
  console.log('\n## sampling one token on the host (temperature 0.6, top-p 0.9, logits 3·N(0, 1); median of 15)');
  console.log(`${pad('vocabulary', 12)} ${pad('nucleus', 9)} ${pad('whole vocabulary sorted', 25)} ${pad('head sorted', 13)} ratio`);
  const sampling: Record<string, unknown> = {};
  for (const V of [32000, 128256]) {
    const logits = Float32Array.from({ length: V }, () => 3 * rng.normal());
    const s = { temperature: 0.6, topP: 0.9, topK: 0 };
    const fullSort = (): number[] => {
      const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
      const w = order.map((i) => Math.exp((logits[i]! - logits[order[0]!]!) / s.temperature));
      const z = w.reduce((a, b) => a + b, 0);
      let cum = 0, n = 0;
      while (n < V && (n === 0 || cum < s.topP)) cum += w[n++]! / z;
      return order.slice(0, n);
    };
    const head = (): number[] => candidates(logits, s).ids;
    if (fullSort().join() !== head().join()) throw new Error(`sampling at V ${V}: the candidates differ from the full sort`);
    const med = (f: () => unknown): number => { const ts: number[] = []; for (let r = 0; r < 15; r++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); } return ts.sort((a, b) => a - b)[7]!; };
    const [a, b] = [med(fullSort), med(head)];
    const nucleus = head().length;
    console.log(`${pad(String(V), 12)} ${pad(String(nucleus), 9)} ${pad(`${a.toFixed(2)} ms`, 25)} ${pad(`${b.toFixed(2)} ms`, 13)} ${(a / b).toFixed(1)}×`);
    sampling[V] = { nucleus, fullSortMs: a, headSortMs: b };
  }

  // One token's attention over a KV cache (TinyLlama's heads: 32 query heads, 4 kv heads, D 64).
  console.log('\n## decoding: one token\'s attention over a KV cache (32 query heads, 4 kv heads, D 64; median of 30 calls)');
  console.log(`${pad('cache', 10)} ${pad('f32 cache', 12)} bf16 cache`);
  const attn: Record<string, unknown> = {};
  for (const N of quick ? [4096] : [4096, 16384]) {
    const [H, Hkv, D] = [32, 4, 64];
    const g: AttentionArgs = { B: 1, Nq: 1, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / 8, qOffset: N - 1, mask: { kind: 'causal' } };
    const ms: Record<string, number> = {};
    for (const dt of ['f32', 'bf16'] as const) {
      const q = randomBuffer(wasm, H * D);
      const [k, v] = [0, 1].map(() => { const b = wasm.alloc(dt, N * Hkv * D); wasm.upload(b, fromFloatArray(Float32Array.from({ length: N * Hkv * D }, () => rng.normal()), dt)); return b; }) as [DeviceBuffer, DeviceBuffer];
      const [o, l] = [wasm.alloc('f32', H * D), wasm.alloc('f32', H)];
      const ts: number[] = [];
      for (let r = 0; r < 31; r++) { const t0 = performance.now(); wasm.attention(q, k, v, o, l, g); if (r > 0) ts.push(performance.now() - t0); }
      ms[dt] = ts.sort((a, b) => a - b)[15]!;
      for (const b of [q, k, v, o, l]) wasm.free(b);
    }
    console.log(`${pad(String(N), 10)} ${pad(`${ms.f32!.toFixed(2)} ms`, 12)} ${ms.bf16!.toFixed(2)} ms`);
    attn[N] = ms;
  }
  // A TinyLlama-width model with fewer layers: greedy decoding from a 16-token prompt.
  const layersN = quick ? 2 : 4;
  const newTokens = quick ? 8 : 32;
  const config = parseLlamaConfig({
    model_type: 'llama', vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: layersN,
    num_attention_heads: 32, num_key_value_heads: 4, max_position_embeddings: 2048, rms_norm_eps: 1e-5,
  }, 'bench');
  console.log(`\n## decoding: a Llama (hidden 2048, MLP 5632, 32/4 heads, ${layersN} layers, vocab 32000), greedy, ${newTokens} tokens after 16`);
  console.log(`${pad('decoder layers', 16)} ${pad('tokens/s', 10)} ${pad('vs f32', 8)} weights MiB`);
  const hostCache = new Map<string, Float32Array>();
  const prompt = Array.from({ length: 16 }, (_, i) => (i * 977 + 13) % 32000);
  const models: Record<string, unknown> = {};
  let f32Rate = 0;
  for (const variant of ['f32', 'bf16', 'nf4'] as const) {
    const before = wasm.memory().bytes;
    const model = randomLlama(config, { seed: 1, dtype: variant === 'bf16' ? 'bf16' : 'f32', backend: wasm, hostCache });
    if (variant === 'nf4') await quantizeModel(model);
    const weightsMiB = (wasm.memory().bytes - before) / 2 ** 20;
    await generate(model, prompt, { ...GREEDY, maxNewTokens: 2 }); // warm-up
    const r = await generate(model, prompt, { ...GREEDY, maxNewTokens: newTokens });
    model.dispose();
    f32Rate ||= r.tokensPerSecond;
    console.log(`${pad(variant === 'nf4' ? 'NF4 (fused)' : variant, 16)} ${pad(f1(r.tokensPerSecond), 10)} ${pad(`${(r.tokensPerSecond / f32Rate).toFixed(2)}×`, 8)} ${f1(weightsMiB)}`);
    models[variant] = { tokensPerSecond: r.tokensPerSecond, weightsMiB };
  }
  // The KV cache at a long prompt: f32 against 16 bits (the same f32 model).
  const promptN = quick ? 512 : 4096;
  console.log(`\n## decoding after a ${promptN}-token prompt (same model, f32 weights): the KV cache in f32, bf16 and f16, ${newTokens} new tokens`);
  console.log(`${pad('KV cache', 10)} ${pad('tokens/s', 10)} ${pad('prefill s', 11)} ${pad('cache MiB', 11)} peak above weights MiB   same tokens as f32`);
  const model = randomLlama({ ...config, maxPositionEmbeddings: promptN + newTokens }, { seed: 1, backend: wasm, hostCache });
  const long = Array.from({ length: promptN }, (_, i) => (i * 977 + 13) % 32000);
  const caches: Record<string, unknown> = {};
  let f32Ids: number[] = [];
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    const g = new Generator(model, { kvCacheDtype: dtype });
    const base = wasm.memory().bytes;
    wasm.resetPeak();
    const r = await g.generate(long, { ...GREEDY, maxNewTokens: newTokens });
    const peak = (wasm.memory().peakBytes - base) / 2 ** 20;
    const cacheMiB = (wasm.memory().bytes - base) / 2 ** 20; // what the generator keeps: its cache
    g.dispose();
    if (dtype === 'f32') f32Ids = r.ids;
    const same = r.ids.filter((id, i) => id === f32Ids[i]).length;
    console.log(`${pad(dtype, 10)} ${pad(f1(r.tokensPerSecond), 10)} ${pad(r.prefillSeconds.toFixed(1), 11)} ${pad(f1(cacheMiB), 11)} ${pad(f1(peak), 23)} ${same} of ${r.ids.length}`);
    caches[dtype] = { tokensPerSecond: r.tokensPerSecond, prefillSeconds: r.prefillSeconds, cacheMiB, peakAboveWeightsMiB: peak, sameTokens: same };
  }
  // The same prompt at once and in pieces (the default 512, and 128): prefill time and the peak.
  console.log(`\n## the ${promptN}-token prompt at once and in pieces (f32 cache, ${newTokens} new tokens)`);
  console.log(`${pad('prefill chunk', 15)} ${pad('prefill s', 11)} ${pad('peak above weights MiB', 24)} same tokens as at once`);
  const prefill: Record<string, unknown> = {};
  let wholeIds: number[] = [];
  for (const chunk of [promptN, 512, 128]) {
    const g = new Generator(model, { prefillChunk: chunk });
    const base = wasm.memory().bytes;
    wasm.resetPeak();
    const r = await g.generate(long, { ...GREEDY, maxNewTokens: newTokens });
    const peak = (wasm.memory().peakBytes - base) / 2 ** 20;
    g.dispose();
    if (chunk === promptN) wholeIds = r.ids;
    const same = r.ids.filter((id, i) => id === wholeIds[i]).length;
    console.log(`${pad(chunk === promptN ? `${chunk} (at once)` : String(chunk), 15)} ${pad(r.prefillSeconds.toFixed(1), 11)} ${pad(f1(peak), 24)} ${same} of ${r.ids.length}`);
    prefill[chunk] = { prefillSeconds: r.prefillSeconds, peakAboveWeightsMiB: peak, sameTokens: same };
  }
  model.dispose();
  results.decode = {
    layers, sampling, attention: attn, model: { config: { hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, layers: layersN, vocab: 32000 }, newTokens, ...models },
    kvCache: { promptTokens: promptN, ...caches }, prefill,
  };
}

// ---- main -------------------------------------------------------------------------------

const wasm = await getBackend('wasm') as WasmBackend;
await setBackend('wasm');
const single = await WasmBackend.create({ threads: 1 });
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
console.log(`# wasm backend benchmark — ${new Date().toISOString().slice(0, 10)}`);
console.log(`machine: ${cpu}, ${os.availableParallelism()} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ` +
  `wasm build: ${wasm.flavour} SIMD; ${wasm.threads} threads${quick ? '; --quick' : ''}`);
results.machine = { cpu, cores: os.availableParallelism(), node: process.version, flavour: wasm.flavour, threads: wasm.threads };
if (sections.has('matmul')) await benchMatmul(wasm, single);
await single.dispose();
if (sections.has('attention')) await benchAttention(wasm);
if (sections.has('train')) await benchTraining(wasm);
if (sections.has('decode')) await benchDecode(wasm);
if (flags.json) fs.writeFileSync(flags.json, JSON.stringify(results, null, 2));
await wasm.dispose();
