/**
 * LongLoRA training against PyTorch, step for step (scripts/golden/make_golden_train.py):
 * S²-Attn (the paper's roll pseudocode and the leak-free segmented form), LoRA with
 * trainable embeddings and norms loaded from a PEFT adapter, linear position
 * interpolation by the official rule, gradient accumulation 2, clipping, and 3 AdamW
 * steps with warmup. Every loss, gradient norm, the first step's gradients and the
 * trainable weights after each step must match — on the CPU reference in f64 and f32 and
 * on the wasm and WebGPU backends in f32. The second micro-batch of every step recomputes
 * its layers (activation checkpointing), which must change nothing. The run itself
 * (test/helpers/golden-runs.ts) is shared with the browser tests.
 */
import { describe, it } from 'node:test';
import { setBackend } from '../../src/backend/registry.js';
import { testBackends } from '../helpers/backends.js';
import { nodeGoldenEnv } from '../helpers/fixtures.js';
import { goldenTraining } from '../helpers/golden-runs.js';

const TARGETS = [['cpu', 'f64'], ['cpu', 'f32'], ['wasm', 'f32'], ['webgpu', 'f32']] as const;

for (const form of ['roll', 'segmented'] as const) {
  for (const [backendName, dtype] of TARGETS) {
    describe(`golden training: S²-Attn ${form}, LoRA + embed + norm, ${dtype}${backendName === 'cpu' ? '' : ` on ${backendName}`}`, () => {
      it('matches PyTorch losses, gradients and weights over 3 AdamW steps', async (t) => {
        const tb = (await testBackends()).find((b) => b.name === backendName);
        if (!tb?.backend) { t.skip(`backend ${backendName} unavailable: ${tb?.skip}`); return; }
        await setBackend(backendName);
        try {
          await goldenTraining(nodeGoldenEnv((s) => t.diagnostic(s)), form, dtype);
        } finally {
          await setBackend('cpu');
        }
      });
    });
  }
}
