/**
 * The golden-parity tests (test/models/golden.test.ts, test/train/golden-train.test.ts)
 * on the WebGPU backend in f32: the tiny Llama checkpoints' logits, loss and every
 * gradient against PyTorch's float64 values, and the LongLoRA training step (S²-Attn roll
 * and segmented, LoRA + embeddings + norms, accumulation, clipping, 3 AdamW steps) step
 * for step — with the same tolerances as on the CPU. Every buffer must be freed.
 *
 * Without a WebGPU adapter every test is skipped with the reason.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { getBackend, setBackend } from '../../src/backend/registry.js';
import type { Backend } from '../../src/backend/backend.js';
import { loadAdapter } from '../../src/io/peft.js';
import { setTrainable } from '../../src/lora/inject.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { backward, zeroGrad } from '../../src/tensor/autograd.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { AdamW, clipGradNorm } from '../../src/train/optim.js';
import { lrAt } from '../../src/train/schedule.js';
import { accumulate } from '../../src/train/step.js';
import { assertClose } from '../helpers/compare.js';
import { Golden, goldenDir } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/model.js';

const TOL = 1e-4;

let be: Backend | null = null;
let skip: string | false = false;
try {
  be = await getBackend('webgpu');
  await setBackend('webgpu'); // the training step makes its id tensors on the current backend
} catch (e) {
  skip = `WebGPU unavailable: ${e instanceof Error ? e.message : String(e)}`;
  process.stderr.write(`# WebGPU golden tests skipped: ${skip}\n`);
}

describe('golden parity on webgpu (f32)', { skip }, () => {
  for (const variant of ['tiny-llama', 'tiny-llama-tied']) {
    for (const chunked of [false, true]) {
      it(`${variant}: ${chunked ? 'loss and every gradient with the chunked head + loss' : 'logits, loss and every parameter gradient'}`, async (t) => {
        const log = (s: string): void => t.diagnostic(s);
        const before = be!.memory().buffers;
        const g = new Golden(variant);
        const model = await loadLlama(goldenDir(variant), { dtype: 'f32', backend: be! });
        for (const p of model.parameters()) p.requireGrad();
        const [B, N] = g.shape('input_ids') as [number, number];
        const { loss, logits } = tidy(() => {
          const r = model.loss(idsTensor(g.i32('input_ids'), [B, N], be!), g.i32('labels'), { logits: !chunked });
          backward(r.loss);
          return r;
        });
        if (logits) assertClose(await logits.floats(), g.f64('logits'), TOL, 'logits', log);
        assertClose([await loss.item()], g.f64('loss'), TOL, 'loss', log);
        let worst = 0;
        for (const [name, p] of model.namedParameters()) {
          assert.ok(p.grad, `${name} has a gradient`);
          worst = Math.max(worst, assertClose(await p.grad.floats(), g.f64(`grad.${name}`), TOL, `grad ${name}`, () => {}).rel);
        }
        log(`every parameter gradient matches, worst rel ${worst.toExponential(2)}`);
        zeroGrad(model.parameters());
        loss.dispose();
        logits?.dispose();
        model.dispose();
        g.close();
        assert.equal(be!.memory().buffers, before, 'every buffer freed');
      });
    }
  }

  for (const form of ['roll', 'segmented'] as const) {
    it(`training: S²-Attn ${form}, LoRA + embed + norm, 3 AdamW steps match PyTorch`, async (t) => {
      const log = (s: string): void => t.diagnostic(s);
      const before = be!.memory().buffers;
      const g = new Golden(`train-s2-${form}`);
      const factor = g.f64('rope_factor')[0]!;
      const model = await loadLlama(goldenDir('tiny-llama-short'), { dtype: 'f32', backend: be!, ropeScaling: { type: 'linear', factor } });
      loadAdapter(model, path.join(goldenDir(`train-s2-${form}`), 'adapter_init'), { training: true, rng: new Rng(0) });
      const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
      assert.equal(rep.names.length, 22);
      const [steps, accum, B, N] = [3, 2, 2, 16];
      const ids = g.i32('input_ids');
      const mask = { kind: 's2', form, group: N / 4 } as const;
      assertClose(await logitsOf(model, ids.subarray(0, B * N), B, N, { mask }), g.f64('logits0'), TOL, 'logits of micro-batch 0 under S²', log);
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
          for (const [n, p] of model.namedParameters()) if (p.requiresGrad) assertClose(await p.grad!.floats(), g.f64(`grad_step1.${n}`), TOL, `step 1 gradient ${n}`, () => {});
          log('step 1 gradients of all 22 trainable tensors match');
        }
        norms.push(await clipGradNorm(model.trainableParameters(), 1.0));
        opt.update(lrAt(schedule, k));
        zeroGrad(model.trainableParameters());
        let worst = 0;
        for (const [n, p] of model.namedParameters()) {
          if (p.requiresGrad) worst = Math.max(worst, assertClose(await p.floats(), g.f64(`step${k + 1}.${n}`), TOL, `step ${k + 1} ${n}`, () => {}).rel);
        }
        log(`after step ${k + 1}: all trainable weights match, worst rel ${worst.toExponential(2)}`);
      }
      assertClose(losses, g.f64('losses'), TOL, 'losses of the 6 micro-batches', log);
      assertClose(norms, g.f64('grad_norms'), TOL, 'gradient norms before clipping', log);
      opt.dispose();
      model.dispose();
      g.close();
      assert.equal(be!.memory().buffers, before, 'every buffer freed');
    });
  }
});
