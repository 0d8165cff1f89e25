/**
 * bf16 checkpoints. tiny-llama-bf16 holds the weights of tiny-llama rounded to bfloat16;
 * its golden logits were computed in float64 from exactly those bf16 values. Loaded with
 * dtype 'bf16' the weights stay 16-bit and are cast to f32 per use (exactly: every bf16
 * value is an f32 value), so both load dtypes must reproduce the golden like f32 does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeviceBuffer } from '../../src/backend/backend.js';
import { cpuBackend, setBackend } from '../../src/backend/registry.js';
import { LongLoraError } from '../../src/errors.js';
import { loadLlama, type ParamDType } from '../../src/models/llama/load.js';
import type { LlamaForCausalLM } from '../../src/models/llama/model.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { tidy } from '../../src/tensor/scope.js';
import { testBackends } from '../helpers/backends.js';
import { assertClose, diff } from '../helpers/compare.js';
import { Golden, goldenDir } from '../helpers/fixtures.js';

/** Same tolerance as the f32 golden test: f32 activations against a float64 reference. */
const TOL_F32 = 1e-4;

/**
 * bf16 against its f32 twin, from first principles. bf16 keeps 8 significant bits, so
 * round-to-nearest changes each weight by a relative ≤ u = 2^-9 ≈ 1.95e-3. To first order
 * the logit error is the sum of the contributions of every weight tensor a logit depends
 * on: embed_tokens, 9 per layer (2 norms, q, k, v, o, gate, up, down), the final norm and
 * lm_head, so K = 1 + 9·L + 2 = 21 for L = 2. Each stage is well conditioned (RMSNorm
 * rescales the residual stream, the random weights are ~1/√fan_in), so a stage passes a
 * relative perturbation through with a gain of about 1, and the worst case is K·u ≈ 0.041
 * of the logit scale. Rounding errors have random signs and add more like a random walk
 * (√K·u ≈ 9e-3), so the measurement (printed; about 4·u here) sits well inside the
 * worst case, which is the tolerance.
 */
const BF16_U = 2 ** -9;
const BF16_K = 21;
const TOL_BF16_VS_F32 = BF16_K * BF16_U;
/** Below this the two checkpoints would not really differ (f32 noise is ~1e-6). */
const MIN_BF16_EFFECT = 1e-4;

async function logitsOf(model: LlamaForCausalLM, g: Golden): Promise<Float32Array | Float64Array> {
  const [B, N] = g.shape('input_ids') as [number, number];
  const logits = tidy(() => model.forward(idsTensor(g.i32('input_ids'), [B, N])));
  const out = await logits.floats();
  logits.dispose();
  return out;
}

describe('bf16 checkpoint', () => {
  for (const dtype of ['bf16', 'f32'] as const satisfies readonly ParamDType[]) {
    it(`loaded as ${dtype} matches its golden logits within ${TOL_F32}`, async (t) => {
      const log = (s: string): void => t.diagnostic(s);
      const before = cpuBackend().memory();
      const g = new Golden('tiny-llama-bf16');
      const model = await loadLlama(goldenDir('tiny-llama-bf16'), { dtype });
      const paramBytes = cpuBackend().memory().bytes - before.bytes;
      assert.equal(paramBytes, model.numParameters() * (dtype === 'bf16' ? 2 : 4), `parameters held in ${dtype}`);
      log(`${dtype}: ${model.numParameters()} parameters in ${paramBytes} bytes`);
      assertClose(await logitsOf(model, g), g.f64('logits'), TOL_F32, `logits (${dtype})`, log);
      model.dispose();
      g.close();
      assert.equal(cpuBackend().memory().buffers, before.buffers, 'every buffer freed (casts included)');
    });
  }

  it(`equals its f32 twin (tiny-llama) within K·2^-9 = ${TOL_BF16_VS_F32.toFixed(3)}`, async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    const g = new Golden('tiny-llama-bf16');
    const twin = new Golden('tiny-llama');
    assert.deepEqual(g.i32('input_ids'), twin.i32('input_ids'), 'both goldens use the same ids');
    const model = await loadLlama(goldenDir('tiny-llama-bf16'), { dtype: 'bf16' });
    const ours = await logitsOf(model, g);
    const f32Logits = twin.f64('logits');
    const d = assertClose(ours, f32Logits, TOL_BF16_VS_F32, 'bf16 model vs f32 twin logits', log);
    assert.ok(d.rel > MIN_BF16_EFFECT, `the bf16 rounding should show (rel ${d.rel.toExponential(2)} > ${MIN_BF16_EFFECT})`);
    // The same comparison between the two float64 goldens is the exact effect of rounding the
    // weights; ours must be that effect, not something the f32 arithmetic added.
    const exact = diff(g.f64('logits'), f32Logits);
    log(`golden bf16 vs golden f32 (exact effect of rounding): max|diff| ${exact.maxAbs.toExponential(2)}, rel ${exact.rel.toExponential(2)}`);
    log(`measured rel ${d.rel.toExponential(2)} = ${(d.rel / BF16_U).toFixed(2)}·2^-9 (worst-case estimate ${BF16_K}·2^-9)`);
    assert.ok(Math.abs(d.rel - exact.rel) <= TOL_F32, 'measured effect equals the exact one within f32 noise');
    model.dispose();
    g.close();
    twin.close();
  });

  for (const name of ['cpu', 'wasm'] as const) {
    it(`a bf16 model's forward on ${name} never widens a whole weight to f32${name === 'cpu' ? ' (the embedding table: its rows are widened after the lookup)' : ' (matmul reads bf16, the lookup takes rows)'}`, async (t) => {
      const tb = (await testBackends()).find((b) => b.name === name);
      if (!tb?.backend) { t.skip(`backend ${name} unavailable: ${tb?.skip}`); return; }
      const be = await setBackend(name);
      const g = new Golden('tiny-llama-bf16');
      const model = await loadLlama(goldenDir('tiny-llama-bf16'), { dtype: 'bf16', backend: be });
      // Matrices only: the norm weights are vectors of C values, widened by the RMSNorm kernel at no cost that matters.
      const weights = new Map(model.namedParameters().filter(([, p]) => p.rank === 2).map(([n, p]) => [p.buffer, n]));
      const casts: string[] = [];
      const target = be as unknown as { cast: (src: DeviceBuffer, dst: DeviceBuffer) => void };
      const cast = target.cast;
      target.cast = (src, dst) => { const n = weights.get(src); if (n) casts.push(n); cast.call(be, src, dst); };
      try {
        const logits = await logitsOf(model, g);
        assertClose(logits, g.f64('logits'), TOL_F32, `logits (bf16 on ${name})`, (s) => t.diagnostic(s));
      } finally {
        target.cast = cast;
        model.dispose();
        g.close();
        await setBackend('cpu');
      }
      // The CPU backend widens matmul operands (storage16.ts); the lookup must not widen the table.
      const widened = name === 'cpu' ? casts.filter((n) => n === 'model.embed_tokens.weight') : casts;
      assert.deepEqual(widened, [], `weights cast whole to f32: ${widened.join(', ')}`);
      if (name === 'cpu') assert.ok(casts.length > 0, 'the CPU backend widens the matmul weights (the check sees casts)');
    });
  }

  it('loaded as bf16 holds bf16 parameters, and refuses requireGrad() with a useful error', async (t) => {
    const model = await loadLlama(goldenDir('tiny-llama-bf16'), { dtype: 'bf16' });
    const named = model.namedParameters();
    assert.equal(named.length, 21);
    for (const [name, p] of named) assert.equal(p.dtype, 'bf16', `${name} is stored as bf16`);
    assert.equal(model.computeDType, 'f32', 'activations are f32');
    const [name, p] = named.find(([n]) => n === 'model.layers.0.self_attn.q_proj.weight')!;
    assert.throws(() => p.requireGrad(), (err: unknown) => {
      assert.ok(err instanceof LongLoraError, `expected a LongLoraError, got ${String(err)}`);
      assert.ok(err.message.includes(name), `message names the tensor: ${err.message}`);
      assert.ok(err.message.includes('bf16'), `message names its dtype: ${err.message}`);
      assert.ok(err.message.includes('f32'), `message says what a trainable tensor must be: ${err.message}`);
      t.diagnostic(`requireGrad on bf16: ${err.message}`);
      return true;
    });
    assert.equal(p.requiresGrad, false, 'the failed call changed nothing');
    model.dispose();
  });
});
