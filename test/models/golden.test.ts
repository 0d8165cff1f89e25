/**
 * Golden parity with PyTorch: the committed script scripts/golden/make_golden.py writes
 * tiny random Llama (and Qwen 2) checkpoints and, for fixed ids, the logits, loss and every gradient
 * computed in float64. We load the checkpoints through the normal loader and match — on
 * the CPU reference backend in f32 and f64, and on the wasm and WebGPU backends in f32
 * (a backend that cannot start here is skipped with the reason). The run itself
 * (test/helpers/golden-runs.ts) is shared with the browser tests.
 */
import { describe, it } from 'node:test';
import { setBackend } from '../../src/backend/registry.js';
import { testBackends } from '../helpers/backends.js';
import { nodeGoldenEnv } from '../helpers/fixtures.js';
import { goldenForward } from '../helpers/golden-runs.js';

const TARGETS = [['cpu', 'f32'], ['cpu', 'f64'], ['wasm', 'f32'], ['webgpu', 'f32']] as const;

for (const variant of ['tiny-llama', 'tiny-llama-tied', 'tiny-qwen2', 'tiny-qwen3']) {
  for (const [backendName, dtype] of TARGETS) {
    describe(`golden parity: ${variant} in ${dtype}${backendName === 'cpu' ? '' : ` on ${backendName}`}`, () => {
      for (const chunked of [false, true]) {
        it(chunked ? 'matches loss and every gradient with the chunked head + loss (no logits held)' : 'matches logits, loss and every parameter gradient', async (t) => {
          const tb = (await testBackends()).find((b) => b.name === backendName);
          if (!tb?.backend) { t.skip(`backend ${backendName} unavailable: ${tb?.skip}`); return; }
          await setBackend(backendName);
          try {
            await goldenForward(nodeGoldenEnv((s) => t.diagnostic(s)), variant, dtype, chunked);
          } finally {
            await setBackend('cpu');
          }
        });
      }
    });
  }
}
