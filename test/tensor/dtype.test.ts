import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/tensor/dtype.js';
import * as op from '../../src/tensor/ops/index.js';
import { Rng } from '../../src/tensor/random.js';
import { fromHost } from '../../src/tensor/tensor.js';

describe('16-bit floats', () => {
  it('bf16: round to nearest even, specials', () => {
    assert.equal(f32ToBf16Bits(1), 0x3f80);
    assert.equal(bf16BitsToF32(f32ToBf16Bits(3.14159)), 3.140625);
    // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even (1)
    assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8)), 1);
    assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
    assert.equal(bf16BitsToF32(f32ToBf16Bits(-Infinity)), -Infinity);
    assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  });

  it('f16: normals, subnormals, overflow, ties to even', () => {
    assert.equal(f32ToF16Bits(1), 0x3c00);
    assert.equal(f32ToF16Bits(-2), 0xc000);
    assert.equal(f32ToF16Bits(65504), 0x7bff);
    assert.equal(f32ToF16Bits(65520), 0x7c00, 'rounds up to infinity');
    assert.equal(f32ToF16Bits(2 ** -24), 0x0001, 'smallest subnormal');
    assert.equal(f32ToF16Bits(2 ** -25), 0x0000, 'halfway to zero ties to even (0)');
    assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002, 'halfway between 1 and 2 subnormal steps ties to even (2)');
    assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00, 'tie to even');
    for (let h = 0; h < 0x7c00; h += 37) assert.equal(f32ToF16Bits(f16BitsToF32(h)), h, `round trip of 0x${h.toString(16)}`);
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  });

  it('cast kernels between f32, bf16 and f16', async () => {
    const x = op.tensor([1, 3.14159, -0.1, 1e-6]);
    for (const dt of ['bf16', 'f16'] as const) {
      const y = op.cast(x, dt);
      const back = await op.cast(y, 'f32').floats();
      const enc = dt === 'bf16' ? f32ToBf16Bits : f32ToF16Bits;
      const dec = dt === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
      assert.deepEqual(Array.from(back), [1, 3.14159, -0.1, 1e-6].map((v) => dec(enc(v))));
      y.dispose();
    }
    x.dispose();
  });
});

describe('seeded random generator', () => {
  it('is deterministic and resumes from its state', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    assert.deepEqual([a.uniform(), a.normal()], [b.uniform(), b.normal()]);
    const s = a.state();
    const next = [a.normal(), a.int(1000), a.uniform()];
    const c = Rng.fromState(s);
    assert.deepEqual([c.normal(), c.int(1000), c.uniform()], next);
    assert.notDeepEqual([new Rng(1).uniform()], [new Rng(2).uniform()]);
  });

  it('normal() has mean 0 and variance 1', () => {
    const r = new Rng(7);
    let s = 0;
    let s2 = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) { const v = r.normal(); s += v; s2 += v * v; }
    assert.ok(Math.abs(s / n) < 0.03);
    assert.ok(Math.abs(s2 / n - 1) < 0.04);
  });
});

describe('fromHost', () => {
  it('takes the dtype of the array when none is given; 16-bit bits need one', async () => {
    const cases: Array<[Float32Array | Float64Array | Int32Array | Uint8Array, string]> = [
      [Float32Array.from([1.5, 2]), 'f32'], [Float64Array.from([1.5, 2]), 'f64'], [Int32Array.from([-3, 4]), 'i32'], [Uint8Array.from([7, 9]), 'u8'],
    ];
    for (const [data, dtype] of cases) {
      const t = fromHost(data, [2]);
      assert.equal(t.dtype, dtype);
      assert.deepEqual([...await t.data()], [...data]);
      t.dispose();
    }
    assert.throws(() => fromHost(new Uint16Array(2), [2]), /a Uint16Array holds 16-bit floats as bits; say which: fromHost\(data, shape, 'bf16'\) or 'f16'/);
  });
});
