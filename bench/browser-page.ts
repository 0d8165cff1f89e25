/**
 * What bench/browser.ts measures, written once and run both in Node and inside a
 * Chromium page (loaded from dist/ as an ES module): matmul GFLOP/s and one LongLoRA
 * training step of the fixed small Llama with S²-Attn, on a named backend.
 */
import { getBackend, setBackend } from '../src/backend/registry.js';
import { matmul } from '../src/tensor/ops/index.js';
import { fromHost } from '../src/tensor/tensor.js';
import { noGrad } from '../src/tensor/autograd.js';
import { Rng } from '../src/tensor/random.js';
import { SMALL_LLAMA, smallLlamaConfig, timedTrainingStep } from './setup.js';

export interface BrowserBenchResult {
  backend: string;
  threads: number;
  /** The Wasm build (relaxed or simd), when the backend is wasm. */
  flavour: string;
  matmulGflops: number;
  matmulMs: number;
  trainTokensPerSecond: number;
  trainSeconds: number;
  loss: number;
}

/** `n`³ f32 matmul (best of `reps`, after a warm-up) and one S²-Attn training step at `N` tokens. */
export async function measure(backendName: string, n: number, N: number, reps = 5): Promise<BrowserBenchResult> {
  const be = await getBackend(backendName);
  await setBackend(backendName);
  try {
    const rng = new Rng(11);
    const a = fromHost(new Float32Array(n * n).map(() => rng.normal()), [n, n], 'f32', be).keep();
    const b = fromHost(new Float32Array(n * n).map(() => rng.normal()), [n, n], 'f32', be).keep();
    let best = Infinity;
    for (let r = 0; r <= reps; r++) {
      const t0 = performance.now();
      const c = noGrad(() => matmul(a, b));
      await c.floats(); // waits for the device; the copy back is the same in both places
      const ms = performance.now() - t0;
      c.dispose();
      if (r > 0) best = Math.min(best, ms);
    }
    a.dispose();
    b.dispose();
    const ids = Int32Array.from({ length: N }, () => rng.int(SMALL_LLAMA.vocab));
    const step = await timedTrainingStep(be, smallLlamaConfig(N), ids, { kind: 's2', form: 'segmented', group: N / 4 });
    return {
      backend: be.name, threads: (be as { threads?: number }).threads ?? 1,
      flavour: (be as { stats?: () => { flavour: string } }).stats?.().flavour ?? '',
      matmulGflops: (2 * n * n * n) / (best / 1000) / 1e9, matmulMs: best,
      trainTokensPerSecond: step.tokensPerSecond, trainSeconds: step.seconds, loss: step.loss,
    };
  } finally {
    await setBackend('cpu');
  }
}
