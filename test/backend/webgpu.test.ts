/**
 * Every WebGPU kernel against the CPU reference kernels, at the kernel level: odd sizes
 * that cross workgroup and tile boundaries, every transpose, dtype, mask form and
 * in-place variant, errors reported by kernels, and the ordering hazards of a pooled,
 * batched GPU backend. The backend here poisons every buffer it hands out with NaN, so a
 * kernel that leaves an output element unwritten fails, and uses small attention and
 * matmul tiles so that the tiling paths run on small shapes (lavapipe is slow).
 *
 * Without a WebGPU adapter every test is skipped with the reason.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { AttentionArgs, AttentionMask, Backend, DeviceBuffer } from '../../src/backend/backend.js';
import { cpuBackend } from '../../src/backend/registry.js';
import type { DType, HostArray } from '../../src/tensor/dtype.js';
import { allocHost, f32ToBf16Bits, f32ToF16Bits, fromFloatArray, toFloatArray } from '../../src/tensor/dtype.js';
import { Rng } from '../../src/tensor/random.js';
import { LongLoraError } from '../../src/errors.js';
import { keyRanges } from '../../src/attention/mask.js';
import { assertClose, diff } from '../helpers/compare.js';
import { webgpuUnderTest } from './webgpu-util.js';
import { createWebGpuBackend, sizeClass, type WebGpuBackend } from '../../src/backend/webgpu/webgpu.js';
import { TILE_LARGE, TILE_SMALL } from '../../src/backend/webgpu/kernels/matmul.js';

const { backend: gpu, skip } = await webgpuUnderTest({ poison: true, attentionTiles: { BQ: 16, BK: 4, BKV: 16, BQ2: 4 } });
after(() => gpu?.destroy());

/** An input: host data in a dtype. */
interface In { dtype: DType; data: HostArray }
/** An output: dtype, size and optional initial contents (for accumulating kernels). */
interface Out { dtype: DType; numel: number; init?: HostArray }

const f32 = (a: ArrayLike<number>): In => ({ dtype: 'f32', data: Float32Array.from(a) });
const i32 = (a: ArrayLike<number>): In => ({ dtype: 'i32', data: Int32Array.from(a) });
const out = (numel: number, init?: ArrayLike<number>): Out => ({ dtype: 'f32', numel, ...(init ? { init: Float32Array.from(init) } : {}) });

function randn(rng: Rng, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => rng.normal() * scale);
}

/** Runs `call` on the CPU and on the GPU with the same inputs; returns both outputs' host copies. */
async function runBoth(ins: In[], outs: Out[], call: (be: Backend, i: DeviceBuffer[], o: DeviceBuffer[]) => void, target: Backend = gpu!): Promise<Array<[HostArray, HostArray]>> {
  const results: HostArray[][] = [];
  for (const be of [cpuBackend(), target]) {
    const ib = ins.map((x) => { const b = be.alloc(x.dtype, x.data.length); be.upload(b, x.data); return b; });
    const ob = outs.map((o) => {
      const b = be.alloc(o.dtype, o.numel);
      if (o.init) be.upload(b, o.init);
      else if (be === cpuBackend()) be.fill(b, 0);
      return b;
    });
    call(be, ib, ob);
    const got: HostArray[] = [];
    for (const b of ob) got.push(await be.download(b));
    for (const b of [...ib, ...ob]) be.free(b);
    results.push(got);
  }
  return results[0]!.map((c, k) => [c, results[1]![k]!]);
}

/** Compares float outputs with a relative tolerance (max error over max magnitude). */
async function close(label: string, log: (s: string) => void, ins: In[], outs: Out[], call: (be: Backend, i: DeviceBuffer[], o: DeviceBuffer[]) => void, rtol = 2e-6, target?: Backend): Promise<void> {
  const res = await runBoth(ins, outs, call, target);
  res.forEach(([c, g], k) => {
    const dt = outs[k]!.dtype;
    assertClose(toFloatArray(g, dt, 'f32'), toFloatArray(c, dt, 'f32'), rtol, `${label} out${k}`, log);
  });
}

/** Compares outputs bit for bit. */
async function exact(label: string, ins: In[], outs: Out[], call: (be: Backend, i: DeviceBuffer[], o: DeviceBuffer[]) => void): Promise<void> {
  const res = await runBoth(ins, outs, call);
  res.forEach(([c, g], k) => {
    const cb = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    const gb = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
    const bad = cb.findIndex((v, i) => v !== gb[i]);
    assert.equal(bad, -1, `${label} out${k}: first differing byte ${bad}`);
  });
}

const opts = { skip: skip ?? false };

describe('webgpu backend: memory and ordering', opts, () => {
  it('reports the adapter, pools freed buffers, counts live buffers like the CPU backend', (t) => {
    t.diagnostic(gpu!.describe());
    const before = gpu!.memory().buffers;
    const a = gpu!.alloc('f32', 1000);
    assert.equal(gpu!.memory().buffers, before + 1);
    gpu!.free(a);
    assert.equal(gpu!.memory().buffers, before);
    assert.ok(gpu!.pooled() >= sizeClass(4000));
    assert.ok(sizeClass(4000) >= 4000 && sizeClass(5000) <= 5000 * 1.125 && sizeClass(1e6) <= 1e6 * 1.125);
  });

  it('refuses f64 and buffers over the binding limit with a clear message', () => {
    assert.throws(() => gpu!.alloc('f64', 4), (e: unknown) => e instanceof LongLoraError && /f64/.test(e.message));
    const tooMany = Math.floor(gpu!.limits.maxBinding / 4) + 16;
    assert.throws(() => gpu!.alloc('f32', tooMany), (e: unknown) => e instanceof LongLoraError && /maxStorageBufferBindingSize/.test(e.message));
  });

  it('a buffer freed while recorded work reads it can be reused and re-uploaded at once', async () => {
    const be = gpu!;
    const x = be.alloc('f32', 300);
    be.upload(x, Float32Array.from({ length: 300 }, (_, i) => i));
    const y = be.alloc('f32', 300);
    be.affine(x, 2, 1, y); // recorded, not yet submitted
    be.free(x);
    const z = be.alloc('f32', 300); // the pool hands x's GPU buffer back
    be.upload(z, new Float32Array(300).fill(-5));
    const w = be.alloc('f32', 300);
    be.affine(z, 1, 0, w);
    const [ys, ws] = [await be.download(y), await be.download(w)];
    assert.deepEqual(Array.from(ys).slice(0, 4), [1, 3, 5, 7]);
    assert.equal(ys[299], 599);
    assert.ok(Array.from(ws).every((v) => v === -5));
    for (const b of [y, z, w]) be.free(b);
  });

  it('many dispatches in one batch keep their own arguments', async () => {
    const be = gpu!;
    const x = be.alloc('f32', 5);
    be.fill(x, 0);
    for (let k = 1; k <= 300; k++) be.affine(x, 1, k, x); // in place, 300 dispatches, several submissions
    assert.deepEqual(Array.from(await be.download(x)), new Array(5).fill(150 * 301));
    await be.sync();
    be.free(x);
  });
});

describe('webgpu kernels: elementwise, cast, copy, sums', opts, () => {
  const rng = new Rng(1);

  it('fill in every dtype, odd sizes', async () => {
    for (const [dt, v] of [['f32', -1.25], ['i32', 7], ['u8', 200]] as const) {
      await exact(`fill ${dt}`, [], [{ dtype: dt, numel: 1003 }], (be, _i, [o]) => be.fill(o!, v));
    }
    // 16-bit: the value is stored as that float (the CPU reference stores raw bits; tensors
    // never fill 16-bit buffers, `full` uploads them).
    for (const dt of ['f16', 'bf16'] as const) {
      const o = gpu!.alloc(dt, 1003);
      gpu!.fill(o, -3.3);
      assert.deepEqual(Array.from(await gpu!.download(o)), Array.from(fromFloatArray(new Array(1003).fill(-3.3), dt)), `fill ${dt}`);
      gpu!.free(o);
    }
  });

  it('cast between every pair of f32, f16, bf16, i32, u8 with the reference rounding', async () => {
    const specials = [0, -0, 1, -1, 65504, 65520, 1e-8, -6e-8, 5.96e-8, 3e-5, 1 / 3, 2 ** -14, 2 ** -24, 1e30, -1e30, NaN, Infinity, -Infinity, 1.00048828125, 1.0009765625];
    const vals = [...specials, ...randn(rng, 981, 100)];
    const asI = vals.map((v) => (Number.isFinite(v) ? Math.max(-1e9, Math.min(1e9, Math.trunc(v))) : 3));
    const sources: Record<string, In> = {
      f32: f32(vals),
      f16: { dtype: 'f16', data: Uint16Array.from(vals, f32ToF16Bits) },
      bf16: { dtype: 'bf16', data: Uint16Array.from(vals, f32ToBf16Bits) },
      i32: i32(asI),
      u8: { dtype: 'u8', data: Uint8Array.from(asI, (v) => v & 0xff) },
    };
    for (const [s, input] of Object.entries(sources)) {
      for (const d of ['f32', 'f16', 'bf16', 'i32', 'u8'] as const) {
        if ((d === 'i32' || d === 'u8') && s !== 'i32' && s !== 'u8') continue; // float → int of NaN/huge is undefined
        await exact(`cast ${s}→${d}`, [input], [{ dtype: d, numel: vals.length }], (be, [x], [o]) => be.cast(x!, o!));
      }
    }
  });

  it('unary ops and their derivatives over several workgroups', async (t) => {
    for (const op of ['neg', 'exp', 'log', 'silu', 'sigmoid', 'square', 'sqrt', 'tanh', 'relu'] as const) {
      const pos = op === 'log' || op === 'sqrt';
      const x = randn(rng, 1000, 3).map((v) => (pos ? Math.abs(v) + 0.1 : v));
      const dy = randn(rng, 1000);
      await close(op, (s) => t.diagnostic(s), [f32(x)], [out(1000)], (be, [a], [o]) => be.unary(op, a!, o!));
      await close(`${op}'`, (s) => t.diagnostic(s), [f32(x), f32(dy)], [out(1000)], (be, [a, g], [o]) => be.unaryBackward(op, a!, g!, o!));
    }
    await close('silu in place', (s) => t.diagnostic(s), [], [out(5, [1, -2, 3, -40, 50])], (be, _i, [o]) => be.unary('silu', o!, o!));
  });

  it('binary ops with broadcasting and in place; affine', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    for (const op of ['add', 'sub', 'mul', 'div'] as const) {
      for (const nb of [777, 7, 1]) {
        const a = randn(rng, 777);
        const b = randn(rng, nb).map((v) => (op === 'div' ? Math.sign(v) * (Math.abs(v) + 0.5) : v));
        await close(`${op} nb=${nb}`, log, [f32(a), f32(b)], [out(777)], (be, [x, y], [o]) => be.binary(op, x!, y!, o!));
        await close(`${op} nb=${nb} in place`, log, [f32(b)], [out(777, a)], (be, [y], [o]) => be.binary(op, o!, y!, o!));
      }
    }
    await close('affine', log, [f32(randn(rng, 501))], [out(501)], (be, [x], [o]) => be.affine(x!, -1.5, 0.25, o!));
    await close('affine in place', log, [], [out(501, randn(rng, 501))], (be, _i, [o]) => be.affine(o!, 3, -1, o!));
  });

  it('swiglu and its backward, odd sizes, each gradient alone and both; in place', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    for (const n of [1, 7, 1003]) {
      // Saturated gates (sigmoid 0 or 1) next to ordinary ones.
      const g = [30, -30, 40, -40, 0, ...randn(rng, n, 3)].slice(0, n);
      const [u, dy] = [randn(rng, n), randn(rng, n)];
      await close(`swiglu n=${n}`, log, [f32(g), f32(u)], [out(n)], (be, [a, b], [o]) => be.swiglu!(a!, b!, o!));
      await close(`swigluBackward n=${n}`, log, [f32(g), f32(u), f32(dy)], [out(n), out(n)],
        (be, [a, b, d], [dg, du]) => be.swigluBackward!(a!, b!, d!, dg!, du!));
      await close(`swigluBackward n=${n} (dgate only)`, log, [f32(g), f32(u), f32(dy)], [out(n)],
        (be, [a, b, d], [dg]) => be.swigluBackward!(a!, b!, d!, dg!, null));
      await close(`swigluBackward n=${n} (dup only)`, log, [f32(g), f32(u), f32(dy)], [out(n)],
        (be, [a, b, d], [du]) => be.swigluBackward!(a!, b!, d!, null, du!));
    }
    const [g, u] = [randn(rng, 99, 3), randn(rng, 99)];
    await close('swiglu in place (out = up)', log, [f32(g)], [out(99, u)], (be, [a], [o]) => be.swiglu!(a!, o!, o!));
    await close('swiglu in place (out = gate)', log, [f32(u)], [out(99, g)], (be, [b], [o]) => be.swiglu!(o!, b!, o!));
    await close('swiglu in place (out = gate = up)', log, [], [out(99, g)], (be, _i, [o]) => be.swiglu!(o!, o!, o!));
    const [g5, o4] = [gpu!.alloc('f32', 5), gpu!.alloc('f32', 4)];
    assert.throws(() => gpu!.swiglu(g5, g5, o4), (e: unknown) => e instanceof Error && /differ/.test(e.message));
    gpu!.free(g5);
    gpu!.free(o4);
  });

  it('reduceSum over rows, columns and middle axes', async (t) => {
    for (const [outer, size, inner] of [[3, 1000, 1], [2, 37, 5], [1, 1, 1], [1, 300, 70], [66000, 1, 1]] as const) {
      await close(`reduceSum ${outer}×${size}×${inner}`, (s) => t.diagnostic(s), [f32(randn(rng, outer * size * inner))], [out(outer * inner)],
        (be, [x], [o]) => be.reduceSum(x!, o!, outer, size, inner));
    }
  });

  it('strided copy: permute, slice into an offset, broadcast, and the accumulating reduction', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    const x = randn(rng, 2 * 3 * 5 * 7);
    // permute [2,3,5,7] → [2,5,3,7]
    const perm = { shape: [2, 5, 3, 7], srcOffset: 0, srcStrides: [105, 7, 35, 1], dstOffset: 0, dstStrides: [105, 21, 7, 1], accumulate: false };
    await close('permute', log, [f32(x)], [out(210)], (be, [s], [d]) => be.copy(s!, d!, perm), 0);
    // write a [3,5] block into rows 2.. of a [6,9] destination at column offset 3
    const into = { shape: [3, 5], srcOffset: 4, srcStrides: [7, 1], dstOffset: 2 * 9 + 3, dstStrides: [9, 1], accumulate: false };
    await close('slice into', log, [f32(x)], [out(54, randn(rng, 54))], (be, [s], [d]) => be.copy(s!, d!, into), 0);
    // broadcast [5] along a new leading axis of 4
    const bc = { shape: [4, 5], srcOffset: 0, srcStrides: [0, 1], dstOffset: 0, dstStrides: [5, 1], accumulate: false };
    await close('broadcast', log, [f32(x)], [out(20)], (be, [s], [d]) => be.copy(s!, d!, bc), 0);
    // sum [2,3,5,7] over axes 0 and 2 into [3,7] (+= existing values)
    const red = { shape: [2, 3, 5, 7], srcOffset: 0, srcStrides: [105, 35, 7, 1], dstOffset: 0, dstStrides: [0, 7, 0, 1], accumulate: true };
    await close('accumulating reduction', log, [f32(x)], [out(21, randn(rng, 21))], (be, [s], [d]) => be.copy(s!, d!, red), 1e-6);
    const acc = { shape: [210], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1], accumulate: true };
    await close('accumulate', log, [f32(x)], [out(210, randn(rng, 210))], (be, [s], [d]) => be.copy(s!, d!, acc), 1e-6);
  });

  it('strided copy of 16-bit, 8-bit and integer elements', async () => {
    const vals = randn(rng, 3 * 5 * 7);
    const perm = { shape: [5, 3, 7], srcOffset: 0, srcStrides: [7, 35, 1], dstOffset: 1, dstStrides: [21, 7, 1], accumulate: false };
    for (const dt of ['f16', 'bf16', 'u8', 'i32'] as const) {
      const data = dt === 'u8' ? Uint8Array.from(vals, (v) => Math.abs(Math.trunc(v * 50)) & 0xff)
        : dt === 'i32' ? Int32Array.from(vals, (v) => Math.trunc(v * 1e6)) : fromFloatArray(vals, dt);
      const init = allocHost(dt, 107);
      await exact(`copy ${dt}`, [{ dtype: dt, data }], [{ dtype: dt, numel: 107, init }], (be, [s], [d]) => be.copy(s!, d!, perm));
    }
    const ints = Int32Array.from(vals, (v) => Math.trunc(v * 1000));
    const red = { shape: [3, 35], srcOffset: 0, srcStrides: [35, 1], dstOffset: 0, dstStrides: [0, 1], accumulate: true };
    await exact('copy i32 accumulate', [{ dtype: 'i32', data: ints }], [{ dtype: 'i32', numel: 35, init: new Int32Array(35).fill(5) }], (be, [s], [d]) => be.copy(s!, d!, red));
  });
});

describe('webgpu kernels: matmul', opts, () => {
  const rng = new Rng(2);
  for (const [tileName, tile] of [['64×64', TILE_SMALL], ['128×128', TILE_LARGE]] as const) {
    it(`every transpose, batched with broadcast operands, alpha and accumulate (${tileName} tiles)`, async (t) => {
      const be = await createWebGpuBackend({ poison: true, matmulTile: tile });
      try {
        const [batch, m, n, k] = [3, 67, 45, 33];
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const [sa, sb] of [[m * k, k * n], [m * k, 0], [0, k * n]] as const) {
              const a = randn(rng, sa === 0 ? m * k : batch * m * k);
              const b = randn(rng, sb === 0 ? k * n : batch * k * n);
              const init = randn(rng, batch * m * n);
              const args = { batch, m, n, k, transA, transB, alpha: 0.5, beta: 1, strideA: sa, strideB: sb };
              const res = await runBoth([f32(a), f32(b)], [out(batch * m * n, init)], (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), be);
              assertClose(res[0]![1], res[0]![0], 2e-6, `matmul tA=${transA} tB=${transB} sa=${sa} sb=${sb}`, (s) => t.diagnostic(s));
            }
          }
        }
        // both operands f16 (f16 compute with shader-f16) against the CPU on the rounded values:
        // every transpose with the large tile (where f16 pays), x·Wᵀ with the small one (each
        // variant costs lavapipe seconds to compile)
        const f16Cases = tile === TILE_LARGE ? [[false, false], [false, true], [true, false], [true, true]] : [[false, true]];
        for (const [transA, transB] of f16Cases as Array<[boolean, boolean]>) {
          {
            const a = toFloatArray(fromFloatArray(randn(rng, m * k), 'f16'), 'f16', 'f32');
            const b = toFloatArray(fromFloatArray(randn(rng, k * n), 'f16'), 'f16', 'f32');
            const args = { batch: 1, m, n, k, transA, transB, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
            const cpu = cpuBackend();
            const [ac, bc, oc] = [cpu.alloc('f32', m * k), cpu.alloc('f32', k * n), cpu.alloc('f32', m * n)];
            cpu.upload(ac, a as Float32Array);
            cpu.upload(bc, b as Float32Array);
            cpu.matmul(ac, bc, oc, args);
            const want = await cpu.download(oc);
            for (const x of [ac, bc, oc]) cpu.free(x);
            const [ag, bg, og] = [be.alloc('f16', m * k), be.alloc('f16', k * n), be.alloc('f32', m * n)];
            be.upload(ag, fromFloatArray(a, 'f16'));
            be.upload(bg, fromFloatArray(b, 'f16'));
            be.matmul(ag, bg, og, args);
            assertClose(await be.download(og), want, 5e-3, `matmul f16·f16 tA=${transA} tB=${transB}${be.hasF16 ? ' (f16 compute)' : ''}`, (s) => t.diagnostic(s));
            for (const x of [ag, bg, og]) be.free(x);
          }
        }
        // 16-bit outputs, written two adjacent columns per thread (n even): batched, accumulating,
        // every transpose with the large tile, x·Wᵀ with the small one; f16·f16→f16 in f16 compute.
        const outCases = tile === TILE_LARGE ? [[false, false], [false, true], [true, false], [true, true]] : [[false, true]];
        for (const [transA, transB] of outCases as Array<[boolean, boolean]>) {
          for (const [ta, to] of [['bf16', 'bf16'], ['f16', 'f16']] as const) {
            const n2 = 46;
            const args = { batch, m, n: n2, k, transA, transB, alpha: 0.5, beta: 1, strideA: m * k, strideB: 0 };
            const tb = ta === 'f16' ? 'f16' : 'f32';
            const res = await runBoth([{ dtype: ta, data: fromFloatArray(randn(rng, batch * m * k), ta) }, { dtype: tb, data: fromFloatArray(randn(rng, k * n2), tb) }],
              [{ dtype: to, numel: batch * m * n2, init: fromFloatArray(randn(rng, batch * m * n2), to) }], (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), be);
            const [want, got] = res[0]!.map((h) => toFloatArray(h, to, 'f32'));
            // one ulp of the output, plus the f16-compute error when both inputs are f16 (as above)
            const tol = (to === 'bf16' ? 2 ** -7 : 2 ** -10) + (ta === 'f16' && tb === 'f16' && be.hasF16 ? 5e-3 : 1e-5);
            assertClose(got!, want!, tol, `matmul ${ta}·${tb}→${to} tA=${transA} tB=${transB}`, (s) => t.diagnostic(s));
          }
        }
        // beta = 0 must overwrite (the output is NaN-poisoned), and k = 1, m = 1 edge shapes
        for (const [mm, nn, kk] of [[1, 300, 7], [129, 1, 5], [5, 6, 1]] as const) {
          const args = { batch: 1, m: mm, n: nn, k: kk, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
          const res = await runBoth([f32(randn(rng, mm * kk)), f32(randn(rng, nn * kk))], [out(mm * nn)], (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), be);
          assertClose(res[0]![1], res[0]![0], 2e-6, `matmul ${mm}×${nn}×${kk}`, (s) => t.diagnostic(s));
        }
      } finally {
        be.destroy();
      }
    });
  }

  it('runs up to 4 rows of x·Wᵀ (decoding) on the matrix-vector kernel: batched, accumulating, 16-bit W and x', async (t) => {
    const be = await createWebGpuBackend({ poison: true });
    try {
      for (const m of [1, 2, 3, 4]) {
        for (const [n, k] of [[1, 7], [5, 130], [301, 67]] as const) {
          for (const [ta, tb] of [['f32', 'f32'], ['f32', 'bf16'], ['f32', 'f16'], ['bf16', 'bf16']] as const) {
            if ((ta !== 'f32' || tb !== 'f32') && (n !== 301 || m % 2 === 0)) continue; // 16-bit on one shape, odd m (each variant costs a compile)
            const batch = 2;
            for (const [sb, beta] of [[0, 1], [n * k, 0]] as const) {
              const args = { batch, m, n, k, transA: false, transB: true, alpha: 0.5, beta, strideA: m * k, strideB: sb };
              const x = fromFloatArray(randn(rng, batch * m * k), ta);
              const w = fromFloatArray(randn(rng, (sb === 0 ? 1 : batch) * n * k), tb);
              const res = await runBoth([{ dtype: ta, data: x }, { dtype: tb, data: w }],
                [out(batch * m * n, beta === 0 ? undefined : randn(rng, batch * m * n))], (bk, [p, q], [o]) => bk.matmul(p!, q!, o!, args), be);
              // Error bound of a k-term dot product in f32 (any summation order): relative to
              // Σ|x||w| of the output, not to the output, which cancellation can make tiny.
              const [xf, wf] = [toFloatArray(x, ta, 'f32'), toFloatArray(w, tb, 'f32')];
              let scale = 0;
              for (let bi = 0; bi < batch; bi++) {
                for (let i = 0; i < m; i++) {
                  for (let j = 0; j < n; j++) {
                    let s = 0;
                    for (let kk = 0; kk < k; kk++) s += Math.abs(xf[(bi * m + i) * k + kk]! * wf[(sb === 0 ? 0 : bi * n * k) + j * k + kk]!);
                    scale = Math.max(scale, 0.5 * s);
                  }
                }
              }
              const d = diff(res[0]![1], res[0]![0]);
              assert.ok(d.maxAbs <= 2e-6 * scale, `gemv m=${m} n=${n} k=${k} ${ta}·${tb}ᵀ ${sb === 0 ? 'shared W, accumulate' : 'batched W, beta 0'}: max|diff| ${d.maxAbs} > 2e-6 × ${scale}`);
            }
          }
        }
      }
      const gemvs = be.preparedKernels().filter((key) => key.startsWith('gemv:'));
      t.diagnostic(`matrix-vector kernels compiled: ${gemvs.join(', ')}`);
      assert.equal(gemvs.length, 4 + 2 * 3, 'one kernel per m and dtype pair');
      assert.ok(!be.preparedKernels().some((key) => key.startsWith('matmul:')), 'the tiled kernel never ran');
    } finally {
      be.destroy();
    }
    // decodeKernels: false sends the same product to the tiled kernel
    const tiled = await createWebGpuBackend({ poison: true, decodeKernels: false });
    try {
      const args = { batch: 1, m: 1, n: 33, k: 20, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
      const res = await runBoth([f32(randn(rng, 20)), f32(randn(rng, 33 * 20))], [out(33)], (bk, [p, q], [o]) => bk.matmul(p!, q!, o!, args), tiled);
      assertClose(res[0]![1], res[0]![0], 2e-6, 'm = 1 on the tiled kernel', (s) => t.diagnostic(s));
      assert.ok(tiled.preparedKernels().some((key) => key.startsWith('matmul:')) && !tiled.preparedKernels().some((key) => key.startsWith('gemv:')));
    } finally {
      tiled.destroy();
    }
  });

  it('reads f16 and bf16 operands directly (16-bit weights, f32 compute)', async (t) => {
    const [m, n, k] = [37, 29, 41];
    for (const dt of ['f16', 'bf16'] as const) {
      const w = randn(rng, n * k);
      const x = randn(rng, m * k);
      const w16 = fromFloatArray(w, dt);
      // reference: the CPU on the rounded weight in f32
      const wRounded = toFloatArray(w16, dt, 'f32');
      const args = { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
      const cpu = cpuBackend();
      const [xc, wc, oc] = [cpu.alloc('f32', m * k), cpu.alloc('f32', n * k), cpu.alloc('f32', m * n)];
      cpu.upload(xc, Float32Array.from(x));
      cpu.upload(wc, wRounded);
      cpu.matmul(xc, wc, oc, args);
      const want = await cpu.download(oc);
      for (const b of [xc, wc, oc]) cpu.free(b);
      const be = gpu!;
      const [xg, wg, og] = [be.alloc('f32', m * k), be.alloc(dt, n * k), be.alloc('f32', m * n)];
      be.upload(xg, Float32Array.from(x));
      be.upload(wg, w16);
      be.matmul(xg, wg, og, args);
      assertClose(await be.download(og), want, 2e-6, `matmul x·W(${dt})ᵀ`, (s) => t.diagnostic(s));
      // both operands 16-bit (f16 compute when the device has shader-f16)
      const [ag, og2] = [be.alloc(dt, m * k), be.alloc('f32', m * n)];
      be.upload(ag, fromFloatArray(x, dt));
      be.matmul(ag, wg, og2, args);
      const tol = dt === 'f16' && gpu!.hasF16 ? 5e-3 : 2e-2;
      assertClose(await be.download(og2), want, tol, `matmul ${dt}·${dt}${dt === 'f16' && gpu!.hasF16 ? ' (f16 compute)' : ''}`, (s) => t.diagnostic(s));
      for (const b of [xg, wg, og, ag, og2]) be.free(b);
    }
  });
});


describe('webgpu kernels: matmul on subgroup matrices (tensor cores)', opts, () => {
  const rng = new Rng(5);
  /**
   * f16 · f16 products on `be` against the CPU: every transpose, batched with a broadcast
   * operand, accumulating, shapes that leave partial tiles and a partial k step; 16-bit
   * outputs (pairs of columns) for x·Wᵀ. Returns the subgroup-matrix kernels compiled.
   */
  async function sgmCases(be: WebGpuBackend, log: (s: string) => void): Promise<string[]> {
    const [batch, m, n, k] = [2, 37, 46, 41];
    const f16In = (len: number): In => ({ dtype: 'f16', data: fromFloatArray(randn(rng, len), 'f16') });
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const args = { batch, m, n, k, transA, transB, alpha: 0.5, beta: 1, strideA: m * k, strideB: 0 };
        await close(`f16·f16 tA=${transA} tB=${transB}`, log, [f16In(batch * m * k), f16In(k * n)], [out(batch * m * n, randn(rng, batch * m * n))],
          (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), 1e-5, be);
      }
    }
    for (const to of ['f16', 'bf16'] as const) {
      const args = { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
      const res = await runBoth([f16In(m * k), f16In(n * k)], [{ dtype: to, numel: m * n }], (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), be);
      const [want, got] = res[0]!.map((h) => toFloatArray(h, to, 'f32'));
      assertClose(got!, want!, (to === 'bf16' ? 2 ** -7 : 2 ** -10) + 1e-5, `f16·f16 → ${to}`, log);
    }
    return be.preparedKernels().filter((key) => key.startsWith('matmul-sgm:'));
  }

  it('the kernel\'s tiling, with the subgroup-matrix operations emulated in plain WGSL', async (t) => {
    const be = await createWebGpuBackend({ poison: true, emulateSubgroupMatrix: true });
    try {
      t.diagnostic(be.describe());
      if (!be.sgm) { t.skip(`no emulation here: ${be.subgroupMatrixNote}`); return; }
      const kernels = await sgmCases(be, (s) => t.diagnostic(s));
      assert.equal(kernels.length, 6, `one kernel per transpose and output dtype: ${kernels.join(', ')}`);
      assert.ok(kernels.every((key) => key.endsWith(':emu')));
    } finally {
      be.destroy();
    }
  });

  it('on the adapter\'s own subgroup matrices when it has them; otherwise f16 products stay on the tiled kernel, and the reason is given', async (t) => {
    const be = await createWebGpuBackend({ poison: true, subgroupMatrix: true });
    try {
      t.diagnostic(be.describe());
      if (be.sgm) {
        const kernels = await sgmCases(be, (s) => t.diagnostic(s));
        assert.equal(kernels.length, 6);
        assert.ok(kernels.every((key) => !key.endsWith(':emu')));
        return;
      }
      assert.match(be.describe(), /no subgroup-matrix matmul: \S/);
      const args = { batch: 1, m: 9, n: 10, k: 11, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
      await close('f16·f16 without subgroup matrices', (s) => t.diagnostic(s), [{ dtype: 'f16', data: fromFloatArray(randn(rng, 99), 'f16') }, { dtype: 'f16', data: fromFloatArray(randn(rng, 110), 'f16') }],
        [out(90)], (bk, [x, y], [o]) => bk.matmul(x!, y!, o!, args), be.hasF16 ? 5e-3 : 1e-5, be);
      assert.ok(!be.preparedKernels().some((key) => key.startsWith('matmul-sgm:')), 'no subgroup-matrix kernel without the feature');
      t.diagnostic(`the adapter's own subgroup matrices were not tested here: ${be.subgroupMatrixNote}`);
    } finally {
      be.destroy();
    }
  });
});

/**
 * The sums of absolute terms behind dq, dk and dv (f32 inputs q, k, v, dO as [B, N, H, D]
 * and [B, S, Hkv, D]): scale·Σ|dS||k|, scale·Σ|dS||q| and Σ P|dO|, computed here in f64 from
 * the softmax; a kernel that rounds P and dS to f16 before multiplying errs by at most
 * 2^-11 of them.
 */
function attentionMagnitudes([q, k, v, dO]: Float32Array[], g: AttentionArgs): Float64Array[] {
  const { B, Nq, Nk, kvStride: S, H, Hkv, D, scale, qOffset } = g;
  const mq = new Float64Array(B * Nq * H * D);
  const mk = new Float64Array(B * S * Hkv * D);
  const mv = new Float64Array(B * S * Hkv * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv));
      for (let i = 0; i < Nq; i++) {
        const qo = ((b * Nq + i) * H + h) * D;
        const keys: number[] = [];
        for (const [lo, hi] of keyRanges(g.mask, H, h, qOffset + i, Nk)) for (let j = lo; j < hi; j++) keys.push(j);
        const ko = (j: number): number => ((b * S + j) * Hkv + kvh) * D;
        const dot = (x: Float32Array, xo: number, y: Float32Array, yo: number): number => { let t = 0; for (let d = 0; d < D; d++) t += x[xo + d]! * y[yo + d]!; return t; };
        const s = keys.map((j) => dot(q!, qo, k!, ko(j)) * scale);
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const sum = e.reduce((x, y) => x + y, 0);
        const p = e.map((x) => x / sum);
        const dp = keys.map((j) => dot(dO!, qo, v!, ko(j)));
        const delta = p.reduce((t, pj, n) => t + pj * dp[n]!, 0);
        keys.forEach((j, n) => {
          const ds = Math.abs(p[n]! * (dp[n]! - delta));
          for (let d = 0; d < D; d++) {
            mq[qo + d] = mq[qo + d]! + scale * ds * Math.abs(k![ko(j) + d]!);
            mk[ko(j) + d] = mk[ko(j) + d]! + scale * ds * Math.abs(q![qo + d]!);
            mv[ko(j) + d] = mv[ko(j) + d]! + p[n]! * Math.abs(dO![qo + d]!);
          }
        });
      }
    }
  }
  return [mq, mk, mv];
}

describe('webgpu kernels: attention on subgroup matrices (tensor cores)', opts, () => {
  const rng = new Rng(6);
  interface Case { B: number; Nq: number; Nk: number; S?: number; H: number; Hkv: number; D: number; qOffset?: number; mask?: AttentionMask; out?: 'f32' | 'f16' | 'bf16' }
  const cases: Array<[string, Case]> = [
    ['dense causal GQA, three query tiles, the last partial', { B: 1, Nq: 37, Nk: 37, H: 2, Hkv: 1, D: 16 }],
    ['S² segmented, f16 out', { B: 1, Nq: 40, Nk: 40, H: 4, Hkv: 2, D: 16, mask: { kind: 's2', form: 'segmented', group: 16 }, out: 'f16' }],
    ['S² roll (wrapped groups), B=2', { B: 2, Nq: 32, Nk: 32, H: 4, Hkv: 2, D: 16, mask: { kind: 's2', form: 'roll', group: 8 } }],
    ['S² short, odd group', { B: 1, Nq: 26, Nk: 26, H: 2, Hkv: 2, D: 16, mask: { kind: 's2', form: 'short', group: 7 } }],
    ['KV cache: query offset over a preallocated cache', { B: 2, Nq: 5, Nk: 19, S: 24, H: 4, Hkv: 1, D: 16, qOffset: 14 }],
    ['head dim 64, bf16 out', { B: 1, Nq: 20, Nk: 20, H: 2, Hkv: 2, D: 64, mask: { kind: 's2', form: 'segmented', group: 8 }, out: 'bf16' }],
  ];
  /**
   * Every case with f16 q, k, v (and dO) on `be` against the CPU, forward and backward.
   * Bounds: P is multiplied in f16, so |ΔO| ≤ 2^-11 · max|v| (plus f32 noise); a 16-bit out
   * adds one ulp of its own; lse comes from the f32 weights. The gradients multiply P and
   * dS in f16: each within 2^-11 of its sum of absolute terms (attentionMagnitudes), one
   * ulp of a 16-bit output, and f32 noise. Returns the subgroup-matrix kernels compiled.
   */
  async function sgmAttention(be: WebGpuBackend, log: (s: string) => void): Promise<string[]> {
    for (const [name, c] of cases) {
      const S = c.S ?? c.Nk;
      const args: AttentionArgs = { B: c.B, Nq: c.Nq, Nk: c.Nk, kvStride: S, H: c.H, Hkv: c.Hkv, D: c.D, scale: 1 / Math.sqrt(c.D), qOffset: c.qOffset ?? 0, mask: c.mask ?? { kind: 'causal' } };
      const nq = c.B * c.Nq * c.H * c.D;
      const nk = c.B * S * c.Hkv * c.D;
      const [q, k, v] = [randn(rng, nq), randn(rng, nk), randn(rng, nk)].map((a) => fromFloatArray(a, 'f16'));
      const od = c.out ?? 'f32';
      const res = await runBoth([{ dtype: 'f16', data: q! }, { dtype: 'f16', data: k! }, { dtype: 'f16', data: v! }], [{ dtype: od, numel: nq }, out(c.B * c.H * c.Nq)],
        (bk, [qb, kb, vb], [o, l]) => bk.attention(qb!, kb!, vb!, o!, l!, args), be);
      const [want, got] = res[0]!.map((h) => toFloatArray(h, od, 'f32'));
      const maxV = Math.max(...Array.from(toFloatArray(v!, 'f16', 'f32'), Math.abs));
      const maxOut = Math.max(...Array.from(want!, Math.abs));
      const ulp = od === 'f32' ? 0 : od === 'f16' ? 2 ** -10 : 2 ** -7;
      const bound = 2 ** -11 * maxV + ulp * maxOut + 1e-5;
      const d = diff(got!, want!);
      log(`${name}: out max|diff| ${d.maxAbs.toExponential(2)} (bound ${bound.toExponential(2)} = 2^-11·max|v| + ${od} ulp + 1e-5)`);
      assert.ok(d.maxAbs <= bound, `${name}: out differs by ${d.maxAbs} > ${bound}`);
      assertClose(res[1]![1] as Float32Array, res[1]![0] as Float32Array, 5e-6, `${name}: lse`, log);
      // Backward from the CPU's forward result (out in f16, as training keeps it), so both read the same out and lse.
      const dO = fromFloatArray(randn(rng, nq), 'f16');
      const cpu = cpuBackend();
      const host = [q!, k!, v!].map((x) => { const b = cpu.alloc('f16', x.length); cpu.upload(b, x); return b; });
      const [ob, lb] = [cpu.alloc('f16', nq), cpu.alloc('f32', c.B * c.H * c.Nq)];
      cpu.attention(host[0]!, host[1]!, host[2]!, ob, lb, args);
      const o = await cpu.download(ob);
      const l = await cpu.download(lb);
      for (const bf of [...host, ob, lb]) cpu.free(bf);
      const mags = attentionMagnitudes([q!, k!, v!, dO].map((x) => toFloatArray(x, 'f16', 'f32') as Float32Array), args);
      const gd = c.out ?? 'f32';
      const back = await runBoth([{ dtype: 'f16', data: q! }, { dtype: 'f16', data: k! }, { dtype: 'f16', data: v! }, { dtype: 'f16', data: o }, { dtype: 'f32', data: l }, { dtype: 'f16', data: dO }],
        [{ dtype: gd, numel: nq }, { dtype: gd, numel: nk }, { dtype: gd, numel: nk }],
        (bk, [qb, kb, vb, oo, ll, g], [dq, dk, dv]) => bk.attentionBackward(qb!, kb!, vb!, oo!, ll!, g!, dq!, dk!, dv!, args), be);
      back.forEach(([cw, gw], n) => {
        const [want, got] = [cw, gw].map((h) => toFloatArray(h, gd, 'f32'));
        const mag = mags[n]!;
        let scale = 0;
        for (const w of want!) scale = Math.max(scale, Math.abs(w));
        // The worst error as a fraction of its element's bound (≤ 1 passes). The bound is the
        // worst case, and rows with few keys (the first rows under a causal mask) come near it.
        let worst = 0;
        for (let e = 0; e < want!.length; e++) {
          const bound = 2 ** -11 * mag[e]! + ulp * Math.abs(want![e]!) + 1e-5 * scale;
          worst = Math.max(worst, Math.abs(got![e]! - want![e]!) / bound);
        }
        const label = `${name}: ${['dq', 'dk', 'dv'][n]}`;
        log(`${label}: max|diff| ${diff(got!, want!).maxAbs.toExponential(2)}, at most ${worst.toFixed(3)} of its bound 2^-11·Σ|terms| + ${gd} ulp + 1e-5·max|${['dq', 'dk', 'dv'][n]}|`);
        assert.ok(worst <= 1, `${label}: an element is off by ${worst.toFixed(2)}× its rounding bound`);
      });
    }
    return be.preparedKernels().filter((key) => key.startsWith('attnSgm'));
  }

  it('the kernel\'s tiling and masks, with the subgroup-matrix operations emulated in plain WGSL', async (t) => {
    const be = await createWebGpuBackend({ poison: true, emulateSubgroupMatrix: true });
    try {
      if (!be.sgm) { t.skip(`no emulation here: ${be.subgroupMatrixNote}`); return; }
      const kernels = await sgmAttention(be, (s) => t.diagnostic(s));
      t.diagnostic(`kernels: ${kernels.join(', ')}`);
      assert.equal(kernels.length, 9, 'forward, dQ and dK/dV kernels per head dim and output dtype');
      assert.ok(kernels.every((key) => key.endsWith(':emu')));
      assert.ok(!be.preparedKernels().some((key) => /^attn(Dq|Dkv)?:/.test(key)), 'the general forward, dQ and dK/dV kernels did not run');
    } finally {
      be.destroy();
    }
  });

  it('on the adapter\'s own subgroup matrices when it has them; otherwise f16 attention stays on the general kernel', async (t) => {
    const be = await createWebGpuBackend({ poison: true, subgroupMatrix: true });
    try {
      const kernels = await sgmAttention(be, (s) => t.diagnostic(s));
      if (be.sgm) {
        assert.equal(kernels.length, 9);
        assert.ok(kernels.every((key) => !key.endsWith(':emu')));
      } else {
        assert.equal(kernels.length, 0, 'no subgroup-matrix kernel without the feature');
        t.diagnostic(`the adapter's own subgroup matrices were not tested here: ${be.subgroupMatrixNote}`);
      }
    } finally {
      be.destroy();
    }
  });
});

describe('webgpu kernels: normalisation, RoPE, embedding, loss, optimiser, NF4', opts, () => {
  const rng = new Rng(3);

  it('softmax and its backward, rows longer than a workgroup', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    const [rows, cols] = [5, 1000];
    const x = randn(rng, rows * cols, 4);
    await close('softmax', log, [f32(x)], [out(rows * cols)], (be, [a], [o]) => be.softmax(a!, o!, rows, cols));
    const y = randn(rng, rows * cols).map(Math.abs);
    await close('softmaxBackward', log, [f32(y), f32(randn(rng, rows * cols))], [out(rows * cols)], (be, [a, g], [o]) => be.softmaxBackward(a!, g!, o!, rows, cols));
  });

  it('rmsnorm and its backward with and without dw', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    const [rows, C] = [7, 1000];
    const x = randn(rng, rows * C);
    const w = randn(rng, C);
    await close('rmsnorm', log, [f32(x), f32(w)], [out(rows * C), out(rows)], (be, [a, b], [o, r]) => be.rmsnorm(a!, b!, o!, r!, rows, C, 1e-5));
    const rstd = Array.from({ length: rows }, () => 0.5 + rng.uniform());
    const dy = randn(rng, rows * C);
    await close('rmsnormBackward', log, [f32(x), f32(w), f32(rstd), f32(dy)], [out(rows * C), out(C, randn(rng, C))],
      (be, [a, b, r, g], [dx, dw]) => be.rmsnormBackward(a!, b!, r!, g!, dx!, dw!, rows, C));
    await close('rmsnormBackward (no dw)', log, [f32(x), f32(w), f32(rstd), f32(dy)], [out(rows * C)],
      (be, [a, b, r, g], [dx]) => be.rmsnormBackward(a!, b!, r!, g!, dx!, null, rows, C));
  });

  it('rope forward and inverse', async (t) => {
    const [B, N, H, D] = [2, 5, 3, 8];
    const x = randn(rng, B * N * H * D);
    const ang = Array.from({ length: N * D / 2 }, () => rng.uniform() * 6);
    for (const inverse of [false, true]) {
      await close(`rope inverse=${inverse}`, (s) => t.diagnostic(s), [f32(x), f32(ang.map(Math.cos)), f32(ang.map(Math.sin))], [out(x.length)],
        (be, [a, c, s], [o]) => be.rope(a!, c!, s!, o!, B, N, H, D, inverse));
    }
  });

  it('gather and scatterAdd with repeated ids; a bad id is reported by the next download', async (t) => {
    const [V, C, T] = [11, 300, 50];
    const ids = Array.from({ length: T }, () => rng.int(V));
    await close('gather', (s) => t.diagnostic(s), [f32(randn(rng, V * C)), i32(ids)], [out(T * C)], (be, [tb, id], [o]) => be.gather(tb!, id!, o!, V, C, T), 0);
    await close('scatterAdd', (s) => t.diagnostic(s), [f32(randn(rng, T * C)), i32(ids)], [out(V * C, randn(rng, V * C))],
      (be, [dy, id], [o]) => be.scatterAdd(dy!, id!, o!, V, C, T), 1e-6);
    const be = gpu!;
    const [tb, id, o] = [be.alloc('f32', V * C), be.alloc('i32', 3), be.alloc('f32', 3 * C)];
    be.fill(tb, 1);
    be.upload(id, Int32Array.from([1, 11, 2]));
    be.gather(tb, id, o, V, C, 3);
    await assert.rejects(be.download(o), /token id 11 at position 1 is outside the vocabulary \[0, 11\)/);
    be.upload(id, Int32Array.from([1, 2, 3]));
    be.gather(tb, id, o, V, C, 3);
    assert.equal((await be.download(o))[0], 1, 'the error was reported once and cleared');
    for (const b of [tb, id, o]) be.free(b);
  });

  it('cross-entropy and its backward with ignored rows; a bad target is reported by sync', async (t) => {
    const [T, V] = [9, 1000];
    const x = randn(rng, T * V, 3);
    const tg = Array.from({ length: T }, (_, i) => (i % 4 === 3 ? -100 : rng.int(V)));
    await close('crossEntropy', (s) => t.diagnostic(s), [f32(x), i32(tg)], [out(T), out(T)], (be, [a, y], [l, s]) => be.crossEntropy(a!, y!, l!, s!, T, V, -100));
    const lse = Array.from({ length: T }, () => 8 + rng.uniform());
    await close('crossEntropyBackward', (s) => t.diagnostic(s), [f32(x), i32(tg), f32(lse), f32(randn(rng, T))], [out(T * V)],
      (be, [a, y, s, g], [o]) => be.crossEntropyBackward(a!, y!, s!, g!, o!, T, V, -100));
    const be = gpu!;
    const [xb, yb, lb, sb] = [be.alloc('f32', 2 * V), be.alloc('i32', 2), be.alloc('f32', 2), be.alloc('f32', 2)];
    be.fill(xb, 0);
    be.upload(yb, Int32Array.from([3, V]));
    be.crossEntropy(xb, yb, lb, sb, 2, V, -100);
    await assert.rejects(be.sync(), /target 1000 at position 1 is outside the vocabulary/);
    for (const b of [xb, yb, lb, sb]) be.free(b);
  });

  it('adamw over several steps (weight decay, bias correction)', async (t) => {
    const n = 1001;
    const res = await runBoth([f32(randn(rng, n))], [out(n, randn(rng, n)), out(n, new Float32Array(n)), out(n, new Float32Array(n))], (be, [g], [p, m, v]) => {
      for (let step = 1; step <= 3; step++) be.adamw(p!, g!, m!, v!, { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step });
    });
    res.forEach(([c, g], k) => assertClose(g as Float32Array, c as Float32Array, 2e-6, `adamw ${['p', 'm', 'v'][k]}`, (s) => t.diagnostic(s)));
  });

  it('NF4 dequantisation agrees bit for bit', async () => {
    const n = 1000;
    const [blockSize, scaleBlockSize] = [64, 4];
    const nb = Math.ceil(n / blockSize);
    const packed = Uint8Array.from({ length: n / 2 }, () => rng.int(256));
    const codes = Uint8Array.from({ length: nb }, () => rng.int(256));
    await exact('dequantize4bit', [
      { dtype: 'u8', data: packed }, f32(randn(rng, 16)), { dtype: 'u8', data: codes }, f32(randn(rng, 256)), f32(randn(rng, Math.ceil(nb / scaleBlockSize)).map(Math.abs)),
    ], [out(n)], (be, [p, c4, sc, c8, am], [o]) => be.dequantize4bit(p!, c4!, sc!, c8!, am!, o!, { n, blockSize, scaleBlockSize, scaleOffset: Math.fround(0.0123) }));
  });
});

describe('webgpu kernels: fused attention, forward and backward', opts, () => {
  const rng = new Rng(4);

  interface Case { B: number; Nq: number; Nk: number; S?: number; H: number; Hkv: number; D: number; qOffset?: number; mask?: AttentionMask; lanes?: number }
  const cases: Array<[string, Case]> = [
    ['dense causal, several query blocks and key tiles', { B: 1, Nq: 37, Nk: 37, H: 2, Hkv: 2, D: 8 }],
    ['dense causal GQA, B=2', { B: 2, Nq: 21, Nk: 21, H: 4, Hkv: 2, D: 8 }],
    ['KV cache: query offset over a preallocated cache', { B: 2, Nq: 5, Nk: 19, S: 24, H: 4, Hkv: 1, D: 8, qOffset: 14 }],
    ['decoding one token', { B: 1, Nq: 1, Nk: 23, S: 32, H: 2, Hkv: 2, D: 8, qOffset: 22 }],
    ['S² segmented, N not a multiple of G', { B: 1, Nq: 27, Nk: 27, H: 4, Hkv: 2, D: 8, mask: { kind: 's2', form: 'segmented', group: 8 } }],
    ['S² roll', { B: 2, Nq: 24, Nk: 24, H: 4, Hkv: 2, D: 8, mask: { kind: 's2', form: 'roll', group: 8 } }],
    ['S² short, odd group', { B: 1, Nq: 26, Nk: 26, H: 3, Hkv: 3, D: 8, mask: { kind: 's2', form: 'short', group: 7 } }],
    ['S² segmented, head dim 64', { B: 1, Nq: 40, Nk: 40, H: 2, Hkv: 1, D: 64, mask: { kind: 's2', form: 'segmented', group: 16 } }],
    ['S² segmented, head dim 6 (vec2 lanes)', { B: 1, Nq: 19, Nk: 19, H: 2, Hkv: 1, D: 6, mask: { kind: 's2', form: 'segmented', group: 6 } }],
    ['KV cache, head dim 5', { B: 1, Nq: 3, Nk: 11, S: 13, H: 2, Hkv: 2, D: 5, qOffset: 8 }],
    ['vec4 lanes: dense causal GQA', { B: 1, Nq: 21, Nk: 21, H: 4, Hkv: 2, D: 8, lanes: 4 }],
    ['vec2 lanes: S² roll, head dim 6', { B: 1, Nq: 16, Nk: 16, H: 2, Hkv: 1, D: 6, mask: { kind: 's2', form: 'roll', group: 8 }, lanes: 4 }],
  ];
  let vec: WebGpuBackend | null = null;
  after(() => vec?.destroy());
  for (const [name, c] of cases) {
    it(name, async (t) => {
      const log = (s: string): void => t.diagnostic(s);
      if (c.lanes) vec ??= await createWebGpuBackend({ poison: true, attentionTiles: { BQ: 16, BK: 4, BKV: 16, BQ2: 4, W: c.lanes } });
      const target = c.lanes ? vec! : gpu!;
      const S = c.S ?? c.Nk;
      const args: AttentionArgs = {
        B: c.B, Nq: c.Nq, Nk: c.Nk, kvStride: S, H: c.H, Hkv: c.Hkv, D: c.D, scale: 1 / Math.sqrt(c.D),
        qOffset: c.qOffset ?? 0, mask: c.mask ?? { kind: 'causal' },
      };
      const nq = c.B * c.Nq * c.H * c.D;
      const nk = c.B * S * c.Hkv * c.D;
      const [q, k, v] = [randn(rng, nq), randn(rng, nk), randn(rng, nk)];
      await close(`${name}: forward (out, lse)`, log, [f32(q), f32(k), f32(v)], [out(nq), out(c.B * c.H * c.Nq)],
        (be, [qb, kb, vb], [o, l]) => be.attention(qb!, kb!, vb!, o!, l!, args), 5e-6, target);
      const dout = randn(rng, nq);
      await close(`${name}: backward (dq, dk, dv)`, log, [f32(q), f32(k), f32(v), f32(dout)], [out(nq), out(nk), out(nk)], (be, [qb, kb, vb, g], [dq, dk, dv]) => {
        const o = be.alloc('f32', nq);
        const l = be.alloc('f32', c.B * c.H * c.Nq);
        be.attention(qb!, kb!, vb!, o, l, args);
        be.attentionBackward(qb!, kb!, vb!, o, l, g!, dq!, dk!, dv!, args);
        be.free(o);
        be.free(l);
      }, 5e-6, target);
    });
  }

  it('decoding (one query row) runs on a kernel that shares the row among 256 threads: long caches, every mask, GQA, 16-bit operands', async (t) => {
    const be = await createWebGpuBackend({ poison: true });
    try {
      const decodeCases: Array<[string, Case]> = [
        ['dense, 3 key tiles, cache longer than the keys', { B: 2, Nq: 1, Nk: 600, S: 640, H: 4, Hkv: 2, D: 64 }],
        ['S² segmented', { B: 1, Nq: 1, Nk: 300, H: 4, Hkv: 4, D: 32, mask: { kind: 's2', form: 'segmented', group: 64 } }],
        ['S² roll (a wrapped group)', { B: 1, Nq: 1, Nk: 256, H: 4, Hkv: 2, D: 16, mask: { kind: 's2', form: 'roll', group: 64 } }],
        ['S² short, odd group', { B: 1, Nq: 1, Nk: 77, H: 2, Hkv: 1, D: 8, mask: { kind: 's2', form: 'short', group: 10 } }],
      ];
      for (const [name, c] of decodeCases) {
        const S = c.S ?? c.Nk;
        const args: AttentionArgs = { B: c.B, Nq: 1, Nk: c.Nk, kvStride: S, H: c.H, Hkv: c.Hkv, D: c.D, scale: 1 / Math.sqrt(c.D), qOffset: c.Nk - 1, mask: c.mask ?? { kind: 'causal' } };
        const nq = c.B * c.H * c.D;
        const nk = c.B * S * c.Hkv * c.D;
        const [q, k, v] = [randn(rng, nq), randn(rng, nk), randn(rng, nk)];
        await close(`decoding, ${name}: out, lse`, () => {}, [f32(q), f32(k), f32(v)], [out(nq), out(c.B * c.H)],
          (bk, [qb, kb, vb], [o, l]) => bk.attention(qb!, kb!, vb!, o!, l!, args), 5e-6, be);
        // a bf16 cache and a bf16 out, as with --precision bf16
        const b16 = (a: number[]): In => ({ dtype: 'bf16', data: fromFloatArray(a, 'bf16') });
        await close(`decoding, ${name}: bf16 q, k, v and out`, () => {}, [b16(q), b16(k), b16(v)], [{ dtype: 'bf16', numel: nq }, out(c.B * c.H)],
          (bk, [qb, kb, vb], [o, l]) => bk.attention(qb!, kb!, vb!, o!, l!, args), 2 ** -7 + 5e-6, be);
        t.diagnostic(`decoding, ${name}: matches the CPU (f32, and bf16 within an ulp)`);
      }
      const kernels = be.preparedKernels();
      assert.ok(kernels.some((key) => key.startsWith('attnDecode:')), 'the decoding kernel ran');
      assert.ok(!kernels.some((key) => key.startsWith('attn:')), 'the general forward kernel did not');
    } finally {
      be.destroy();
    }
  });

  // 16-bit q, k, v, out and dout are read directly, each in its own dtype (mixed precision), with each lane width:
  // both backends see the same 16-bit values and compute in f32, so f32 outputs agree to f32.
  const h16 = (a: number[], dtype: 'f16' | 'bf16'): In => ({ dtype, data: fromFloatArray(a, dtype) });
  const cases16 = [[5, 1, 'f16'], [8, 1, 'bf16'], [8, 1, 'mixed'], [6, 4, 'bf16'], [8, 4, 'f16']] as const;
  for (const [D, lanes, dtype] of cases16) {
    {
      it(`${dtype === 'mixed' ? 'q, dO f16 with k, v bf16, each read directly' : `${dtype} inputs read directly`}: S² segmented, head dim ${D}, ${lanes === 1 ? 'scalar' : D % 4 === 0 ? 'vec4' : 'vec2'} lanes`, async (t) => {
        const log = (s: string): void => t.diagnostic(s);
        if (lanes > 1) vec ??= await createWebGpuBackend({ poison: true, attentionTiles: { BQ: 16, BK: 4, BKV: 16, BQ2: 4, W: lanes } });
        const target = lanes > 1 ? vec! : gpu!;
        const [B, N, H, Hkv] = [1, 22, 4, 2];
        const args: AttentionArgs = { B, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: 0, mask: { kind: 's2', form: 'segmented', group: 8 } };
        const nq = B * N * H * D;
        const nk = B * N * Hkv * D;
        const [qt, kt] = dtype === 'mixed' ? ['f16', 'bf16'] as const : [dtype, dtype];
        const ins = [h16(randn(rng, nq), qt), h16(randn(rng, nk), kt), h16(randn(rng, nk), kt), h16(randn(rng, nq), qt)];
        await close(`forward`, log, ins.slice(0, 3), [out(nq), out(B * H * N)],
          (be, [qb, kb, vb], [o, l]) => be.attention(qb!, kb!, vb!, o!, l!, args), 5e-6, target);
        // The backward pass from one forward result (the CPU's, out rounded to 16 bits), so
        // that both backends read the same out and lse.
        const cpu = cpuBackend();
        const bufs = ins.slice(0, 3).map((x) => { const b = cpu.alloc(x.dtype, x.data.length); cpu.upload(b, x.data); return b; });
        const [ob, lb] = [cpu.alloc(qt, nq), cpu.alloc('f32', B * H * N)];
        cpu.attention(bufs[0]!, bufs[1]!, bufs[2]!, ob, lb, args);
        const o: In = { dtype: qt, data: await cpu.download(ob) };
        const l: In = { dtype: 'f32', data: await cpu.download(lb) };
        for (const b of [...bufs, ob, lb]) cpu.free(b);
        await close(`backward`, log, [...ins, o, l], [out(nq), out(nk), out(nk)], (be, [qb, kb, vb, g, oo, ll], [dq, dk, dv]) => {
          be.attentionBackward(qb!, kb!, vb!, oo!, ll!, g!, dq!, dk!, dv!, args);
        }, 5e-6, target);
        // 16-bit outputs too (out, dq in q's dtype; dk, dv in k's), written by the kernels a
        // word at a time for every lane width when D is even: within one ulp of the output.
        const ulp = kt === 'bf16' || qt === 'bf16' ? 2 ** -7 : 2 ** -10;
        const o16 = (numel: number, dt: DType): Out => ({ dtype: dt, numel });
        await close(`forward, ${qt} out`, log, ins.slice(0, 3), [o16(nq, qt), out(B * H * N)],
          (be, [qb, kb, vb], [oo, ll]) => be.attention(qb!, kb!, vb!, oo!, ll!, args), ulp + 5e-6, target);
        await close(`backward, ${qt}/${kt} gradients`, log, [...ins, o, l], [o16(nq, qt), o16(nk, kt), o16(nk, kt)], (be, [qb, kb, vb, g, oo, ll], [dq, dk, dv]) => {
          be.attentionBackward(qb!, kb!, vb!, oo!, ll!, g!, dq!, dk!, dv!, args);
        }, ulp + 5e-6, target);
      });
    }
  }
});
