/** Memory ownership: scopes, views, keep, disposal, and the leak test of a training step. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { backward, clearTape, noGrad, tapeLength, zeroGrad } from '../../src/tensor/autograd.js';
import * as op from '../../src/tensor/ops/index.js';
import { scopeDepth, tidy } from '../../src/tensor/scope.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { goldenDir, Golden } from '../helpers/fixtures.js';

const live = (): number => cpuBackend().memory().buffers;

describe('scopes and ownership', () => {
  it('tidy frees intermediates and hands the result to the enclosing scope', () => {
    const before = live();
    const outer = tidy(() => {
      const inner = tidy(() => {
        const a = op.ones([4]);
        const b = op.add(a, a);
        return { b, list: [op.scale(b, 2)] };
      });
      assert.equal(live(), before + 2, 'only the two returned tensors survive the inner scope');
      return op.add(inner.b, inner.list[0]!);
    });
    assert.equal(live(), before + 1);
    outer.dispose();
    assert.equal(live(), before);
    assert.equal(scopeDepth(), 0);
  });

  it('a throwing scope frees what it made and rethrows', () => {
    const before = live();
    assert.throws(() => tidy(() => { op.ones([3]); throw new Error('boom'); }), /boom/);
    assert.equal(live(), before);
  });

  it('keep() exempts a tensor from its scope; the caller disposes it', () => {
    const before = live();
    let kept: Tensor | undefined;
    tidy(() => { kept = op.ones([2]).keep(); op.ones([2]); });
    assert.equal(live(), before + 1, 'the kept tensor survives, the other one is freed');
    kept!.dispose();
    assert.equal(live(), before);
  });

  it('views share one buffer that lives until the last view is disposed', async () => {
    const before = live();
    const a = op.tensor([1, 2, 3, 4]);
    const v = a.view([2, 2]);
    assert.equal(live(), before + 1);
    a.dispose();
    assert.deepEqual(Array.from(await v.floats()), [1, 2, 3, 4]);
    v.dispose();
    assert.equal(live(), before);
    assert.throws(() => a.buffer, LongLoraError);
  });

  it('use of a disposed tensor is a clear error', () => {
    const a = op.ones([2]);
    a.dispose();
    assert.throws(() => op.add(a, a), /disposed tensor/);
  });

  it('a tidy must be synchronous', () => {
    assert.throws(() => tidy(() => Promise.resolve(1)), /synchronous/);
  });
});

describe('autograd', () => {
  it('gradients accumulate across backward calls until zeroGrad', async () => {
    const x = op.tensor([1, 2, 3]).requireGrad();
    for (let i = 0; i < 2; i++) tidy(() => backward(op.sum(op.mul(x, x))));
    assert.deepEqual(Array.from(await x.grad!.floats()), [4, 8, 12]);
    zeroGrad([x]);
    assert.equal(x.grad, null);
    x.dispose();
  });

  it('frozen tensors get no gradient buffer', () => {
    const w = op.tensor([[1, 2], [3, 4]]);
    const x = op.tensor([[1, 1]]).requireGrad();
    tidy(() => backward(op.sum(op.matmul(x, w))));
    assert.equal(w.grad, null);
    assert.ok(x.grad);
    x.dispose();
    w.dispose();
  });

  it('noGrad records nothing; backward of an untracked value is a clear error', () => {
    const x = op.tensor([1, 2]).requireGrad();
    const y = noGrad(() => op.sum(op.mul(x, x)));
    assert.equal(tapeLength(), 0);
    assert.throws(() => backward(y), /does not depend on any tensor that requires grad/);
    y.dispose();
    x.dispose();
  });

  it('a second backward through the same loss is a clear error and adds nothing', async () => {
    const x = op.tensor([1, 2, 3]).requireGrad();
    tidy(() => {
      const loss = op.sum(op.mul(x, x));
      backward(loss);
      assert.throws(() => backward(loss), (e: unknown) => e instanceof LongLoraError && /backward was already run through it/.test(e.message));
    });
    assert.deepEqual(Array.from(await x.grad!.floats()), [2, 4, 6]);
    assert.equal(tapeLength(), 0);
    x.dispose();
  });

  it('clearTape drops saved tensors without computing gradients', () => {
    const before = live();
    const x = op.tensor([1, 2]).requireGrad();
    tidy(() => { const e = op.exp(x); op.sum(op.mul(e, e)); });
    assert.ok(tapeLength() > 0);
    assert.ok(live() > before + 1, 'the tape holds saved tensors');
    clearTape();
    assert.equal(tapeLength(), 0);
    x.dispose();
    assert.equal(live(), before);
  });

  it('gradients flow through casts between f32 and f64', async () => {
    const x = op.tensor([0.5, -2]).requireGrad();
    tidy(() => backward(op.sum(op.cast(op.square(op.cast(x, 'f64')), 'f32'))));
    assert.deepEqual(Array.from(await x.grad!.floats()), [1, -4]);
    x.dispose();
  });
});

describe('leak test', () => {
  it('repeated training steps of the Llama model return to the same memory', async () => {
    const before = live();
    const g = new Golden('tiny-llama');
    const model = await loadLlama(goldenDir('tiny-llama'));
    for (const p of model.parameters()) p.requireGrad();
    const ids = g.i32('input_ids');
    const labels = g.i32('labels');
    const counts: number[] = [];
    for (let step = 0; step < 3; step++) {
      const loss = tidy(() => {
        const r = model.loss(op.ids(ids, [2, 12]), labels);
        backward(r.loss);
        return r.loss;
      });
      assert.ok(Number.isFinite(await loss.item()));
      loss.dispose();
      zeroGrad(model.parameters());
      assert.equal(tapeLength(), 0);
      counts.push(live());
    }
    assert.deepEqual(counts, [counts[0], counts[0], counts[0]], `buffers after each step: ${counts}`);
    const params = model.parameters().length;
    assert.equal(counts[0], before + params + 2, 'only parameters and the cached RoPE tables remain');
    model.dispose();
    g.close();
    assert.equal(live(), before, 'disposing the model frees everything');
  });
});
