/**
 * The frozen 4-bit linear layer: forward and input gradient against dequantise-then-linear
 * (the op-test helper, float64 finite differences, every backend), no gradient and no kept
 * dequantised weight, LoRA on a 4-bit base, and the Llama model loaded in NF4.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Backend } from '../../src/backend/backend.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { LoRALinear, type LoraRuntime } from '../../src/lora/lora.js';
import { applyLora, mergeLora, resolveTargets, setTrainable } from '../../src/lora/inject.js';
import { Linear, PackedLinear } from '../../src/nn/linear.js';
import { loadLlama, saveLlama } from '../../src/models/llama/load.js';
import { Nf4Weight } from '../../src/quant/nf4-weight.js';
import { quantizeNf4 } from '../../src/quant/nf4.js';
import { fromHost, type Tensor } from '../../src/tensor/tensor.js';
import { testBackends } from '../helpers/backends.js';
import { dequantizeModel, packedMemory, quantizeModel } from '../../src/quant/quantize-model.js';
import { setFingerprintHash } from '../../src/quant/fingerprint.js';
import { nodeHash } from '../../src/quant/node-hash.js';
import { Sha256 } from '../../src/util/sha256.js';
import { backward, tapeLength } from '../../src/tensor/autograd.js';
import * as op from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import { checkOp } from '../helpers/optest.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { goldenDir } from '../helpers/fixtures.js';
import { logitsOf, tinyModel } from '../helpers/model.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('nf4');
const runtime = (): LoraRuntime => ({ training: false, rng: new Rng(1) });

/** A fixed weight [OUT, IN] (IN = 70: blocks of 64 cross the rows) and its NF4 form per backend. */
const OUT = 5;
const IN = 70;
const W = Float32Array.from({ length: OUT * IN }, (_, i) => Math.sin(0.7 * i + 0.3) * (i % 13 === 0 ? 0.9 : 0.2));
const weights = new Map<Backend, Nf4Weight>();
const nf4On = (be: Backend): Nf4Weight => {
  let w = weights.get(be);
  if (!w) { w = Nf4Weight.quantize(W, [OUT, IN], { backend: be }); weights.set(be, w); }
  return w;
};
const freeWeights = (): void => { for (const w of weights.values()) w.dispose(); weights.clear(); };

/** Why a backend cannot run NF4 yet (its kernel throws "not supported"), or null. */
function nf4Support(be: Backend): string | null {
  try {
    nf4On(be).dequantize('f32').dispose();
    return null;
  } catch (e) {
    if (e instanceof LongLoraError && /not supported/.test(e.message)) return e.message;
    throw e;
  }
}

/** Ŵ on the host, through the CPU reference kernel, in float64. */
async function dequantizedHost(): Promise<Float64Array> {
  const t = nf4On(cpuBackend()).dequantize('f64');
  const v = (await t.floats()) as Float64Array;
  t.dispose();
  return v;
}

describe('frozen NF4 linear layer', () => {
  it('forward x·Ŵᵀ and input gradient dy·Ŵ match dequantise-then-linear (all backends)', async (t) => {
    const wHat = await dequantizedHost();
    await checkOp({
      name: 'nf4 linear',
      inputs: [{ shape: [2, 3, IN] }],
      fn: (x) => nf4On(x.backend).linear(x),
      twin: (x) => op.linear(x, tidy(() => nf4On(x.backend).dequantize(x.dtype as 'f32' | 'f64'))),
      reference: (x) => {
        const y = new Float64Array(6 * OUT);
        for (let r = 0; r < 6; r++) for (let o = 0; o < OUT; o++) {
          let s = 0;
          for (let i = 0; i < IN; i++) s += x[r * IN + i]! * wHat[o * IN + i]!;
          y[r * OUT + o] = s;
        }
        return y;
      },
      skipBackend: nf4Support,
    }, (s) => t.diagnostic(s));
    freeWeights();
  });

  it('keeps no dequantised weight between forward and backward, and gives the weight no gradient', async () => {
    const be = cpuBackend();
    const w = nf4On(be);
    const x = op.randn([4, IN], new Rng(2)).requireGrad();
    const before = be.memory();
    const y = tidy(() => w.linear(x));
    const after = be.memory();
    assert.equal(after.buffers - before.buffers, 1, 'only y is new (the tape holds views of the packed parts)');
    assert.equal(after.bytes - before.bytes, 4 * 4 * OUT);
    assert.equal(tapeLength(), 1);
    const total = tidy(() => op.sum(y));
    backward(total);
    assert.ok(x.grad, 'x has a gradient');
    const frozen = op.randn([4, IN], new Rng(3));
    const y2 = tidy(() => w.linear(frozen));
    assert.equal(tapeLength(), 0, 'nothing recorded when no input needs a gradient');
    for (const v of [x, y, total, frozen, y2]) v.dispose();
    freeWeights();
    assert.equal(be.memory().buffers, 0, 'code books freed with the last weight');
  });

  it('a wrong input size is a clear error', () => {
    const w = nf4On(cpuBackend());
    const x = op.randn([2, IN + 1], new Rng(4));
    throwsLL(() => w.linear(x), 'does not fit the nf4 weight [5, 70]');
    x.dispose();
    freeWeights();
  });
});

describe('the fused 4-bit linear layer (decoding)', () => {
  // k = 96: 64-element blocks cross the rows, so a row starts inside a block; k = 256 is
  // block-aligned. n = 37 leaves a partial group of output columns.
  const shapes: Array<[number, number]> = [[37, 96], [37, 256]];
  const weightOf = (n: number, k: number): Float32Array =>
    Float32Array.from({ length: n * k }, (_, i) => Math.sin(0.37 * i + 0.1) * (i % 29 === 0 ? 0.8 : 0.1));

  it('a few rows of x · Ŵᵀ without expanding Ŵ: equal to dequantise-then-matmul (the Wasm backend bit for bit)', async (t) => {
    const cpu = cpuBackend();
    let ran = 0;
    for (const tb of await testBackends()) {
      const be = tb.backend;
      if (!be?.linear4bit) { t.diagnostic(`${tb.name}: no fused 4-bit kernel${tb.skip ? ` (${tb.skip})` : ''}`); continue; }
      for (const [n, k] of shapes) {
        const q = quantizeNf4(weightOf(n, k));
        const w = new Nf4Weight(q, [n, k], { backend: be });
        const ref = new Nf4Weight(q, [n, k], { backend: cpu });
        const d = ref.dequantize('f64');
        const wHat = (await d.floats()) as Float64Array;
        d.dispose();
        ref.dispose();
        for (let m = 1; m <= 4; m++) {
          const xs = op.randn([m, k], new Rng(10 * m + k));
          const xHost = (await xs.floats()) as Float32Array;
          xs.dispose();
          const x = fromHost(xHost, [m, k], 'f32', be);
          be.resetPeak();
          const before = be.memory().bytes;
          const y = w.linear(x);
          const extra = be.memory().peakBytes - before;
          // Only y is allocated: the expanded weight would take 4·n·k bytes.
          assert.ok(extra <= 4 * m * n + 256, `${tb.name} m=${m} k=${k}: ${extra} bytes allocated, the fused kernel did not run`);
          const got = (await y.floats()) as Float32Array;
          const twin = tidy(() => op.linear(x, w.dequantize('f32')));
          const same = (await twin.floats()) as Float32Array;
          const want = new Float64Array(m * n);
          for (let r = 0; r < m; r++) for (let o = 0; o < n; o++) {
            let sum = 0;
            for (let i = 0; i < k; i++) sum += xHost[r * k + i]! * wHat[o * k + i]!;
            want[r * n + o] = sum;
          }
          if (tb.name === 'wasm') assert.deepEqual(got, same, `wasm m=${m} k=${k}: not bit for bit the dequantised product`);
          assertClose(got, want, 1e-5, `${tb.name} fused 4-bit linear m=${m} n=${n} k=${k}`, (line) => t.diagnostic(line));
          for (const v of [x, y, twin]) v.dispose();
          ran++;
        }
        w.dispose();
      }
    }
    if (ran === 0) t.diagnostic('no backend here has a fused 4-bit kernel');
  });

  it('declined (nothing written) where it does not apply: more rows, or k not a multiple of 16', async (t) => {
    for (const tb of await testBackends()) {
      const be = tb.backend;
      if (!be?.linear4bit || tb.name !== 'wasm') continue;
      const cases: Array<[number, number, number]> = [[5, 8, 64], [1, 8, 70]];
      for (const [m, n, k] of cases) {
        const w = Nf4Weight.quantize(weightOf(n, k), [n, k], { backend: be });
        const x = fromHost(new Float32Array(m * k).fill(1), [m, k], 'f32', be);
        const out = fromHost(new Float32Array(m * n).fill(7), [m, n], 'f32', be);
        const parts = (w as unknown as { parts(): Tensor[] }).parts();
        const [packed, codes, absmax, code4, code8] = parts as [Tensor, Tensor, Tensor, Tensor, Tensor];
        const took: boolean = be.linear4bit(x.buffer, packed.buffer, code4.buffer, codes.buffer, code8.buffer, absmax.buffer, out.buffer,
          { m, n, k, blockSize: 64, scaleBlockSize: 256, scaleOffset: w.scaleOffset });
        assert.equal(took, false, `m=${m} k=${k} should be declined`);
        assert.ok(((await out.floats()) as Float32Array).every((v) => v === 7), 'nothing written');
        // The layer still gives the product, through the dequantised weight.
        const y = w.linear(x);
        const twin = tidy(() => op.linear(x, w.dequantize('f32')));
        assert.deepEqual(await y.floats(), await twin.floats());
        for (const v of [x, out, y, twin]) v.dispose();
        w.dispose();
      }
      t.diagnostic(`${tb.name}: declined cases checked`);
    }
  });
});

describe('LoRA on an NF4 base', () => {
  it('forward and gradients of x, A, B equal LoRA over the dequantised weight (all backends)', async (t) => {
    const opts = { r: 2, alpha: 3, dropout: 0, rslora: false };
    await checkOp({
      name: 'lora over nf4',
      inputs: [{ shape: [2, 3, IN] }, { shape: [2, IN] }, { shape: [OUT, 2] }],
      fn: (x, a, b) => new LoRALinear(new PackedLinear(nf4On(x.backend)), opts, a!, b!, runtime()).forward(x),
      twin: (x, a, b) => new LoRALinear(new Linear(tidy(() => nf4On(x.backend).dequantize(x.dtype as 'f32' | 'f64'))), opts, a!, b!, runtime()).forward(x),
      skipBackend: nf4Support,
    }, (s) => t.diagnostic(s));
    freeWeights();
  });

  it('merging a packed base: Ŵ + s·B·A in f32', async () => {
    const be = cpuBackend();
    const a = op.tensor(Array.from({ length: IN }, (_, i) => 0.01 * i), [1, IN]).keep();
    const b = op.tensor(Array.from({ length: OUT }, (_, i) => i - 2), [OUT, 1]).keep();
    const l = new LoRALinear(new PackedLinear(nf4On(be)), { r: 1, alpha: 2, dropout: 0, rslora: false }, a, b, runtime());
    const m = l.mergedWeight();
    const merged = await m.floats();
    m.dispose();
    const wHat = await dequantizedHost();
    const expect = Array.from(wHat, (v, k) => Math.fround(v + Math.fround(2 * Math.fround((Math.floor(k / IN) - 2) * 0.01 * (k % IN)))));
    assertClose(merged, expect, 1e-6, 'merged weight');
    a.dispose(); b.dispose(); freeWeights();
  });
});

describe('Llama with a 4-bit base', () => {
  it('q,k,v,o,gate,up,down are NF4 (not parameters); embeddings, norms and lm_head are not', async () => {
    const model = await loadLlama(goldenDir('tiny-llama'), { quantize: 'nf4' });
    const packed = model.namedBuffers().map(([n]) => n);
    assert.equal(packed.length, 14);
    assert.ok(packed.every((n) => /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(n)), packed.join(', '));
    const params = model.namedParameters().map(([n]) => n);
    assert.ok(!params.some((n) => /_proj\.weight$/.test(n)), params.join(', '));
    assert.ok(params.includes('lm_head.weight') && params.includes('model.embed_tokens.weight'));
    assert.ok(model.lm_head instanceof Linear);
    assert.equal(model.quantization?.format, 'nf4');
    assert.deepEqual(model.quantization?.modules.sort(), ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    assert.ok(packedMemory(model).ratio < 0.3, `ratio ${packedMemory(model).ratio}`);
    model.dispose();
    assert.equal(cpuBackend().memory().buffers, 0, 'dispose frees packed weights and code books');
  });

  it('loading in NF4 equals quantising in memory (same logits, same fingerprint); dequantising keeps the logits', async (t) => {
    const rms = (u: ArrayLike<number>, v: ArrayLike<number>): number => {
      let e = 0;
      let s = 0;
      for (let i = 0; i < u.length; i++) { e += (u[i]! - v[i]!) ** 2; s += v[i]! ** 2; }
      return Math.sqrt(e / s);
    };
    const { model: loaded, ids, B, N } = await tinyModel('tiny-llama', { quantize: 'nf4' });
    const plain = await loadLlama(goldenDir('tiny-llama'));
    const full = await logitsOf(plain, ids, B, N);
    const originals = new Map<string, Float32Array | Float64Array>();
    for (const [n, p] of plain.namedParameters()) originals.set(n, await p.floats());
    const info = await quantizeModel(plain);
    assert.equal(info.fingerprint, loaded.quantization!.fingerprint);
    const a = await logitsOf(loaded, ids, B, N);
    assert.deepEqual(Array.from(await logitsOf(plain, ids, B, N)), Array.from(a), 'identical logits');
    // The quantisation error: about 9% RMS of each weight (NF4 on Gaussian weights in blocks
    // of 64), which this random 2-layer model amplifies to about 23% RMS of its logits.
    let worst = 0;
    for (const [n, w] of loaded.namedBuffers()) {
      const q = w.dequantize('f32');
      worst = Math.max(worst, rms(await q.floats(), originals.get(n)!));
      q.dispose();
    }
    const logitErr = rms(a, full);
    t.diagnostic(`NF4 vs f32: worst relative RMS error of a weight ${worst.toFixed(4)}, of the logits ${logitErr.toFixed(3)}`);
    assert.ok(worst > 0.05 && worst < 0.11, `weight error ${worst}`);
    assert.ok(logitErr > 0.01 && logitErr < 0.35, `logit error ${logitErr}`);
    assert.equal(dequantizeModel(loaded), 14);
    assertClose(await logitsOf(loaded, ids, B, N), a, 1e-6, 'dequantised model vs NF4 model', (s) => t.diagnostic(s));
    assert.equal(loaded.namedBuffers().length, 0);
    loaded.dispose();
    plain.dispose();
    const bf16 = await loadLlama(goldenDir('tiny-llama'), { quantize: 'nf4', dtype: 'bf16' });
    assert.equal(bf16.quantization!.fingerprint, info.fingerprint, 'the fingerprint does not depend on the load dtype');
    bf16.dispose();
    // The plain-JavaScript SHA-256 (what a browser uses) gives the same fingerprint as Node's.
    setFingerprintHash(() => new Sha256());
    try {
      const js = await loadLlama(goldenDir('tiny-llama'), { quantize: 'nf4' });
      assert.equal(js.quantization!.fingerprint, info.fingerprint, 'plain-JavaScript and native SHA-256 agree');
      js.dispose();
    } finally {
      setFingerprintHash(nodeHash);
    }
  });

  it('LoRA at step 0 equals the quantised base; all-linear targets reach the packed layers', async (t) => {
    const { model, ids, B, N } = await tinyModel('tiny-llama', { quantize: 'nf4' });
    const base = await logitsOf(model, ids, B, N);
    const paths = applyLora(model, 'all-linear', { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(0), runtime());
    assert.equal(paths.length, 14);
    assert.deepEqual(resolveTargets(model, ['gate_proj']).length, 2);
    assertClose(await logitsOf(model, ids, B, N), base, 0, 'fresh adapters on the NF4 base vs the NF4 base', (s) => t.diagnostic(s));
    const rep = setTrainable(model, 'lora');
    assert.equal(rep.trainable, 2 * (4 * (32 + 32) + 4 * (32 + 16) * 2 + 4 * (32 + 32) + 3 * 4 * (32 + 64)));
    assert.ok(rep.total > rep.trainable + 2 * 9216, 'the total counts the packed weights');
    assert.equal(mergeLora(model), 14);
    assert.equal(model.namedBuffers().length, 0, 'merging leaves no packed weight');
    model.dispose();
  });

  it('a quantised model cannot be saved as is', async () => {
    const model = await loadLlama(goldenDir('tiny-llama'), { quantize: 'nf4' });
    await assert.rejects(saveLlama(model, fresh()), (e: unknown) => e instanceof LongLoraError && /stored in nf4; dequantise them first/.test(e.message));
    model.dispose();
  });
});
