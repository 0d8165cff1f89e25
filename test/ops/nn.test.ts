import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import { softmax } from '../../src/nn/softmax.js';
import { rmsnorm } from '../../src/nn/rmsnorm.js';
import { rope, ropeAngles } from '../../src/nn/rope.js';
import { embedding } from '../../src/nn/embedding.js';
import { swiglu } from '../../src/nn/swiglu.js';
import { crossEntropy, crossEntropyPerToken, shiftLabels } from '../../src/nn/loss.js';
import { linearCrossEntropy, lossChunkRows } from '../../src/nn/lm-loss.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { checkOp } from '../helpers/optest.js';
import assert from 'node:assert/strict';
import { setBackend } from '../../src/backend/registry.js';
import { backward } from '../../src/tensor/autograd.js';
import { Rng } from '../../src/tensor/random.js';
import { fromFloatArray, toFloatArray } from '../../src/tensor/dtype.js';
import { testBackends } from '../helpers/backends.js';
import { assertClose } from '../helpers/compare.js';

function rows(x: Float64Array, C: number, f: (row: Float64Array) => ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) out.set(f(x.subarray(r * C, r * C + C)), r * C);
  return out;
}

describe('nn ops', () => {
  it('softmax over the last axis', (t) => checkOp({
    name: 'softmax', inputs: [{ shape: [3, 6] }], fn: softmax,
    reference: (x) => rows(x, 6, (r) => { const m = Math.max(...r); const e = r.map((v) => Math.exp(v - m)); const s = e.reduce((a, v) => a + v, 0); return e.map((v) => v / s); }),
    twin: (x) => { const e = op.exp(x); return op.div(e, op.broadcastTo(op.sum(e, -1, true), x.shape)); },
  }, (s) => t.diagnostic(s)));

  it('rmsnorm', (t) => checkOp({
    name: 'rmsnorm', inputs: [{ shape: [2, 3, 8] }, { shape: [8] }], fn: (x, w) => rmsnorm(x, w, 1e-5),
    reference: (x, w) => rows(x, 8, (r) => { const ms = r.reduce((a, v) => a + v * v, 0) / 8; return r.map((v, c) => (v / Math.sqrt(ms + 1e-5)) * w[c]!); }),
    twin: (x, w) => {
      const rs = op.div(op.ones([2, 3, 1], x.dtype), op.sqrt(op.addScalar(op.mean(op.square(x), -1, true), 1e-5)));
      return op.mul(op.mul(x, op.broadcastTo(rs, x.shape)), w);
    },
  }, (s) => t.diagnostic(s)));

  const silu = (v: number): number => v / (1 + Math.exp(-v));
  it('swiglu: silu(gate) · up, fused where the backend has the kernel (odd size)', (t) => checkOp({
    name: 'swiglu', inputs: [{ shape: [3, 7, 5] }, { shape: [3, 7, 5] }], fn: swiglu,
    reference: (g, u) => g.map((v, i) => silu(v) * u[i]!),
    twin: (g, u) => op.mul(op.silu(g), u),
  }, (s) => t.diagnostic(s)));
  it('swiglu with only one input taking a gradient', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    await checkOp({ name: 'swiglu (gate frozen)', inputs: [{ shape: [2, 9], grad: false }, { shape: [2, 9] }], fn: swiglu, twin: (g, u) => op.mul(op.silu(g), u) }, log);
    await checkOp({ name: 'swiglu (up frozen)', inputs: [{ shape: [2, 9] }, { shape: [2, 9], grad: false }], fn: swiglu, twin: (g, u) => op.mul(op.silu(g), u) }, log);
  });

  const [B, N, H, D] = [2, 5, 3, 6];
  const theta = 10000;
  const scaling = { type: 'linear', factor: 2 } as const;
  const ropeOf = (x: Tensor): Tensor => {
    const { cos, sin } = ropeAngles(N, D, theta, scaling);
    const conv = (a: Float64Array): Tensor => op.fromHost(x.dtype === 'f64' ? a : Float32Array.from(a), [N, D / 2], x.dtype, x.backend);
    return rope(x, { cos: conv(cos), sin: conv(sin) });
  };
  it('rope (rotate-half, linear interpolation factor 2)', (t) => checkOp({
    name: 'rope', inputs: [{ shape: [B, N, H, D] }], fn: ropeOf,
    // pair (d, d + D/2) rotates by angle (n / factor)·theta^(−2d/D)
    reference: (x) => {
      const out = new Float64Array(x.length);
      for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let h = 0; h < H; h++) {
        const o = ((b * N + n) * H + h) * D;
        for (let d = 0; d < D / 2; d++) {
          const a = (n / 2) * theta ** (-2 * d / D);
          const [x1, x2] = [x[o + d]!, x[o + d + D / 2]!];
          out[o + d] = x1 * Math.cos(a) - x2 * Math.sin(a);
          out[o + d + D / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
      return out;
    },
  }, (s) => t.diagnostic(s)));

  it('embedding lookup (gradient = scatter-add, repeated ids)', (t) => checkOp({
    name: 'embedding', inputs: [{ shape: [7, 4] }, { shape: [2, 5], kind: 'ids', values: [1, 3, 3, 0, 6, 6, 6, 2, 1, 3] }],
    fn: embedding,
    reference: (tab, ids) => { const out: number[] = []; for (const i of ids) out.push(...tab.subarray(i * 4, i * 4 + 4)); return out; },
  }, (s) => t.diagnostic(s)));

  const V = 7;
  const targets = [3, -100, 0, 6, -100, 2];
  const ceRef = (x: Float64Array): number[] => targets.map((y, r) => {
    if (y === -100) return 0;
    const row = x.subarray(r * V, r * V + V);
    const m = Math.max(...row);
    return m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[y]!;
  });
  it('cross-entropy per token with ignore index', (t) => checkOp({
    name: 'crossEntropyPerToken', inputs: [{ shape: [6, V] }],
    fn: (x) => crossEntropyPerToken(x, op.ids(targets, [6], x.backend)),
    reference: (x) => ceRef(x),
  }, (s) => t.diagnostic(s)));

  it('mean cross-entropy over non-ignored targets', (t) => checkOp({
    name: 'crossEntropy', inputs: [{ shape: [6, V] }], fn: (x) => crossEntropy(x, Int32Array.from(targets)),
    reference: (x) => [ceRef(x).reduce((a, v) => a + v, 0) / 4],
  }, (s) => t.diagnostic(s)));

  it('chunked linear + cross-entropy equals the logits path (chunks of 4 over 6 rows)', (t) => checkOp({
    name: 'linearCrossEntropy', inputs: [{ shape: [6, 5] }, { shape: [V, 5] }],
    fn: (h, w) => linearCrossEntropy(h, w, Int32Array.from(targets), 4),
    twin: (h, w) => crossEntropy(op.linear(h, w), Int32Array.from(targets)),
  }, (s) => t.diagnostic(s)));

  it('the default chunk keeps a chunk\'s logits near 64 MiB, within 64 to 1024 rows; a bad chunk is refused', () => {
    assert.deepEqual([96, 2048, 32000, 128256, 256000, 10 ** 7].map(lossChunkRows), [1024, 1024, 512, 128, 64, 64]);
    assert.throws(() => linearCrossEntropy(op.tensor([[1, 2]]), op.tensor([[1, 0], [0, 1]]), Int32Array.from([1]), 0), /chunk must be a whole number of rows ≥ 1, got 0/);
  });

  it('chunked linear + cross-entropy on 16-bit hidden states: f32 loss and dW, dh in h\'s dtype, on every backend', async (t) => {
    for (const tb of await testBackends()) {
      if (!tb.backend) { t.diagnostic(`${tb.name} skipped: ${tb.skip}`); continue; }
      const be = await setBackend(tb.name);
      const rng = new Rng(11);
      const [T, C, Vh] = [7, 6, 9];
      const tg = Int32Array.from({ length: T }, (_, i) => (i === 3 ? -100 : rng.int(Vh)));
      const run = async (dtype: 'bf16' | 'f32'): Promise<{ loss: number; dh: Float32Array; dW: Float32Array }> => {
        // h holds bf16-representable values in both runs, so the two differ only by f32 noise and dh's rounding.
        const h0 = op.cast(op.cast(op.tensor(Array.from({ length: T * C }, () => rng.normal()), [T, C], 'f32', be), 'bf16'), 'f32').requireGrad();
        const w = op.tensor(Array.from({ length: Vh * C }, () => rng.normal()), [Vh, C], 'f32', be).requireGrad();
        const h = dtype === 'f32' ? h0 : op.cast(h0, dtype);
        const loss = linearCrossEntropy(h, w, tg, 3);
        backward(loss);
        const r = { loss: await loss.item(), dh: await h0.grad!.floats() as Float32Array, dW: await w.grad!.floats() as Float32Array };
        for (const x of new Set([loss, h, h0, w])) x.dispose();
        return r;
      };
      const seed = rng.state();
      const f = await run('f32');
      rng.setState(seed);
      const b = await run('bf16');
      // dh was stored in bf16 (then cast exactly to h0's f32): every value is a bf16 value.
      assert.deepEqual(b.dh, toFloatArray(fromFloatArray(b.dh, 'bf16'), 'bf16', 'f32'), `${tb.name}: dh takes h's dtype`);
      assert.ok(Math.abs(b.loss - f.loss) <= 1e-6 * Math.abs(f.loss), `${tb.name}: loss ${b.loss} vs ${f.loss}`);
      assertClose(b.dW, f.dW, 1e-5, `${tb.name} dW`, (s) => t.diagnostic(s));
      assertClose(b.dh, f.dh, 2 ** -8 + 1e-5, `${tb.name} dh (one bf16 rounding)`, (s) => t.diagnostic(s));
    }
    await setBackend('cpu');
  });

  it('shiftLabels: position t predicts t+1, the last of each row is ignored', () => {
    const got = Array.from(shiftLabels([1, 2, 3, 4, 5, 6], 2, 3));
    if (JSON.stringify(got) !== JSON.stringify([2, 3, -100, 5, 6, -100])) throw new Error(`got ${got}`);
  });
});
