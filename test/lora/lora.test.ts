import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoRALinear, type LoraRuntime } from '../../src/lora/lora.js';
import { applyLora, mergeLora, resolveTargets, setTrainable, ALL_LINEAR, type TrainMode } from '../../src/lora/inject.js';
import { Linear } from '../../src/nn/linear.js';
import { dropout } from '../../src/nn/dropout.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { backward, zeroGrad } from '../../src/tensor/autograd.js';
import * as op from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { checkOp } from '../helpers/optest.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { logitsOf, tinyModel } from '../helpers/model.js';

const runtime = (): LoraRuntime => ({ training: false, rng: new Rng(1) });

function hostLinear(x: Float64Array, w: Float64Array, rows: number, inF: number, out: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inF; i++) s += x[r * inF + i]! * w[o * inF + i]!;
    y[r * out + o] = s;
  }
  return y;
}

describe('LoRA layer', () => {
  for (const rslora of [false, true]) {
    it(`forward x·Wᵀ + s·(x·Aᵀ)·Bᵀ and gradients for x, A, B (W frozen), rslora=${rslora}`, (t) => checkOp({
      name: `lora rslora=${rslora}`,
      inputs: [{ shape: [2, 3, 5] }, { shape: [4, 5], grad: false }, { shape: [2, 5] }, { shape: [4, 2] }],
      fn: (x, w, a, b) => new LoRALinear(new Linear(w), { r: 2, alpha: 3, dropout: 0, rslora }, a, b, runtime()).forward(x),
      reference: (x, w, a, b) => {
        const s = rslora ? 3 / Math.sqrt(2) : 3 / 2;
        const y = hostLinear(x, w, 6, 5, 4);
        const d = hostLinear(hostLinear(x, a, 6, 5, 2), b, 6, 2, 4);
        return y.map((v, i) => v + s * d[i]!);
      },
    }, (s) => t.diagnostic(s)));
  }

  it('merged weight equals W + s·B·A', async () => {
    const w = op.tensor([[1, 2], [3, 4], [5, 6]]);
    const a = op.tensor([[0.5, -1]]);
    const b = op.tensor([[2], [0], [-1]]);
    const l = new LoRALinear(new Linear(w), { r: 1, alpha: 2, dropout: 0, rslora: false }, a, b, runtime());
    const m = l.mergedWeight();
    assert.deepEqual(Array.from(await m.floats()), [1 + 2, 2 - 4, 3, 4, 5 - 1, 6 + 2]);
    for (const x of [m, w, a, b]) x.dispose();
  });

  it('dropout: expected value kept, reproducible from the seed, identity when p = 0', async () => {
    const x = op.ones([20000]);
    const y1 = await dropout(x, 0.25, new Rng(3)).floats();
    const y2 = await dropout(x, 0.25, new Rng(3)).floats();
    assert.deepEqual(y1, y2);
    const mean = Array.from(y1).reduce((a, v) => a + v, 0) / y1.length;
    assert.ok(Math.abs(mean - 1) < 0.03, `mean ${mean}`);
    assert.ok(y1.some((v) => v === 0) && y1.some((v) => Math.abs(v - 4 / 3) < 1e-6));
    assert.equal(dropout(x, 0, new Rng(3)), x);
  });
});

describe('LoRA in the Llama model', () => {
  it('step 0 equals the base model (B starts at zero)', async (t) => {
    const { model, ids, B, N } = await tinyModel();
    const base = await logitsOf(model, ids, B, N);
    const paths = applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(0), runtime());
    assert.equal(paths.length, 8);
    const adapted = await logitsOf(model, ids, B, N);
    assertClose(adapted, base, 0, 'logits with fresh adapters vs base', (s) => t.diagnostic(s));
    model.dispose();
  });

  it('targets: names, all-linear, and a clear error for a module that does not exist', async () => {
    const { model } = await tinyModel();
    assert.equal(resolveTargets(model, ['q_proj', 'v_proj']).length, 4);
    const all = resolveTargets(model, ALL_LINEAR);
    assert.equal(all.length, 14, 'seven linear layers per block, no lm_head');
    assert.ok(!all.includes('lm_head'));
    throwsLL(() => resolveTargets(model, ['qproj']), "LoRA target 'qproj' matches no module", 'q_proj, k_proj');
    throwsLL(() => resolveTargets(model, 'q_proj' as typeof ALL_LINEAR), "give ['q_proj'], not the string 'q_proj'");
    throwsLL(() => resolveTargets(model, ['q_proj', 'all-linear']), "'all-linear' selects every linear layer only as the whole value");
    model.dispose();
  });

  it('trainable sets: longlora = adapters + embed + norms; lora = adapters; full = all; frozen get no gradient', async () => {
    const { model, ids, labels, B, N } = await tinyModel();
    applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(0), runtime());
    const rep = setTrainable(model, 'longlora', ['embed', 'norm']);
    const expected = 8 * 2 + 1 + 2 * 2 + 1; // A and B of 8 layers, embed, 2 norms × 2 layers, final norm
    assert.equal(rep.names.length, expected);
    assert.ok(rep.names.includes('model.embed_tokens.weight') && rep.names.includes('model.norm.weight'));
    assert.ok(!rep.names.includes('lm_head.weight'), 'lm_head stays frozen');
    tidy(() => backward(model.loss(op.ids(ids, [B, N]), labels).loss));
    for (const [n, p] of model.namedParameters()) assert.equal(p.grad !== null, rep.names.includes(n), `${n} gradient presence`);
    zeroGrad(model.parameters());
    assert.equal(setTrainable(model, 'lora').names.length, 16);
    assert.deepEqual(setTrainable(model, 'longlora').names, rep.names, 'longlora trains embed and norm unless told otherwise');
    assert.equal(setTrainable(model, 'longlora', []).names.length, 16, 'explicitly no extras');
    assert.equal(setTrainable(model, 'full').names.length, model.namedParameters().length);
    throwsLL(() => setTrainable(model, 'qlora' as TrainMode), "unknown training mode 'qlora'; choose one of longlora, lora, full");
    throwsLL(() => setTrainable(model, 'longlora', ['embedding_layer']), "trainable extra 'embedding_layer' matches no parameter");
    throwsLL(() => setTrainable(model, 'lora', ['norm']), "mode 'lora' trains adapters only");
    model.dispose();
    const plain = (await tinyModel()).model;
    throwsLL(() => setTrainable(plain, 'longlora', ['embed']), 'has none');
    plain.dispose();
  });

  it('16-bit frozen base: trainable extras become f32 masters, the rest stays bf16', async () => {
    const { model } = await tinyModel('tiny-llama-bf16', { dtype: 'bf16' });
    applyLora(model, ['q_proj'], { r: 2, alpha: 4, dropout: 0, rslora: false }, new Rng(0), runtime());
    setTrainable(model, 'longlora', ['embed', 'norm']);
    const named = new Map(model.namedParameters());
    assert.equal(named.get('model.embed_tokens.weight')!.dtype, 'f32');
    assert.equal(named.get('model.layers.0.mlp.up_proj.weight')!.dtype, 'bf16');
    assert.equal(named.get('model.layers.0.self_attn.q_proj.lora_A.weight')!.dtype, 'f32');
    model.dispose();
  });

  it('merge: the merged model gives the logits of base + adapter (≤ 1e-5 relative)', async (t) => {
    const { model, ids, B, N } = await tinyModel();
    applyLora(model, ALL_LINEAR, { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(5), runtime());
    const rng = new Rng(9);
    for (const [, p] of model.namedParameters().filter(([n]) => n.endsWith('lora_B.weight'))) {
      cpuBackend().upload(p.buffer, Float32Array.from({ length: p.size }, () => rng.normal() * 0.05));
    }
    const adapted = await logitsOf(model, ids, B, N);
    const before = await logitsOf((await tinyModel()).model, ids, B, N);
    assert.ok(adapted.some((v, i) => Math.abs(v - before[i]!) > 1e-3), 'the adapter changes the logits');
    assert.equal(mergeLora(model), 14);
    const merged = await logitsOf(model, ids, B, N);
    assertClose(merged, adapted, 1e-5, 'merged vs base + adapter', (s) => t.diagnostic(s));
    assert.ok(!model.namedParameters().some(([n]) => n.includes('lora_')));
    model.dispose();
  });
});
