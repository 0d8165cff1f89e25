/**
 * Peak memory of one training step with and without activation checkpointing, measured
 * in the same run on the same model (the backend's live-bytes high-water mark).
 *
 *   npm run build && node dist/bench/checkpointing.js [--layers 4] [--hidden 128] [--seq 512]
 */
import { parseArgs } from 'node:util';
import { cpuBackend } from '../src/backend/registry.js';
import { parseLlamaConfig } from '../src/models/llama/config.js';
import { Rng } from '../src/tensor/random.js';
import { longloraBenchModel } from './setup.js';
import { accumulate } from '../src/train/step.js';
import { zeroGrad } from '../src/tensor/autograd.js';
import type { AttentionMask } from '../src/backend/backend.js';

const { values } = parseArgs({ options: { layers: { type: 'string', default: '4' }, hidden: { type: 'string', default: '128' }, seq: { type: 'string', default: '512' } } });
const L = Number(values.layers);
const C = Number(values.hidden);
const N = Number(values.seq);
const config = parseLlamaConfig({
  model_type: 'llama', vocab_size: 256, hidden_size: C, intermediate_size: (C * 8) / 3 | 0, num_hidden_layers: L,
  num_attention_heads: 4, num_key_value_heads: 4, max_position_embeddings: N, rms_norm_eps: 1e-5,
}, 'bench');
const be = cpuBackend();
const mib = (b: number): string => (b / 2 ** 20).toFixed(2);

async function measure(checkpointing: boolean, mask: AttentionMask): Promise<{ peak: number; base: number; seconds: number; loss: number }> {
  const { model, runtime } = longloraBenchModel(config);
  const rng = new Rng(4);
  const ids = Int32Array.from({ length: N }, () => rng.int(config.vocabSize));
  const base = be.memory().bytes;
  be.resetPeak();
  const t0 = performance.now();
  const loss = await accumulate(model, { ids, B: 1, N }, 1, { mask, checkpointing, rngs: [runtime.rng] });
  const seconds = (performance.now() - t0) / 1000;
  const peak = be.memory().peakBytes;
  zeroGrad(model.parameters());
  model.dispose();
  return { peak, base, seconds, loss };
}

console.log(`model: ${L} layers, hidden ${C}, 4 heads, vocab ${config.vocabSize}; one sequence of ${N} tokens; LoRA r=8 on q,k,v,o + embed + norm; CPU reference backend`);
console.log('attention            checkpointing  peak MiB  above weights MiB  step s   loss');
const rows: Array<[string, AttentionMask]> = [['dense', { kind: 'causal' }], ['S² segmented G=N/4', { kind: 's2', form: 'segmented', group: N / 4 }]];
for (const [name, mask] of rows) {
  const off = await measure(false, mask);
  const on = await measure(true, mask);
  for (const [flag, r] of [['off', off], ['on', on]] as const) {
    console.log(`${name.padEnd(20)} ${flag.padEnd(14)} ${mib(r.peak).padStart(8)}  ${mib(r.peak - r.base).padStart(17)}  ${r.seconds.toFixed(2).padStart(6)}  ${r.loss.toFixed(4)}`);
  }
  console.log(`  → checkpointing keeps ${((on.peak - on.base) / (off.peak - off.base)).toFixed(3)}× the activation memory (same loss: ${on.loss === off.loss})`);
}
