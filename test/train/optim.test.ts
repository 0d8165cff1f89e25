import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import { AdamW, clipGradNorm, decays } from '../../src/train/optim.js';
import { lrAt, type Schedule } from '../../src/train/schedule.js';
import { Rng } from '../../src/tensor/random.js';
import { assertClose } from '../helpers/compare.js';

/** torch.optim.AdamW, written out in float64. */
function hostAdamW(p: number[], grads: number[][], lrs: number[], b1: number, b2: number, eps: number, wd: number): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] = p[i]! * (1 - lrs[k]! * wd);
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
      p[i] = p[i]! - lrs[k]! * (m[i]! / (1 - b1 ** t)) / (Math.sqrt(v[i]! / (1 - b2 ** t)) + eps);
    }
  });
  return p;
}

describe('AdamW', () => {
  for (const dtype of ['f64', 'f32'] as const) {
    it(`matches torch.optim.AdamW semantics over 4 steps (${dtype})`, async (t) => {
      const rng = new Rng(2);
      const p0 = Array.from({ length: 10 }, () => rng.normal());
      const grads = Array.from({ length: 4 }, () => Array.from({ length: 10 }, () => rng.normal()));
      const lrs = [0, 0.05, 0.1, 0.1];
      const p = op.tensor(p0, [10], dtype).requireGrad();
      const opt = new AdamW([['w', p]], { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });
      for (let k = 0; k < 4; k++) {
        p.grad = op.tensor(grads[k]!, [10], dtype).keep();
        opt.update(lrs[k]!);
        p.grad.dispose();
        p.grad = null;
      }
      assertClose(await p.floats(), hostAdamW([...p0], grads, lrs, 0.9, 0.95, 1e-8, 0.1), dtype === 'f64' ? 1e-14 : 1e-6, `AdamW ${dtype}`, (s) => t.diagnostic(s));
      assert.equal(opt.step, 4);
      opt.dispose();
      p.dispose();
    });
  }

  it('does not decay norm weights or biases (Hugging Face Trainer)', () => {
    assert.equal(decays('model.layers.0.input_layernorm.weight'), false);
    assert.equal(decays('model.norm.weight'), false);
    assert.equal(decays('model.embed_tokens.weight'), true);
    assert.equal(decays('model.layers.0.self_attn.q_proj.lora_A.weight'), true);
  });

  it('rejects bad hyper-parameters', () => {
    assert.throws(() => new AdamW([], { betas: [0.9, 1], eps: 1e-8, weightDecay: 0 }), /betas/);
    assert.throws(() => new AdamW([], { betas: [0.9, 0.99], eps: 0, weightDecay: 0 }), /eps/);
    const p = op.tensor([1, 2], [2], 'f32').requireGrad();
    p.grad = op.tensor([1, 1], [2], 'f32').keep();
    const opt = new AdamW([['w', p]], { betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0 });
    for (const lr of [NaN, -1e-3, Infinity, undefined as unknown as number]) {
      assert.throws(() => opt.update(lr), /learning rate must be a finite number ≥ 0, got/, String(lr));
    }
    assert.equal(opt.step, 0, 'no update was counted');
    opt.dispose();
    p.grad.dispose();
    p.dispose();
  });
});

describe('gradient clipping', () => {
  it('scales to the max norm and returns the norm before clipping', async () => {
    const a = op.tensor([3, 0]).requireGrad();
    const b = op.tensor([0, 4]).requireGrad();
    a.grad = op.tensor([3, 0]).keep();
    b.grad = op.tensor([0, 4]).keep();
    assert.equal(await clipGradNorm([a, b], 1), 5);
    const ga = await a.grad.floats();
    assert.ok(Math.abs(ga[0]! - 3 / (5 + 1e-6)) < 1e-6);
    const again = await clipGradNorm([a, b], 10);
    assert.ok(Math.abs(again - Math.hypot(ga[0]!, (await b.grad.floats())[1]!)) < 1e-6, 'below the max norm nothing changes');
    assert.ok(Math.abs(again - 1) < 1e-6);
    a.dispose();
    b.dispose();
  });
});

describe('learning-rate schedules (Hugging Face semantics)', () => {
  const s = (type: Schedule['type']): Schedule => ({ type, lr: 1, warmupSteps: 4, totalSteps: 12 });
  it('constant with warmup starts at 0', () => {
    assert.deepEqual([0, 1, 2, 4, 11].map((k) => lrAt(s('constant'), k)), [0, 0.25, 0.5, 1, 1]);
  });
  it('linear decays to 0 at the last step', () => {
    assert.deepEqual([3, 4, 8, 12].map((k) => lrAt(s('linear'), k)), [0.75, 1, 0.5, 0]);
  });
  it('cosine follows half a cosine', () => {
    assert.ok(Math.abs(lrAt(s('cosine'), 8) - 0.5) < 1e-12);
    assert.equal(lrAt(s('cosine'), 4), 1);
  });
});
