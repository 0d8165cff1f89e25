/**
 * The golden-parity runs against PyTorch (scripts/golden/), written once for both places
 * the tests run them: Node, which reads the fixtures as files and asserts each comparison
 * as it is made, and a browser page, which fetches them and records the comparisons for
 * the Node side to assert. Nothing here uses Node.
 */
import type { SafetensorsReader } from '../../src/io/safetensors-format.js';
import type { LoraRuntime } from '../../src/lora/lora.js';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import { collectAdapter, encodeAdapter } from '../../src/io/peft-format.js';
import type { BuildOptions } from '../../src/models/llama/init.js';
import type { LlamaForCausalLM } from '../../src/models/llama/model.js';
import { cpuBackend, currentBackend } from '../../src/backend/registry.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { backward, zeroGrad } from '../../src/tensor/autograd.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { AdamW, clipGradNorm } from '../../src/train/optim.js';
import { lrAt } from '../../src/train/schedule.js';
import { accumulate, trainStep } from '../../src/train/step.js';
import { generate } from '../../src/eval/generate.js';
import { logitsOf } from './forward.js';

export const GOLDEN_TOL = { f32: 1e-4, f64: 1e-10 } as const;

export interface GoldenEnv {
  /** golden.safetensors of a fixture folder ('tiny-llama', 'train-s2-roll'). */
  golden(variant: string): Promise<SafetensorsReader>;
  /** The checkpoint in a fixture folder, as a model. */
  model(variant: string, opts: BuildOptions): Promise<LlamaForCausalLM>;
  /** Puts the PEFT adapter in a fixture sub-folder ('train-s2-roll/adapter_init') into a model. */
  adapter(model: LlamaForCausalLM, dir: string, runtime: LoraRuntime): Promise<void>;
  /** Compares within `rtol` (rel = max|a − e| / max|e|) and returns rel. */
  close(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, label: string, quiet?: boolean): number;
  /** Checks a condition. */
  ok(value: boolean, label: string): void;
  log(line: string): void;
}

const f64 = (g: SafetensorsReader, name: string): Float64Array => g.read(name, 'f64').data as Float64Array;
const i32 = (g: SafetensorsReader, name: string): Int32Array => g.read(name).data as Int32Array;

/** Buffers alive on the current backend; checked again at the end of each run. */
function leakCheck(env: GoldenEnv): () => void {
  const be = currentBackend();
  const live = be.memory().buffers;
  return () => {
    env.ok(cpuBackend().memory().buffers === 0, 'every CPU buffer freed');
    env.ok(be.memory().buffers === live, `every ${be.name} buffer freed`);
  };
}

/**
 * A tiny random Llama (tiny-llama, tiny-llama-tied) on the current backend: logits, loss
 * and every parameter gradient (with the chunked head and loss when `chunked`, so no
 * logits are held).
 */
export async function goldenForward(env: GoldenEnv, variant: string, dtype: 'f32' | 'f64', chunked: boolean): Promise<void> {
  const done = leakCheck(env);
  const tol = GOLDEN_TOL[dtype];
  const g = await env.golden(variant);
  const model = await env.model(variant, { dtype });
  for (const p of model.parameters()) p.requireGrad();
  const [B, N] = g.info('input_ids').shape as [number, number];
  const { loss, logits } = tidy(() => {
    const r = model.loss(idsTensor(i32(g, 'input_ids'), [B, N]), i32(g, 'labels'), { logits: !chunked });
    backward(r.loss);
    return r;
  });
  env.ok((logits === undefined) === chunked, chunked ? 'the chunked head holds no logits' : 'logits are returned');
  if (logits) env.close(await logits.floats(), f64(g, 'logits'), tol, 'logits');
  env.close([await loss.item()], f64(g, 'loss'), tol, 'loss');
  const named = model.namedParameters();
  const expected = g.names().filter((n) => n.startsWith('grad.')).map((n) => n.slice(5));
  env.ok(JSON.stringify(named.map(([n]) => n).sort()) === JSON.stringify(expected.sort()), 'parameter names match the checkpoint');
  for (const [name, p] of named) {
    env.ok(p.grad !== null, `${name} has a gradient`);
    if (p.grad) env.close(await p.grad.floats(), f64(g, `grad.${name}`), tol, `grad ${name}`);
  }
  zeroGrad(model.parameters());
  loss.dispose();
  logits?.dispose();
  model.dispose();
  done();
}

/**
 * LongLoRA training step for step (scripts/golden/make_golden_train.py): S²-Attn `form`,
 * LoRA with trainable embeddings and norms loaded from a PEFT adapter, linear position
 * interpolation, gradient accumulation 2 (the second micro-batch recomputes its layers),
 * clipping, and 3 AdamW steps with warmup: losses, gradient norms, the first step's
 * gradients and the trainable weights after each step.
 */
export async function goldenTraining(env: GoldenEnv, form: 'roll' | 'segmented', dtype: 'f32' | 'f64'): Promise<void> {
  const done = leakCheck(env);
  const tol = GOLDEN_TOL[dtype];
  const g = await env.golden(`train-s2-${form}`);
  const factor = f64(g, 'rope_factor')[0]!;
  const model = await env.model('tiny-llama-short', { dtype, ropeScaling: { type: 'linear', factor } });
  await env.adapter(model, `train-s2-${form}/adapter_init`, { training: true, rng: new Rng(0) });
  const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
  env.ok(rep.names.length === 22, `22 trainable tensors (got ${rep.names.length})`);
  const [steps, accum, B, N] = [3, 2, 2, 16];
  const ids = i32(g, 'input_ids');
  const mask = { kind: 's2', form, group: N / 4 } as const;
  env.close(await logitsOf(model, ids.subarray(0, B * N), B, N, { mask }), f64(g, 'logits0'), tol, 'logits of micro-batch 0 under S²');

  const schedule = { type: 'constant', lr: 1e-2, warmupSteps: 2, totalSteps: steps } as const;
  const opt = new AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1 });
  const losses: number[] = [];
  const norms: number[] = [];
  for (let k = 0; k < steps; k++) {
    for (let a = 0; a < accum; a++) {
      const mb = k * accum + a;
      losses.push(await accumulate(model, { ids: ids.subarray(mb * B * N, (mb + 1) * B * N), B, N }, 1 / accum, { mask, checkpointing: a === 1 }));
    }
    if (k === 0) {
      for (const [n, p] of model.namedParameters()) if (p.requiresGrad) env.close(await p.grad!.floats(), f64(g, `grad_step1.${n}`), tol, `step 1 gradient ${n}`, true);
      env.log('step 1 gradients of all 22 trainable tensors match');
    }
    norms.push(await clipGradNorm(model.trainableParameters(), 1.0));
    opt.update(lrAt(schedule, k));
    zeroGrad(model.trainableParameters());
    let worst = 0;
    for (const [n, p] of model.namedParameters()) {
      if (p.requiresGrad) worst = Math.max(worst, env.close(await p.floats(), f64(g, `step${k + 1}.${n}`), tol, `step ${k + 1} ${n}`, true));
    }
    env.log(`after step ${k + 1}: all trainable weights match, worst rel ${worst.toExponential(2)}`);
  }
  env.close(losses, f64(g, 'losses'), tol, 'losses of the 6 micro-batches');
  env.close(norms, f64(g, 'grad_norms'), tol, 'gradient norms before clipping');
  env.close([0, 1, 2].map((k) => lrAt(schedule, k)), f64(g, 'lrs'), 1e-15, 'learning rates');
  opt.dispose();
  model.dispose();
  done();
}

export interface LongLoraRun {
  /** The loss of every step. */
  losses: number[];
  /** Dense-attention logits of the trained model on the training batch. */
  logits: Float32Array | Float64Array;
  /** The adapter, as `encodeAdapter` gives it. */
  files: Map<string, Uint8Array>;
  /** Greedy continuation (KV cache, dense attention) of the batch's first 6 tokens. */
  generated: number[];
}

/** The batch `longloraRun` trains on: B = 2 rows of N = 16 tokens with a repeating pattern. */
export function longloraBatch(): { ids: Int32Array; B: number; N: number } {
  const [B, N] = [2, 16];
  const ids = new Int32Array(B * N);
  for (let i = 0; i < ids.length; i++) ids[i] = 3 + ((i % N) * 5 + Math.floor(i / N) * 11) % 90;
  return { ids, B, N };
}

/**
 * A LongLoRA fine-tune of the tiny golden model on the current backend, as a user would
 * write it: LoRA (r 4) on q, k, v, o plus trainable embeddings and norms, S²-Attn
 * (segmented, group 4), `steps` AdamW steps with clipping, then dense attention for the
 * logits and the adapter collected and encoded as PEFT files.
 */
export async function longloraRun(env: GoldenEnv, steps: number): Promise<LongLoraRun> {
  const done = leakCheck(env);
  const model = await env.model('tiny-llama', { dtype: 'f32' });
  const runtime = { training: true, rng: new Rng(1) };
  applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(7), runtime);
  const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
  const opt = new AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
  const { ids, B, N } = longloraBatch();
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    const r = await trainStep(model, opt, [{ ids, B, N }], 2e-2, { mask: { kind: 's2', form: 'segmented', group: 4 }, maxGradNorm: 1, checkpointing: false });
    losses.push(...r.losses);
  }
  runtime.training = false;
  const logits = await logitsOf(model, ids, B, N);
  const { ids: generated } = await generate(model, [...ids.subarray(0, 6)], { temperature: 0, maxNewTokens: 8 });
  const extras = rep.names.filter((n) => !n.includes('.lora_'));
  const files = encodeAdapter(await collectAdapter(model, { baseModel: 'tiny-llama', extras, sidecar: { training_attention: 's2 segmented, group 4' } }));
  opt.dispose();
  model.dispose();
  done();
  return { losses, logits, files, generated };
}
