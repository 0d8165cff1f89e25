/**
 * NF4 quantisation: the code books and every quantised byte against the golden tensors of
 * scripts/golden/make_golden_nf4.py (an independent torch implementation of the published
 * algorithm), exactly; the round-trip error bound per block; odd sizes and bad input.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import {
  DYNAMIC_CODE, DYNAMIC_MIDPOINTS, NF4_CODE, NF4_MIDPOINTS, largestGap, nearestCode,
} from '../../src/quant/codebooks.js';
import {
  DYNAMIC_HALF_GAP, NF4_HALF_GAP, dequantizeScales, nf4Bytes, quantizeNf4, unpackNibbles, type Nf4Data,
} from '../../src/quant/nf4.js';
import { Nf4Weight } from '../../src/quant/nf4-weight.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { Rng } from '../../src/tensor/random.js';
import { GOLDEN } from '../helpers/fixtures.js';
import { testBackends } from '../helpers/backends.js';
import { LongLoraError } from '../../src/errors.js';
import { throwsLL } from '../helpers/errors.js';

const golden = (): SafetensorsFile => SafetensorsFile.open(path.join(GOLDEN, 'nf4.safetensors'));

/** Number of positions where two arrays differ, with the first one, for messages. */
function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): string {
  assert.equal(a.length, b.length, 'lengths');
  let n = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) { n++; if (first < 0) first = i; }
  return n === 0 ? '' : `${n} of ${a.length} differ, first at ${first}: ${a[first]} vs ${b[first]}`;
}

function assertSame(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  const m = mismatches(a, b);
  assert.equal(m, '', `${what}: ${m}`);
}

/** Dequantised values through the backend kernel (the path the model uses). */
async function viaKernel(q: Nf4Data, shape: number[]): Promise<Float32Array> {
  const w = new Nf4Weight(q, shape, { backend: cpuBackend() });
  const t = w.dequantize('f32');
  const v = (await t.floats()) as Float32Array;
  t.dispose();
  w.dispose();
  return v;
}

describe('NF4 code books', () => {
  it('equal the golden script\'s (NF4 from the normal quantiles, the 8-bit dynamic map)', () => {
    const f = golden();
    assertSame(NF4_CODE, f.read('nf4_code').data as Float32Array, 'NF4 code book');
    assertSame(DYNAMIC_CODE, f.read('dynamic_code').data as Float32Array, 'dynamic map');
    f.close();
  });

  it('the dynamic map is within float32 rounding (< 2e-7 relative) of its exact formula', () => {
    const exact: number[] = [];
    for (let i = 0; i < 7; i++) {
      const k = 2 ** i;
      for (let j = 0; j < k; j++) exact.push(10 ** (i - 6) * (0.1 + (0.9 * (j + 0.5)) / k));
    }
    const all = [...exact.map((v) => -v), 0, ...exact, 1].sort((a, b) => a - b);
    let worst = 0;
    all.forEach((v, i) => { if (v !== 0) worst = Math.max(worst, Math.abs(DYNAMIC_CODE[i]! - v) / Math.abs(v)); });
    assert.ok(worst < 2e-7, `max relative difference ${worst}`);
  });

  it('nearest code: ties go to the lower code, one ulp above to the upper', () => {
    for (const [code, mid] of [[NF4_CODE, NF4_MIDPOINTS], [DYNAMIC_CODE, DYNAMIC_MIDPOINTS]] as const) {
      for (let j = 0; j < mid.length; j++) {
        assert.equal(nearestCode(mid, mid[j]!), j);
        const up = new Float32Array([mid[j]!]);
        new Uint32Array(up.buffer)[0]! += mid[j]! > 0 ? 1 : -1; // one ulp towards +∞
        assert.equal(nearestCode(mid, up[0]!), j + 1);
      }
      for (let j = 0; j < code.length; j++) assert.equal(nearestCode(mid, code[j]!), j);
    }
    assert.ok(Math.abs(largestGap(NF4_CODE) - 0.3038072) < 1e-6);
  });
});

describe('NF4 quantisation against the golden tensors', () => {
  for (const name of ['main', 'odd', 'one']) {
    it(`${name}: codes, packed bytes, double-quantised scales and dequantised values, exactly`, async (t) => {
      const f = golden();
      const g = (k: string) => f.read(`${name}.${k}`).data;
      const shape = f.info(`${name}.input`).shape;
      const q = quantizeNf4(g('input') as Float32Array, name);
      assertSame(unpackNibbles(q.packed, q.n), g('codes') as Uint8Array, 'codes');
      assertSame(q.packed, g('packed') as Uint8Array, 'packed bytes');
      assertSame(q.scaleCodes, g('scale_codes') as Uint8Array, 'scale codes');
      assertSame(q.scaleAbsmax, g('scale_absmax') as Float32Array, 'scale absmax');
      assert.equal(q.scaleOffset, (g('scale_offset') as Float32Array)[0], 'scale offset');
      assertSame(dequantizeScales(q), g('scales') as Float32Array, 'dequantised scales');
      assertSame(await viaKernel(q, shape), g('dequantized') as Float32Array, 'dequantised values (CPU kernel)');
      t.diagnostic(`${name} [${shape}]: ${q.n} values, ${q.scaleCodes.length} blocks, ${q.packed.length} packed bytes: all equal`);
      f.close();
    });
  }
});

describe('NF4 dequantisation on every backend', () => {
  it('equals the golden values bit for bit (float32 arithmetic is part of the format)', async (t) => {
    const f = golden();
    const q = quantizeNf4(f.read('main.input').data as Float32Array);
    const want = f.read('main.dequantized').data as Float32Array;
    f.close();
    for (const tb of await testBackends()) {
      if (!tb.backend) { t.diagnostic(`${tb.name}: skipped (${tb.skip})`); continue; }
      const w = new Nf4Weight(q, [136, 128], { backend: tb.backend });
      try {
        const d = w.dequantize('f32');
        assertSame(await d.floats(), want, `${tb.name} dequantize4bit`);
        d.dispose();
        t.diagnostic(`${tb.name}: ${want.length} values identical`);
      } catch (e) {
        if (!(e instanceof LongLoraError && /not supported/.test(e.message))) throw e;
        t.diagnostic(`${tb.name}: skipped (${e.message})`);
      } finally {
        w.dispose();
      }
    }
  });
});

describe('NF4 round trip', () => {
  it('every value within half the largest NF4 gap × its block absmax, plus the scale\'s own error', async (t) => {
    // Weight-like values with outliers, a size that is not a multiple of 64 (partial last block).
    const rng = new Rng(11);
    const n = 64 * 300 + 45;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = rng.normal() * 0.02 * (i % 997 === 0 ? 40 : 1);
    const q = quantizeNf4(x);
    const deq = await viaKernel(q, [1, n]);
    const scales = dequantizeScales(q);
    let worstRatio = 0;
    let worstScale = 0;
    for (let b = 0; b < scales.length; b++) {
      let a = 0;
      for (let i = 64 * b; i < Math.min(n, 64 * b + 64); i++) a = Math.max(a, Math.abs(x[i]!));
      const absmax2 = q.scaleAbsmax[Math.floor(b / 256)]!;
      const scaleErr = Math.abs(a - scales[b]!);
      assert.ok(scaleErr <= DYNAMIC_HALF_GAP * absmax2 + 1e-6 * a, `block ${b}: scale error ${scaleErr} > ${DYNAMIC_HALF_GAP} × ${absmax2}`);
      worstScale = Math.max(worstScale, scaleErr / (DYNAMIC_HALF_GAP * absmax2));
      const bound = NF4_HALF_GAP * a + scaleErr + 1e-6 * a;
      for (let i = 64 * b; i < Math.min(n, 64 * b + 64); i++) {
        const err = Math.abs(x[i]! - deq[i]!);
        assert.ok(err <= bound, `value ${i} (block ${b}): error ${err} > bound ${bound}`);
        worstRatio = Math.max(worstRatio, err / bound);
      }
    }
    t.diagnostic(`${scales.length} blocks: worst error / bound ${worstRatio.toFixed(3)}; worst scale error / its bound ${worstScale.toFixed(3)}`);
  });

  it('sizes: 4.13 bits per value; odd and partial sizes are handled, not padded with values', async () => {
    assert.equal(nf4Bytes(64 * 256), 64 * 128 + 256 + 4);
    assert.ok(nf4Bytes(4096 * 4096) / (2 * 4096 * 4096) < 0.26);
    const x = Float32Array.from([0.5, -0.25, 0.125]); // 3 values: one partial block, one padding nibble
    const q = quantizeNf4(x);
    assert.deepEqual([q.packed.length, q.scaleCodes.length, q.scaleAbsmax.length], [2, 1, 1]);
    assert.equal(q.packed[1]! & 0x0f, 7, 'the padding nibble is the code of 0');
    // one block: absmax 0.5 = the offset, so the scale is exact; −0.5 and 0.25 (normalised) → codes 2 and 10
    assert.deepEqual(Array.from(await viaKernel(q, [1, 3])), [0.5, Math.fround(NF4_CODE[2]! * 0.5), Math.fround(NF4_CODE[10]! * 0.5)]);
  });

  it('bad input: empty, non-finite values, a shape that does not fit, mismatched data', () => {
    throwsLL(() => quantizeNf4(new Float32Array(0), 'w'), 'w is empty');
    throwsLL(() => quantizeNf4(Float32Array.from([1, NaN]), 'model.layers.0.mlp.up_proj.weight'), 'up_proj', 'NaN at index 1', 'finite');
    throwsLL(() => Nf4Weight.quantize(new Float32Array(12), [5, 2]), '12 values cannot have shape [5, 2]');
    const q = quantizeNf4(new Float32Array(130).fill(1));
    throwsLL(() => new Nf4Weight({ ...q, scaleCodes: q.scaleCodes.subarray(1) }, [13, 10]), '2 scale codes', 'need 3');
    assert.equal(cpuBackend().memory().buffers, 0, 'nothing left allocated');
  });
});
