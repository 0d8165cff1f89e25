/** Activation checkpointing gives the gradients of the plain backward, with and without dropout. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import type { LoraRuntime } from '../../src/lora/lora.js';
import { backward, zeroGrad } from '../../src/tensor/autograd.js';
import * as op from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { assertClose } from '../helpers/compare.js';
import { tinyModel } from '../helpers/model.js';

async function gradients(checkpointing: boolean, dropout: number): Promise<{ loss: number; grads: Map<string, Float64Array> }> {
  const { model, ids, labels, B, N } = await tinyModel('tiny-llama', { dtype: 'f64' });
  const rt: LoraRuntime = { training: true, rng: new Rng(11) };
  applyLora(model, ['q_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout, rslora: false }, new Rng(4), rt);
  const rng = new Rng(12);
  for (const [, p] of model.namedParameters().filter(([n]) => n.endsWith('lora_B.weight'))) {
    cpuBackend().upload(p.buffer, Float64Array.from({ length: p.size }, () => rng.normal() * 0.1));
  }
  setTrainable(model, 'longlora', ['embed', 'norm']);
  const mask = { kind: 's2', form: 'segmented', group: 4 } as const;
  const loss = tidy(() => {
    const r = model.loss(op.ids(ids, [B, N]), labels, { mask, checkpointing, rngs: [rt.rng] });
    backward(r.loss);
    return r.loss;
  });
  const grads = new Map<string, Float64Array>();
  for (const [n, p] of model.namedParameters()) if (p.grad) grads.set(n, Float64Array.from(await p.grad.floats()));
  const l = await loss.item();
  loss.dispose();
  zeroGrad(model.parameters());
  model.dispose();
  return { loss: l, grads };
}

describe('activation checkpointing', () => {
  for (const dropout of [0, 0.3]) {
    it(`recomputing each layer gives the same loss and gradients (dropout ${dropout})`, async (t) => {
      const plain = await gradients(false, dropout);
      const ckpt = await gradients(true, dropout);
      assert.equal(ckpt.loss, plain.loss);
      assert.deepEqual([...ckpt.grads.keys()], [...plain.grads.keys()]);
      let worst = 0;
      for (const [n, g] of plain.grads) worst = Math.max(worst, assertClose(ckpt.grads.get(n)!, g, 1e-12, n, () => {}).rel);
      t.diagnostic(`${plain.grads.size} gradients, worst rel ${worst.toExponential(2)}`);
    });
  }
});
