/**
 * `longlora demo`: the engine end to end on a tiny model, in a second. Loads the bundled
 * tiny Llama through the normal checkpoint loader, checks its logits, loss and gradients
 * against the float64 values PyTorch computed for it, then fits one batch with plain
 * gradient descent so the loss visibly falls.
 */
import path from 'node:path';
import { SafetensorsFile } from '../../io/safetensors.js';
import { loadLlama } from '../../models/llama/load.js';
import { backward, noGrad, zeroGrad } from '../../tensor/autograd.js';
import { addInto, ids as idsTensor, scale } from '../../tensor/ops/index.js';
import { tidy } from '../../tensor/scope.js';
import { parse } from '../args.js';
import { describeRopeScaling } from '../../nn/rope-scaling.js';
import { TINY_MODEL } from '../paths.js';

const OPTIONS = {
  model: { type: 'string', default: TINY_MODEL, help: 'model folder (config.json + safetensors)' },
  steps: { type: 'string', default: '30', help: 'gradient-descent steps on the demo batch' },
  lr: { type: 'string', default: '0.05', help: 'learning rate' },
} as const;

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return d / s;
}

export async function demo(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora demo [options]', OPTIONS);
  if (!args) return;
  const dir = String(args.values.model);
  const steps = Number(args.values.steps);
  const lr = Number(args.values.lr);
  const t0 = performance.now();
  const model = await loadLlama(dir);
  const c = model.config;
  console.log(`model: ${dir}`);
  console.log(`  ${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads} (kv ${c.numKvHeads}), vocab ${c.vocabSize}, ` +
    `${model.numParameters().toLocaleString('en-US')} parameters, RoPE ${describeRopeScaling(c.ropeScaling)}`);
  const golden = SafetensorsFile.open(path.join(dir, 'golden.safetensors'));
  const inputIds = golden.read('input_ids').data as Int32Array;
  const labels = golden.read('labels').data as Int32Array;
  const [B, N] = golden.info('input_ids').shape as [number, number];
  for (const p of model.parameters()) p.requireGrad();
  const first = tidy(() => {
    const r = model.loss(idsTensor(inputIds, [B, N]), labels, { logits: true });
    backward(r.loss);
    return { loss: r.loss, logits: r.logits! };
  });
  const loss0 = await first.loss.item();
  const refLoss = (golden.read('loss', 'f64').data as Float64Array)[0]!;
  const logitErr = maxRel(await first.logits.floats(), golden.read('logits', 'f64').data as Float64Array);
  let gradErr = 0;
  for (const [name, p] of model.namedParameters()) gradErr = Math.max(gradErr, maxRel(await p.grad!.floats(), golden.read(`grad.${name}`, 'f64').data as Float64Array));
  first.loss.dispose();
  first.logits.dispose();
  golden.close();
  console.log(`parity with PyTorch (float64 reference): loss ${loss0.toFixed(6)} vs ${refLoss.toFixed(6)}; ` +
    `max relative error: logits ${logitErr.toExponential(1)}, gradients ${gradErr.toExponential(1)}`);
  console.log(`fitting the ${B}×${N}-token batch with gradient descent (lr ${lr}):`);
  let last = loss0;
  for (let step = 1; step <= steps; step++) {
    noGrad(() => tidy(() => { for (const p of model.parameters()) addInto(p, scale(p.grad!, -lr)); }));
    zeroGrad(model.parameters());
    const loss = tidy(() => { const r = model.loss(idsTensor(inputIds, [B, N]), labels); backward(r.loss); return r.loss; });
    last = await loss.item();
    loss.dispose();
    if (step % 10 === 0 || step === steps) console.log(`  step ${String(step).padStart(3)}  loss ${last.toFixed(4)}`);
  }
  zeroGrad(model.parameters());
  model.dispose();
  console.log(`loss ${loss0.toFixed(3)} → ${last.toFixed(3)} in ${((performance.now() - t0) / 1000).toFixed(2)} s on the CPU reference backend.`);
}
