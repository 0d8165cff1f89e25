/**
 * One optimizer step (src/train/step.ts): the micro-batches of a gradient-accumulation
 * group run back to back, with their losses read back once after the last, so a GPU
 * backend never waits for a readback between them; the losses equal those read one by one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setBackend } from '../../src/backend/registry.js';
import { zeroGrad } from '../../src/tensor/autograd.js';
import { AdamW } from '../../src/train/optim.js';
import { accumulate, trainStep } from '../../src/train/step.js';
import { tinyModel } from '../helpers/model.js';

describe('train step', () => {
  it('records every micro-batch before reading any loss back, and reads the same losses', async () => {
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

    // Kernel calls (matmuls) and readbacks, in order, during the step.
    const events: string[] = [];
    const target = be as unknown as Record<string, (...a: unknown[]) => unknown>;
    const saved = { matmul: target.matmul!, download: target.download! };
    target.matmul = (...a: unknown[]) => { events.push('k'); return saved.matmul.apply(be, a); };
    target.download = (...a: unknown[]) => { events.push('d'); return saved.download.apply(be, a); };
    const optimizer = new AdamW(params, { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
    let losses: number[];
    try {
      losses = (await trainStep(model, optimizer, batches, 1e-3, { ...opts, maxGradNorm: 1 })).losses;
    } finally {
      Object.assign(target, saved);
      optimizer.dispose();
    }
    const perBatch = events.filter((e) => e === 'k').length / batches.length;
    const firstRead = events.indexOf('d');
    assert.ok(firstRead > 0, 'the step reads its losses back');
    assert.equal(events.slice(0, firstRead).filter((e) => e === 'k').length, events.filter((e) => e === 'k').length,
      `every micro-batch's kernels (${perBatch} matmuls each) come before the first readback`);
    assert.deepEqual(losses, oneByOne);
  });
});
