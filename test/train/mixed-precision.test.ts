/**
 * Mixed precision: activations stored in bf16 or f16 (`precision`), f32 compute, f32
 * master weights and gradients, dynamic loss scaling for f16.
 *
 * Tolerances from first principles. Every op that writes an activation rounds it once to
 * 16 bits, a relative change ≤ u (bf16: 2^-9, f16: 2^-11). Along the path to a logit of
 * the 2-layer tiny model there are K = 32 such writes: the embedding cast, 15 per layer
 * (input norm; q, k, v; RoPE of q and k; attention; o; residual add; post norm; gate, up;
 * SwiGLU; down; residual add) and the final norm. Each stage passes a relative
 * perturbation through with a gain of about 1 (RMSNorm rescales the residual stream), so
 * the worst case is K·u of the logit scale; the measurement is printed. The backward pass
 * rounds every activation gradient again on the way back, so gradients get 2K·u.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { registerBackend, setBackend } from '../../src/backend/registry.js';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backend/webgpu/webgpu.js';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import { attnSgmPlan } from '../../src/backend/webgpu/kernels/attention-sgm.js';
import { LongLoraError } from '../../src/errors.js';
import type { Precision } from '../../src/models/llama/model.js';
import { backward, noGrad, zeroGrad } from '../../src/tensor/autograd.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { AdamW } from '../../src/train/optim.js';
import { LossScaler } from '../../src/train/loss-scale.js';
import { trainStep } from '../../src/train/step.js';
import { readState } from '../../src/train/state.js';
import { Trainer } from '../../src/train/trainer.js';
import { testBackends } from '../helpers/backends.js';
import { assertClose, diff } from '../helpers/compare.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';
import { sink, tinyConfig } from '../helpers/train.js';

const U: Record<Exclude<Precision, 'f32'>, number> = { bf16: 2 ** -9, f16: 2 ** -11 };
const K = 1 + 2 * 15 + 1;
/** Below this the 16-bit rounding would not really have happened (f32 noise is ~1e-6). */
const MIN_EFFECT = 1e-4;
const fresh = tempFolders('mixed-precision');

describe('mixed precision: the model', () => {
  for (const precision of ['bf16', 'f16'] as const) {
    for (const name of ['cpu', 'wasm', 'webgpu']) {
      it(`${precision} activations on ${name}: logits within K·u = ${(K * U[precision]).toExponential(1)} of f32, every gradient f32 within 2K·u`, async (t) => {
        const tb = (await testBackends()).find((b) => b.name === name);
        if (!tb?.backend) { t.skip(`backend ${name} unavailable: ${tb?.skip}`); return; }
        const be = await setBackend(name);
        const log = (s: string): void => t.diagnostic(s);
        const live = be.memory().buffers;
        const { model, ids, labels, B, N } = await tinyModel();
        try {
          const f32 = await logitsOf(model, ids, B, N);
          const mixed = await logitsOf(model, ids, B, N, { precision });
          const d = assertClose(mixed, f32, K * U[precision], `${precision} vs f32 logits`, log);
          log(`= ${(d.rel / U[precision]).toFixed(2)}·u`);
          assert.ok(d.rel > MIN_EFFECT, `the 16-bit rounding should show (rel ${d.rel.toExponential(2)})`);

          const params = model.namedParameters();
          for (const [, p] of params) p.requireGrad();
          const grads = async (p: Precision): Promise<Array<Float32Array | Float64Array>> => {
            tidy(() => backward(model.loss(idsTensor(ids, [B, N]), labels, { precision: p }).loss));
            const out: Array<Float32Array | Float64Array> = [];
            for (const [n, w] of params) {
              assert.ok(w.grad, `${n} has a gradient (${p})`);
              assert.equal(w.grad.dtype, 'f32', `${n}: the gradient of an f32 master is f32 (${p})`);
              out.push(await w.grad.floats());
            }
            zeroGrad(params.map(([, w]) => w));
            return out;
          };
          const ref = await grads('f32');
          const got = await grads(precision);
          let worst = { rel: 0, name: '' };
          got.forEach((g, i) => {
            const r = diff(g, ref[i]!).rel;
            if (r > worst.rel) worst = { rel: r, name: params[i]![0] };
          });
          log(`worst gradient: ${worst.name}, rel ${worst.rel.toExponential(2)} = ${(worst.rel / U[precision]).toFixed(2)}·u (tol ${2 * K}·u)`);
          assert.ok(worst.rel <= 2 * K * U[precision], `${worst.name}: rel ${worst.rel} > 2K·u`);
        } finally {
          model.dispose();
        }
        assert.equal(be.memory().buffers, live, 'every buffer freed (widened scratch included)');
      });
    }
  }

  it('LongLoRA on an f16 base with f16 activations on the subgroup-matrix matmul and attention (emulated where the adapter lacks them): logits within K·u and every gradient within 2K·u of the CPU', async (t) => {
    let gpu: WebGpuBackend;
    try {
      // The adapter's own subgroup matrices where it has them (a GPU), else their emulation.
      gpu = await createWebGpuBackend({ subgroupMatrix: true });
      if (!gpu.sgm) {
        gpu.destroy();
        gpu = await createWebGpuBackend({ subgroupMatrix: true, emulateSubgroupMatrix: true });
      }
    } catch (e) {
      t.skip(`no WebGPU adapter: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (!gpu.sgm) { gpu.destroy(); t.skip(`no subgroup-matrix plan: ${gpu.subgroupMatrixNote}`); return; }
    t.diagnostic(gpu.describe());
    registerBackend('webgpu-subgroup-matrix-test', -1, () => gpu);
    const log = (s: string): void => t.diagnostic(s);
    /**
     * Logits and the gradients of what LongLoRA trains (LoRA on q, k, v, o, embeddings and
     * norms, as f32 masters; the frozen projections stay f16) on one backend.
     */
    const run = async (name: string): Promise<{ logits: Float32Array | Float64Array; grads: Array<Float32Array | Float64Array>; names: string[]; headDim: number }> => {
      await setBackend(name);
      const { model, ids, labels, B, N } = await tinyModel('tiny-llama', { dtype: 'f16' });
      try {
        applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(3), { training: true, rng: new Rng(4) });
        setTrainable(model, 'longlora', ['embed', 'norm']);
        const logits = await logitsOf(model, ids, B, N, { precision: 'f16' });
        const params = model.namedParameters().filter(([, p]) => p.requiresGrad);
        tidy(() => backward(model.loss(idsTensor(ids, [B, N]), labels, { precision: 'f16' }).loss));
        const grads: Array<Float32Array | Float64Array> = [];
        for (const [n, w] of params) {
          assert.ok(w.grad, `${n} has a gradient on ${name}`);
          grads.push(await w.grad.floats());
        }
        zeroGrad(params.map(([, w]) => w));
        return { logits, grads, names: params.map(([n]) => n), headDim: model.config.headDim };
      } finally {
        model.dispose();
      }
    };
    try {
      const want = await run('cpu');
      const got = await run('webgpu-subgroup-matrix-test');
      // The frozen projections forward (x · Wᵀ) and backward (dY · W), and attention forward
      // and backward, ran on the subgroup-matrix kernels (whose P and dS, multiplied in f16,
      // add a rounding or two per layer: inside K, which counts 15, and 2K).
      const kernels = gpu.preparedKernels().filter((k) => k.startsWith('matmul-sgm:') || k.startsWith('attnSgm'));
      log(`subgroup-matrix kernels: ${kernels.join(', ')}`);
      assert.ok(kernels.some((k) => k.startsWith('matmul-sgm:false:true:')), 'x · Wᵀ on subgroup matrices');
      assert.ok(kernels.some((k) => k.startsWith('matmul-sgm:false:false:')), 'dY · W on subgroup matrices');
      // (on blocks the head dim is a multiple of: the emulation's 8×8×8 take this model's 8, a GPU's 16×16×16 do not)
      if (attnSgmPlan(gpu.sgm!, got.headDim, gpu.limits.workgroupStorage).plan) {
        for (const kind of ['attnSgm:', 'attnSgmDq:', 'attnSgmDkv:']) assert.ok(kernels.some((k) => k.startsWith(kind)), `${kind} attention on subgroup matrices`);
      } else {
        log(`attention stayed on the general kernels: ${attnSgmPlan(gpu.sgm!, got.headDim, gpu.limits.workgroupStorage).reason}`);
      }
      const d = assertClose(got.logits, want.logits, K * U.f16, 'logits, subgroup matrices vs CPU', log);
      log(`= ${(d.rel / U.f16).toFixed(2)}·u`);
      let worst = { rel: 0, name: '' };
      got.grads.forEach((g, i) => {
        const r = diff(g, want.grads[i]!).rel;
        if (r > worst.rel) worst = { rel: r, name: got.names[i]! };
      });
      log(`worst gradient: ${worst.name}, rel ${worst.rel.toExponential(2)} = ${(worst.rel / U.f16).toFixed(2)}·u (tol ${2 * K}·u)`);
      assert.ok(worst.rel <= 2 * K * U.f16, `${worst.name}: rel ${worst.rel} > 2K·u`);
    } finally {
      await setBackend('cpu');
      gpu.destroy();
    }
  });

  it('bf16 roughly halves the activation memory the backward pass keeps (cpu)', async (t) => {
    const be = await setBackend('cpu');
    const { model } = await tinyModel();
    const [B, N] = [2, 64];
    const rng = new Rng(3);
    const ids = Int32Array.from({ length: B * N }, () => rng.int(model.config.vocabSize));
    for (const p of model.parameters()) p.requireGrad();
    const kept: Record<string, number> = {};
    for (const precision of ['f32', 'bf16'] as const) {
      const before = be.memory().bytes;
      tidy(() => {
        const r = model.loss(idsTensor(ids, [B, N]), ids, { precision });
        kept[precision] = be.memory().bytes - before; // the tape's saved tensors (and the loss)
        backward(r.loss);
      });
      zeroGrad(model.parameters());
    }
    const ratio = kept.bf16! / kept.f32!;
    t.diagnostic(`bytes held for the backward pass at ${B}×${N} tokens: f32 ${kept.f32}, bf16 ${kept.bf16} (ratio ${ratio.toFixed(3)})`);
    // Activations are half the size. What stays 4 bytes: the per-row statistics (RMSNorm's
    // rstd, attention's log-sum-exp), the token ids, and the final hidden states the loss
    // head keeps in f32 (one [B·N, C] tensor however many layers the model has).
    assert.ok(ratio > 0.5 && ratio < 0.6, `ratio ${ratio}`);
    model.dispose();
  });

  it('refuses 16-bit activations with a KV cache or an f64 model', async () => {
    await setBackend('cpu');
    const { model, ids, B, N } = await tinyModel();
    const cache = model.createCache(B, N);
    assert.throws(() => noGrad(() => tidy(() => model.forward(idsTensor(ids, [B, N]), { cache, precision: 'bf16' }))),
      (e: unknown) => e instanceof LongLoraError && /KV cache in f32/.test(e.message));
    cache.dispose();
    model.dispose();
    const m64 = (await tinyModel('tiny-llama', { dtype: 'f64' })).model;
    assert.throws(() => tidy(() => m64.forward(idsTensor(ids, [B, N]), { precision: 'f16' })),
      (e: unknown) => e instanceof LongLoraError && /f64/.test(e.message));
    m64.dispose();
  });
});

describe('mixed precision: --tensor-cores', () => {
  it('on webgpu the run says whether the tensor cores are used, and trains as without them', async (t) => {
    const tb = (await testBackends()).find((b) => b.name === 'webgpu');
    if (!tb?.backend) { t.skip(`backend webgpu unavailable: ${tb?.skip}`); return; }
    const dir = fresh();
    const run = async (tensorCores: boolean): Promise<{ losses: number[]; log: string }> => {
      const c = tinyConfig(dir, { output: path.join(dir, `tc-${tensorCores}`), backend: 'webgpu', dtype: 'f16', precision: 'f16', steps: 2, tensorCores });
      const out = sink();
      const tr = await Trainer.create(c, { out });
      try { await tr.run(); } finally { tr.dispose(); }
      const losses = fs.readFileSync(path.join(c.output, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
      return { losses, log: out.text() };
    };
    try {
      const plain = await run(false);
      const tc = await run(true);
      const note = tc.log.split('\n').find((l) => l.startsWith('tensor cores:'));
      t.diagnostic(note ?? '(no note)');
      assert.match(note ?? '', /^tensor cores: (on \(.+\) for the base projections and attention|not available \(.+\); f16 matmuls and attention run on the general kernels)$/);
      assert.ok(!plain.log.includes('tensor cores:'), 'no note without --tensor-cores');
      // f32 accumulation on tensor cores against the tiled kernel's f16 sums: close, not equal.
      tc.losses.forEach((l, i) => assert.ok(Math.abs(l - plain.losses[i]!) / plain.losses[i]! < 0.02, `step ${i + 1}: ${l} vs ${plain.losses[i]}`));
    } finally {
      await setBackend('cpu');
    }
  });
});

describe('mixed precision: f16 loss scaling', () => {
  it('the scaler halves on overflow, doubles after growthInterval good steps, and gives up below its floor', () => {
    const s = new LossScaler(1024, 3, 1);
    s.update(true); s.update(true);
    assert.equal(s.scale, 1024);
    s.update(true);
    assert.equal(s.scale, 2048, 'doubled after 3 good steps');
    s.update(false);
    assert.deepEqual(s.state(), { scale: 1024, good: 0 });
    s.update(true); s.update(false);
    assert.deepEqual(s.state(), { scale: 512, good: 0 }, 'an overflow restarts the count');
    const r = new LossScaler(1);
    r.restore({ scale: 4, good: 2 });
    assert.deepEqual(r.state(), { scale: 4, good: 2 });
    const low = new LossScaler(2, 2000, 1);
    low.update(false);
    assert.throws(() => low.update(false), (e: unknown) => e instanceof LongLoraError && /--precision bf16/.test(e.message));
    assert.throws(() => new LossScaler(0), LongLoraError);
  });

  it('a scaled step equals the unscaled one; an overflowing step is skipped and leaves the weights alone', async () => {
    await setBackend('cpu');
    const { model, ids, labels, B, N } = await tinyModel();
    const params = model.namedParameters();
    for (const [, p] of params) p.requireGrad();
    const snapshot = async (): Promise<Float32Array[]> => Promise.all(params.map(async ([, p]) => (await p.floats()) as Float32Array));
    const start = await snapshot();
    const restore = (): void => { params.forEach(([, p], i) => p.backend.upload(p.buffer, start[i]!)); };
    const opts = { mask: { kind: 'causal' } as const, maxGradNorm: 0, checkpointing: false, precision: 'f16' as const };
    const run = async (scaler?: LossScaler): Promise<{ skipped: boolean; after: Float32Array[] }> => {
      restore();
      const optimizer = new AdamW(params, { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
      const r = await trainStep(model, optimizer, [{ ids, labels, B, N }], 1e-3, { ...opts, ...(scaler ? { scaler } : {}) });
      const after = await snapshot();
      optimizer.dispose();
      return { skipped: r.skipped, after };
    };
    const plain = await run();
    const scaler = new LossScaler(2 ** 10);
    const scaled = await run(scaler);
    assert.equal(scaled.skipped, false);
    assert.equal(scaler.scale, 2 ** 10, 'one good step leaves the scale alone');
    // Scaling by a power of two and back is exact except where the scaled f16 gradient
    // rounds differently (a subnormal in the unscaled run): the Adam steps agree closely.
    let worst = 0;
    scaled.after.forEach((w, i) => {
      const moved = diff(plain.after[i]!, start[i]!).maxAbs;
      if (moved > 0) worst = Math.max(worst, diff(w, plain.after[i]!).maxAbs / moved);
    });
    assert.ok(worst < 0.05, `updates with and without scaling agree (worst ${worst})`);
    const huge = new LossScaler(2 ** 126);
    const over = await run(huge);
    assert.equal(over.skipped, true, 'gradients of a loss scaled by 2^126 overflow');
    assert.equal(huge.scale, 2 ** 125, 'the scale halves');
    over.after.forEach((w, i) => assert.deepEqual(w, start[i], `${params[i]![0]} untouched by a skipped step`));
    for (const [, p] of params) assert.equal(p.grad, null, 'gradients cleared after a skipped step');
    model.dispose();
  });

  it('the trainer runs bf16 and f16, logs the loss scale, and keeps it across a resume', async () => {
    const dir = fresh();
    const train = async (over: Parameters<typeof tinyConfig>[1], resume = false): Promise<number[]> => {
      const c = tinyConfig(dir, over);
      const tr = await Trainer.create(c, { out: sink(), resume });
      try { await tr.run(); } finally { tr.dispose(); }
      return fs.readFileSync(path.join(c.output, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
    };
    const f32 = await train({ output: path.join(dir, 'f32') });
    const bf16 = await train({ output: path.join(dir, 'bf16'), precision: 'bf16' });
    assert.equal(bf16.length, f32.length);
    bf16.forEach((l, i) => assert.ok(Math.abs(l - f32[i]!) / f32[i]! < 0.02, `step ${i + 1}: bf16 loss ${l} vs f32 ${f32[i]}`));
    // A bf16 base as well (the frozen weights, the output head among them, stay 16-bit).
    const all16 = await train({ output: path.join(dir, 'bf16-base'), precision: 'bf16', dtype: 'bf16' });
    all16.forEach((l, i) => assert.ok(Math.abs(l - f32[i]!) / f32[i]! < 0.02, `step ${i + 1}: bf16 base + activations loss ${l} vs f32 ${f32[i]}`));
    // An f16 base (what tensor cores take) with f16 activations.
    const all16f = await train({ output: path.join(dir, 'f16-base'), precision: 'f16', dtype: 'f16' });
    all16f.forEach((l, i) => assert.ok(Math.abs(l - f32[i]!) / f32[i]! < 0.02, `step ${i + 1}: f16 base + activations loss ${l} vs f32 ${f32[i]}`));
    const out = path.join(dir, 'f16');
    await train({ output: out, precision: 'f16', steps: 3 });
    const state = readState(path.join(out, 'checkpoint-000003'));
    assert.deepEqual(state.lossScale, { scale: 2 ** 16, good: 3 });
    await train({ output: out, precision: 'f16', steps: 6 }, true);
    const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss_scale?: number });
    assert.equal(lines.length, 6);
    for (const l of lines) assert.equal(l.loss_scale, 2 ** 16);
    assert.deepEqual(readState(path.join(out, 'checkpoint-000006')).lossScale, { scale: 2 ** 16, good: 6 }, 'the count went on from the checkpoint');
  });
});
