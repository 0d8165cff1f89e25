/**
 * Golden parity with PyTorch: the committed script scripts/golden/make_golden.py writes
 * tiny random Llama checkpoints and, for fixed ids, the logits, loss and every gradient
 * computed in float64. We load the checkpoints through the normal loader and match — on
 * the CPU reference backend in f32 and f64, and on the wasm and WebGPU backends in f32
 * (a backend that cannot start here is skipped with the reason).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { backward, zeroGrad } from '../../src/tensor/autograd.js';
import { tidy } from '../../src/tensor/scope.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { cpuBackend, setBackend } from '../../src/backend/registry.js';
import { testBackends } from '../helpers/backends.js';
import { assertClose } from '../helpers/compare.js';
import { Golden, goldenDir } from '../helpers/fixtures.js';

const TOL = { f32: 1e-4, f64: 1e-10 } as const;
const TARGETS = [['cpu', 'f32'], ['cpu', 'f64'], ['wasm', 'f32'], ['webgpu', 'f32']] as const;

for (const variant of ['tiny-llama', 'tiny-llama-tied']) {
  for (const [backendName, dtype] of TARGETS) {
    describe(`golden parity: ${variant} in ${dtype}${backendName === 'cpu' ? '' : ` on ${backendName}`}`, () => {
      for (const chunked of [false, true]) {
      it(chunked ? 'matches loss and every gradient with the chunked head + loss (no logits held)' : 'matches logits, loss and every parameter gradient', async (t) => {
        const tb = (await testBackends()).find((b) => b.name === backendName);
        if (!tb?.backend) { t.skip(`backend ${backendName} unavailable: ${tb?.skip}`); return; }
        const be = await setBackend(backendName);
        const live = be.memory().buffers;
        try {
        const g = new Golden(variant);
        const log = (s: string): void => t.diagnostic(s);
        const model = await loadLlama(goldenDir(variant), { dtype });
        for (const p of model.parameters()) p.requireGrad();
        const [B, N] = g.shape('input_ids') as [number, number];
        const { loss, logits } = tidy(() => {
          const r = model.loss(idsTensor(g.i32('input_ids'), [B, N]), g.i32('labels'), { logits: !chunked });
          backward(r.loss);
          return r;
        });
        assert.equal(logits === undefined, chunked);
        if (logits) assertClose(await logits.floats(), g.f64('logits'), TOL[dtype], 'logits', log);
        assertClose([await loss.item()], g.f64('loss'), TOL[dtype], 'loss', log);
        const named = model.namedParameters();
        const expected = g.names().filter((n) => n.startsWith('grad.')).map((n) => n.slice(5));
        assert.deepEqual(named.map(([n]) => n).sort(), expected.sort(), 'parameter names match the checkpoint');
        for (const [name, p] of named) {
          assert.ok(p.grad, `${name} has a gradient`);
          assertClose(await p.grad.floats(), g.f64(`grad.${name}`), TOL[dtype], `grad ${name}`, log);
        }
        zeroGrad(model.parameters());
        loss.dispose();
        logits?.dispose();
        model.dispose();
        g.close();
        assert.equal(cpuBackend().memory().buffers, 0, 'every buffer freed');
        assert.equal(be.memory().buffers, live, `every ${backendName} buffer freed`);
        } finally {
          await setBackend('cpu');
        }
      });
      }
    });
  }
}
