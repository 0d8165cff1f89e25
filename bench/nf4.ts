/**
 * LongQLoRA against LongLoRA-style LoRA on the same base, in one run:
 *  1. the loss curves of two training runs of the tiny model (the `longqlora` preset with a
 *     higher learning rate, on a learnable token stream), `--quantize nf4` against `none`;
 *  2. the step-time cost of dequantising per use: the same two runs' median step time, a
 *     training step of a wider model with an f32, bf16 and NF4 base (interleaved), and the
 *     time of the dequantisations alone;
 *  3. the weight memory of the 4-bit base against the same weights in f16, read from the
 *     backend's live-byte count, for the tiny model and a larger random Llama.
 *
 *   npm run build && node dist/bench/nf4.js [--steps 60] [--seq 64] [--lr 3e-3] [--hidden 512] [--step-hidden 256] [--reps 7]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuBackend } from '../src/backend/registry.js';
import { writeTokenFile } from '../src/data/tokens.js';
import { parseLlamaConfig } from '../src/models/llama/config.js';
import { loadLlama, randomLlama } from '../src/models/llama/load.js';
import type { LlamaForCausalLM } from '../src/models/llama/model.js';
import { isQuantizedWeight, packedMemory, quantizeModel } from '../src/quant/quantize-model.js';
import { applyLora, setTrainable } from '../src/lora/inject.js';
import { Rng } from '../src/tensor/random.js';
import { zeroGrad } from '../src/tensor/autograd.js';
import { accumulate } from '../src/train/step.js';
import { defaultTrainConfig, type TrainConfig } from '../src/train/config.js';
import { applyPreset } from '../src/train/presets.js';
import { Trainer } from '../src/train/trainer.js';

const { values } = parseArgs({ options: {
  steps: { type: 'string', default: '60' }, seq: { type: 'string', default: '64' }, lr: { type: 'string', default: '3e-3' },
  hidden: { type: 'string', default: '512' }, 'step-hidden': { type: 'string', default: '256' }, reps: { type: 'string', default: '7' }, model: { type: 'string', default: 'test/fixtures/golden/tiny-llama-short' },
} });
const STEPS = Number(values.steps);
const SEQ = Number(values.seq);
const be = cpuBackend();
const mib = (b: number): string => (b / 2 ** 20).toFixed(3);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A learnable stream: each of 96 tokens is followed by one of 3 fixed successors. */
function markovTokens(file: string, n: number, vocab = 96): void {
  const rng = new Rng(7);
  const next = Array.from({ length: vocab }, () => [rng.int(vocab), rng.int(vocab), rng.int(vocab)]);
  const ids = [0];
  for (let i = 1; i < n; i++) ids.push(next[ids[i - 1]!]![rng.int(3)]!);
  writeTokenFile(file, ids, 'uint16');
}

async function trainRun(dir: string, quantize: 'none' | 'nf4'): Promise<{ losses: number[]; stepS: number[] }> {
  const c: TrainConfig = {
    ...applyPreset(defaultTrainConfig(), 'longqlora'),
    model: values.model!, data: path.join(dir, 'tokens.bin'), output: path.join(dir, quantize),
    quantize, seqLen: SEQ, steps: STEPS, gradAccum: 2, warmupSteps: 5, lr: Number(values.lr),
    saveEvery: STEPS, backend: 'cpu', checkpointing: false,
  };
  const sink = { write: () => true };
  const t = await Trainer.create(c, { out: sink });
  try { await t.run(); } finally { t.dispose(); }
  const rows = fs.readFileSync(path.join(c.output, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as { loss?: number; step_s: number }).filter((r): r is { loss: number; step_s: number } => r.loss !== undefined);
  return { losses: rows.map((r) => r.loss), stepS: rows.map((r) => r.step_s) };
}

/** Backend bytes of the base linear weights: in f16, and after quantising them in place. */
async function weightMemory(model: LlamaForCausalLM): Promise<{ f16: number; nf4: number; accounted: number }> {
  const f16 = model.namedParameters().filter(([n]) => isQuantizedWeight(n)).reduce((a, [, t]) => a + 2 * t.size, 0);
  const before = be.memory().bytes;
  await quantizeModel(model);
  const nf4 = f16 + (be.memory().bytes - before); // the f16 weights were freed, the NF4 ones allocated
  return { f16, nf4, accounted: packedMemory(model).bytes };
}

/**
 * Median times of a forward + backward (LoRA r=64 on all linear layers, one sequence of `n`
 * tokens) for several models, interleaved rep by rep so that load from other processes
 * falls on all of them alike.
 */
async function stepTimes(models: LlamaForCausalLM[], n: number, reps = 3): Promise<number[]> {
  const runtime = { training: true, rng: new Rng(2) };
  for (const m of models) {
    applyLora(m, 'all-linear', { r: 64, alpha: 16, dropout: 0, rslora: false }, new Rng(3), runtime);
    setTrainable(m, 'lora');
  }
  const rng = new Rng(4);
  const ids = Int32Array.from({ length: n }, () => rng.int(models[0]!.config.vocabSize));
  const times = models.map(() => [] as number[]);
  stepMins.length = 0;
  for (let r = 0; r < reps; r++) {
    for (const [k, m] of models.entries()) {
      const t0 = performance.now();
      await accumulate(m, { ids, B: 1, N: n }, 1, { mask: { kind: 's2', form: 'segmented', group: n / 4 }, checkpointing: false });
      times[k]!.push((performance.now() - t0) / 1000);
      zeroGrad(m.parameters());
    }
  }
  for (const t of times) stepMins.push(Math.min(...t));
  return times.map(median);
}

/** The fastest repetition of each model in the last `stepTimes` call. */
const stepMins: number[] = [];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlora-nf4-bench-'));
try {
  markovTokens(path.join(dir, 'tokens.bin'), 64 * 1024);
  console.log(`1. training ${values.model} (preset longqlora, lr ${values.lr}, ${STEPS} steps of 2 × ${SEQ} tokens, CPU reference backend)`);
  const plain = await trainRun(dir, 'none');
  const q = await trainRun(dir, 'nf4');
  console.log('step   loss (base f32)   loss (base NF4)   difference');
  for (let i = 0; i < STEPS; i++) {
    if (i < 5 || (i + 1) % 10 === 0) console.log(`${String(i + 1).padStart(4)}   ${plain.losses[i]!.toFixed(4).padStart(15)}   ${q.losses[i]!.toFixed(4).padStart(15)}   ${(q.losses[i]! - plain.losses[i]!).toFixed(4).padStart(10)}`);
  }
  const diffs = plain.losses.map((l, i) => Math.abs(q.losses[i]! - l));
  const tail = (xs: number[]): number => xs.slice(-10).reduce((a, b) => a + b, 0) / 10;
  console.log(`max |difference| ${Math.max(...diffs).toFixed(4)}; mean of the last 10 steps: f32 ${tail(plain.losses).toFixed(4)}, NF4 ${tail(q.losses).toFixed(4)} (first step ${plain.losses[0]!.toFixed(4)} / ${q.losses[0]!.toFixed(4)})`);
  const s1 = median(plain.stepS.slice(1));
  const s2 = median(q.stepS.slice(1));
  const [m1s, m2s] = [Math.min(...plain.stepS.slice(1)), Math.min(...q.stepS.slice(1))];
  console.log(`\n2. step time of these runs: median f32 base ${(1000 * s1).toFixed(1)} ms, NF4 base ${(1000 * s2).toFixed(1)} ms (NF4 / f32 ${(s2 / s1).toFixed(3)}); ` +
    `fastest ${(1000 * m1s).toFixed(1)} / ${(1000 * m2s).toFixed(1)} ms (${(m2s / m1s).toFixed(3)})`);

  console.log('\n3. weight memory of the base linear layers (backend live bytes)');
  const tiny = await loadLlama(values.model!, { dtype: 'f16' });
  const m1 = await weightMemory(tiny);
  tiny.dispose();
  console.log(`tiny model:   f16 ${mib(m1.f16)} MiB, NF4 ${mib(m1.nf4)} MiB (accounted ${mib(m1.accounted)}): ${(m1.nf4 / m1.f16).toFixed(3)}× (code books included)`);
  const C = Number(values.hidden);
  const config = parseLlamaConfig({
    model_type: 'llama', vocab_size: 256, hidden_size: C, intermediate_size: Math.round((C * 8) / 3 / 64) * 64, num_hidden_layers: 4,
    num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
  }, 'bench');
  const big = randomLlama(config, { seed: 1, dtype: 'f16' });
  const m2 = await weightMemory(big);
  console.log(`hidden ${C}, 4 layers: f16 ${mib(m2.f16)} MiB, NF4 ${mib(m2.nf4)} MiB (accounted ${mib(m2.accounted)}): ${(m2.nf4 / m2.f16).toFixed(3)}×`);
  big.dispose();

  // step time on a smaller model (the ratios do not depend on the width: dequantisation is
  // O(out·in) per use, the matmuls O(N·out·in)), so that more interleaved repetitions fit
  const N = 256;
  const Ct = Number(values['step-hidden']);
  const tconfig = parseLlamaConfig({
    model_type: 'llama', vocab_size: 256, hidden_size: Ct, intermediate_size: Math.round((Ct * 8) / 3 / 64) * 64, num_hidden_layers: 4,
    num_attention_heads: 8, num_key_value_heads: 8, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
  }, 'bench');
  const qm = randomLlama(tconfig, { seed: 1 });
  await quantizeModel(qm);
  const deq: number[] = [];
  for (let r = 0; r < 10; r++) {
    const t0 = performance.now();
    for (const [, w] of qm.namedBuffers()) w.dequantize('f32').dispose();
    deq.push((performance.now() - t0) / 1000);
  }
  const deqS = median(deq);
  const nPacked = qm.namedBuffers().length;
  const models = [randomLlama(tconfig, { seed: 1 }), randomLlama(tconfig, { seed: 1, dtype: 'bf16' }), qm];
  const reps = Number(values.reps);
  const [tF32, tBf16, tNf4] = (await stepTimes(models, N, reps)) as [number, number, number];
  for (const m of models) m.dispose();
  console.log(`\n4. step time: forward + backward, hidden ${Ct}, 4 layers, ${N} tokens, LoRA r=64 on all linear layers (interleaved, median of ${reps}): f32 base ${tF32.toFixed(2)} s, bf16 base ${tBf16.toFixed(2)} s, NF4 base ${tNf4.toFixed(2)} s` +
    ` → NF4 / f32 ${(tNf4 / tF32).toFixed(3)}, NF4 / bf16 ${(tNf4 / tBf16).toFixed(3)}; fastest repetitions ${stepMins.map((v) => v.toFixed(2)).join(' / ')} s` +
    ` → NF4 / f32 ${(stepMins[2]! / stepMins[0]!).toFixed(3)}, NF4 / bf16 ${(stepMins[2]! / stepMins[1]!).toFixed(3)}`);
  console.log(`   dequantising all ${nPacked} linear weights once: ${(1000 * deqS).toFixed(1)} ms (median of 10); a step dequantises each twice` +
    ` (forward, input gradient): ${(2000 * deqS).toFixed(1)} ms = ${((200 * deqS) / tNf4).toFixed(1)}% of the NF4 step`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
