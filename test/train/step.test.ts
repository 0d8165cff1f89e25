/**
 * One optimizer step (src/train/step.ts): the micro-batches of a gradient-accumulation
 * group, the clipping and the AdamW update are all recorded before the losses and the
 * gradient norm are read back, so a GPU backend never waits inside a step; the losses
 * equal those read one by one, and the norm the one clipGradNorm reads.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setBackend } from '../../src/backend/registry.js';
import { zeroGrad } from '../../src/tensor/autograd.js';
import { AdamW, clipGradNorm } from '../../src/train/optim.js';
import { accumulate, trainStep } from '../../src/train/step.js';
import { tinyModel } from '../helpers/model.js';

describe('train step', () => {
  it('records every micro-batch, the clipping and the update before reading anything back, with the same losses and norm', async () => {
    const be = await setBackend('cpu');
    const { model, ids, labels, B, N } = await tinyModel();
    const params = model.namedParameters();
    for (const [, p] of params) p.requireGrad();
    const opts = { mask: { kind: 'causal' } as const, checkpointing: false };
    const half = (ids.length / 2) | 0;
    const batches = [0, 1].map((k) => ({ ids: ids.slice(k * half, (k + 1) * half), labels: labels.slice(k * half, (k + 1) * half), B: B / 2, N }));
    assert.equal(B, 2, 'the fixture has two sequences: one per micro-batch');

    // The losses read one micro-batch at a time (the gradients are not used).
    const oneByOne: number[] = [];
    for (const mb of batches) oneByOne.push(await accumulate(model, mb, 1 / batches.length, opts));
    zeroGrad(params.map(([, p]) => p));

    // The gradient norm of the same step, read by clipGradNorm (no clipping: maxNorm 0).
    for (const mb of batches) await accumulate(model, mb, 1 / batches.length, opts);
    const norm = await clipGradNorm(model.trainableParameters(), 0);
    zeroGrad(params.map(([, p]) => p));

    // Kernel calls (matmuls, AdamW) and readbacks, in order, during the step.
    const events: string[] = [];
    const target = be as unknown as Record<string, (...a: unknown[]) => unknown>;
    const saved = { matmul: target.matmul!, adamw: target.adamw!, download: target.download! };
    target.matmul = (...a: unknown[]) => { events.push('k'); return saved.matmul.apply(be, a); };
    target.adamw = (...a: unknown[]) => { events.push('a'); return saved.adamw.apply(be, a); };
    target.download = (...a: unknown[]) => { events.push('d'); return saved.download.apply(be, a); };
    const optimizer = new AdamW(params, { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
    let r: Awaited<ReturnType<typeof trainStep>>;
    try {
      r = await trainStep(model, optimizer, batches, 1e-3, { ...opts, maxGradNorm: 1e-3 }); // clips
    } finally {
      Object.assign(target, saved);
      optimizer.dispose();
    }
    const perBatch = events.filter((e) => e === 'k').length / batches.length;
    const firstRead = events.indexOf('d');
    assert.ok(firstRead > 0, 'the step reads its losses back');
    assert.equal(events.slice(0, firstRead).filter((e) => e === 'k').length, events.filter((e) => e === 'k').length,
      `every micro-batch's kernels (${perBatch} matmuls each) come before the first readback`);
    assert.ok(events.includes('a') && events.lastIndexOf('a') < firstRead, 'the AdamW update is recorded before the first readback');
    assert.deepEqual(r.losses, oneByOne);
    assert.ok(Math.abs(r.gradNorm - norm) <= 1e-6 * norm, `gradient norm ${r.gradNorm} vs ${norm}`);
  });

  it('a learning rate that is not a finite number ≥ 0 is refused before any gradient is computed', async () => {
    await setBackend('cpu');
    const { model, ids, labels, B, N } = await tinyModel();
    const params = model.namedParameters();
    for (const [, p] of params) p.requireGrad();
    const optimizer = new AdamW(params, { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
    await assert.rejects(trainStep(model, optimizer, [{ ids, labels, B, N }], NaN, { mask: { kind: 'causal' }, checkpointing: false, maxGradNorm: 1 }),
      /learning rate must be a finite number ≥ 0, got NaN/);
    assert.ok(params.every(([, p]) => p.grad === null), 'no gradients left behind');
    optimizer.dispose();
    model.dispose();
  });
});
