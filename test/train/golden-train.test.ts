/**
 * LongLoRA training against PyTorch, step for step (scripts/golden/make_golden_train.py):
 * S²-Attn (the paper's roll pseudocode and the leak-free segmented form), LoRA with
 * trainable embeddings and norms loaded from a PEFT adapter, linear position
 * interpolation by the official rule, gradient accumulation 2, clipping, and 3 AdamW
 * steps with warmup. Every loss, gradient norm, the first step's gradients and the
 * trainable weights after each step must match — on the CPU reference in f64 and f32 and
 * on the wasm and WebGPU backends in f32. The second micro-batch of every step recomputes
 * its layers (activation checkpointing), which must change nothing.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadAdapter } from '../../src/io/peft.js';
import { setTrainable } from '../../src/lora/inject.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { Rng } from '../../src/tensor/random.js';
import { zeroGrad } from '../../src/tensor/autograd.js';
import { cpuBackend, setBackend } from '../../src/backend/registry.js';
import { testBackends } from '../helpers/backends.js';
import { AdamW, clipGradNorm } from '../../src/train/optim.js';
import { lrAt } from '../../src/train/schedule.js';
import { accumulate } from '../../src/train/step.js';
import { assertClose } from '../helpers/compare.js';
import { Golden, goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';

const TOL = { f32: 1e-4, f64: 1e-10 } as const;
const TARGETS = [['cpu', 'f64'], ['cpu', 'f32'], ['wasm', 'f32'], ['webgpu', 'f32']] as const;

for (const form of ['roll', 'segmented'] as const) {
  for (const [backendName, dtype] of TARGETS) {
    describe(`golden training: S²-Attn ${form}, LoRA + embed + norm, ${dtype}${backendName === 'cpu' ? '' : ` on ${backendName}`}`, () => {
      it('matches PyTorch losses, gradients and weights over 3 AdamW steps', async (t) => {
        const tb = (await testBackends()).find((b) => b.name === backendName);
        if (!tb?.backend) { t.skip(`backend ${backendName} unavailable: ${tb?.skip}`); return; }
        const be = await setBackend(backendName);
        const live = be.memory().buffers;
        try {
        const log = (s: string): void => t.diagnostic(s);
        const g = new Golden(`train-s2-${form}`);
        const factor = g.f64('rope_factor')[0]!;
        const model = await loadLlama(goldenDir('tiny-llama-short'), { dtype, ropeScaling: { type: 'linear', factor } });
        loadAdapter(model, path.join(goldenDir(`train-s2-${form}`), 'adapter_init'), { training: true, rng: new Rng(0) });
        const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
        assert.equal(rep.names.length, 22);
        const [steps, accum, B, N] = [3, 2, 2, 16];
        const ids = g.i32('input_ids');
        const mask = { kind: 's2', form, group: N / 4 } as const;
        assertClose(await logitsOf(model, ids.subarray(0, B * N), B, N, { mask }), g.f64('logits0'), TOL[dtype], 'logits of micro-batch 0 under S²', log);

        const schedule = { type: 'constant', lr: 1e-2, warmupSteps: 2, totalSteps: steps } as const;
        const opt = new AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });
        const losses: number[] = [];
        const norms: number[] = [];
        for (let k = 0; k < steps; k++) {
          for (let a = 0; a < accum; a++) {
            const mb = k * accum + a;
            losses.push(await accumulate(model, { ids: ids.subarray(mb * B * N, (mb + 1) * B * N), B, N }, 1 / accum, { mask, checkpointing: a === 1 }));
          }
          if (k === 0) {
            for (const [n, p] of model.namedParameters()) if (p.requiresGrad) assertClose(await p.grad!.floats(), g.f64(`grad_step1.${n}`), TOL[dtype], `step 1 gradient ${n}`, () => {});
            log('step 1 gradients of all 22 trainable tensors match');
          }
          norms.push(await clipGradNorm(model.trainableParameters(), 1.0));
          opt.update(lrAt(schedule, k));
          zeroGrad(model.trainableParameters());
          let worst = 0;
          for (const [n, p] of model.namedParameters()) {
            if (p.requiresGrad) worst = Math.max(worst, assertClose(await p.floats(), g.f64(`step${k + 1}.${n}`), TOL[dtype], `step ${k + 1} ${n}`, () => {}).rel);
          }
          log(`after step ${k + 1}: all trainable weights match, worst rel ${worst.toExponential(2)}`);
        }
        assertClose(losses, g.f64('losses'), TOL[dtype], 'losses of the 6 micro-batches', log);
        assertClose(norms, g.f64('grad_norms'), TOL[dtype], 'gradient norms before clipping', log);
        assertClose([0, 1, 2].map((k) => lrAt(schedule, k)), g.f64('lrs'), 1e-15, 'learning rates', log);
        opt.dispose();
        model.dispose();
        g.close();
        assert.equal(cpuBackend().memory().buffers, 0, 'every buffer freed');
        assert.equal(be.memory().buffers, live, `every ${backendName} buffer freed`);
        } finally {
          await setBackend('cpu');
        }
      });
    });
  }
}
