/**
 * Every kernel of the wasm backend against the CPU reference backend (in f64) on random
 * inputs, forward and backward, with sizes that are not multiples of the vector width,
 * the register tiles or the attention blocks; every matmul transpose; GQA, every S² form,
 * a query offset over a preallocated KV cache. Each case runs on two wasm instances: the
 * registered one (small kernels stay on the calling thread; the relaxed-SIMD build where
 * the engine has it) and one of the plain-SIMD build with three threads that sends even
 * the smallest kernel through the worker pool (so chunk edges are hit, and the fallback
 * build is tested wherever the relaxed one is chosen).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AttentionArgs, AttentionMask, Backend, DeviceBuffer } from '../../src/backend/backend.js';
import { cpuBackend, getBackend } from '../../src/backend/registry.js';
import { WasmBackend } from '../../src/backend/wasm/wasm.js';
import type { DType, HostArray } from '../../src/tensor/dtype.js';
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/tensor/dtype.js';
import { Rng } from '../../src/tensor/random.js';
import { assertClose } from '../helpers/compare.js';

type Host = Float64Array | Int32Array | Uint16Array | Uint8Array;

interface Input { data: Host; dtype?: DType }
/** `init` defaults to NaN (floats), so an element the kernel fails to write shows. */
interface Output { n: number; dtype?: DType; init?: Float64Array | 'nan' }

interface Case {
  inputs: Record<string, Input>;
  outputs: Record<string, Output>;
  call: (be: Backend, b: Record<string, DeviceBuffer>) => void;
  rtol?: number;
}

const rng = new Rng(2024);
const normal = (n: number, scale = 1): Float64Array => Float64Array.from({ length: n }, () => scale * rng.normal());
const uniform = (n: number, lo: number, hi: number): Float64Array => Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
const ints = (n: number, max: number): Int32Array => Int32Array.from({ length: n }, () => rng.int(max));

/** Host data in the dtype a backend computes in (f64 on the reference, f32 on wasm). */
function hostFor(d: Host, dtype: DType): HostArray {
  if (dtype === 'f64') return Float64Array.from(d as ArrayLike<number>);
  if (dtype === 'f32') return Float32Array.from(d as ArrayLike<number>);
  return d;
}

async function runCase(be: Backend, c: Case): Promise<Record<string, Float64Array>> {
  const fdt: DType = be.supportsF64 ? 'f64' : 'f32';
  const bufs: Record<string, DeviceBuffer> = {};
  const made: DeviceBuffer[] = [];
  for (const [k, inp] of Object.entries(c.inputs)) {
    const dtype = inp.dtype ?? (inp.data instanceof Int32Array ? 'i32' : fdt);
    const b = be.alloc(dtype, inp.data.length);
    be.upload(b, hostFor(inp.data, dtype));
    bufs[k] = b;
    made.push(b);
  }
  for (const [k, out] of Object.entries(c.outputs)) {
    const dtype = out.dtype ?? fdt;
    const b = be.alloc(dtype, out.n);
    // Outputs start as NaN unless given: a kernel must write every element it owns.
    if (out.init === undefined || out.init === 'nan') { if (dtype === 'f32' || dtype === 'f64') be.fill(b, NaN); } else be.upload(b, hostFor(out.init, dtype));
    bufs[k] = b;
    made.push(b);
  }
  c.call(be, bufs);
  const res: Record<string, Float64Array> = {};
  for (const k of Object.keys(c.outputs)) res[k] = Float64Array.from(await be.download(bufs[k]!) as ArrayLike<number>);
  for (const b of made) be.free(b);
  return res;
}

let registered: Backend;
let pooled: WasmBackend;

before(async () => {
  registered = await getBackend('wasm');
  pooled = await WasmBackend.create({ threads: 3, parallelMin: 0, flavour: 'simd' });
});
after(async () => { await pooled.dispose(); });

/** Runs the case on the reference and on both wasm instances and compares every output. */
async function check(name: string, c: Case, log: (s: string) => void): Promise<void> {
  const ref = await runCase(cpuBackend(), c);
  for (const [label, be] of [['wasm', registered], ['wasm pooled', pooled]] as const) {
    const before = be.memory().buffers;
    const got = await runCase(be, c);
    for (const k of Object.keys(c.outputs)) assertClose(got[k]!, ref[k]!, c.rtol ?? 1e-5, `${name}: ${label} ${k}`, log);
    assert.equal(be.memory().buffers, before, `${name}: ${label} freed its buffers`);
  }
}

describe('wasm kernels against the CPU reference', () => {
  it('fill, copy (permute, broadcast, slice, reduce-by-accumulate, 1/2/4-byte elements)', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    await check('fill', { inputs: {}, outputs: { y: { n: 37 }, z: { n: 5, dtype: 'i32' } }, call: (be, b) => { be.fill(b.y!, -1.25); be.fill(b.z!, 7); } }, log);
    // permute [3, 5, 7] → [7, 3, 5]
    const x = normal(105);
    await check('permute', {
      inputs: { x: { data: x } }, outputs: { y: { n: 105, init: 'nan' } },
      call: (be, b) => be.copy(b.x!, b.y!, { shape: [7, 3, 5], srcOffset: 0, srcStrides: [1, 35, 7], dstOffset: 0, dstStrides: [15, 5, 1], accumulate: false }),
    }, log);
    await check('broadcast', {
      inputs: { x: { data: normal(7) } }, outputs: { y: { n: 5 * 7 } },
      call: (be, b) => be.copy(b.x!, b.y!, { shape: [5, 7], srcOffset: 0, srcStrides: [0, 1], dstOffset: 0, dstStrides: [7, 1], accumulate: false }),
    }, log);
    await check('slice into the middle', {
      inputs: { x: { data: normal(6 * 9) } }, outputs: { y: { n: 4 * 9, init: normal(36) } },
      call: (be, b) => be.copy(b.x!, b.y!, { shape: [2, 5], srcOffset: 3, srcStrides: [9, 1], dstOffset: 11, dstStrides: [9, 1], accumulate: false }),
    }, log);
    await check('sum over a broadcast axis (accumulate, dst stride 0)', {
      inputs: { x: { data: normal(33 * 13) } }, outputs: { y: { n: 13, init: normal(13) } },
      call: (be, b) => be.copy(b.x!, b.y!, { shape: [33, 13], srcOffset: 0, srcStrides: [13, 1], dstOffset: 0, dstStrides: [0, 1], accumulate: true }),
    }, log);
    await check('sum along the inner axis', {
      inputs: { x: { data: normal(6 * 11) } }, outputs: { y: { n: 6, init: normal(6) } },
      call: (be, b) => be.copy(b.x!, b.y!, { shape: [6, 11], srcOffset: 0, srcStrides: [11, 1], dstOffset: 0, dstStrides: [1, 0], accumulate: true }),
    }, log);
    const bytes = Uint8Array.from({ length: 50 }, (_, i) => (i * 37) & 255);
    const halfs = Uint16Array.from({ length: 50 }, (_, i) => (i * 4099) & 0xffff);
    await check('u8 and bf16 transposes', {
      inputs: { a: { data: bytes, dtype: 'u8' }, h: { data: halfs, dtype: 'bf16' }, i: { data: ints(50, 1000) } },
      outputs: { ya: { n: 50, dtype: 'u8' }, yh: { n: 50, dtype: 'bf16' }, yi: { n: 50, dtype: 'i32' } },
      call: (be, b) => {
        const args = { shape: [10, 5], srcOffset: 0, srcStrides: [1, 10], dstOffset: 0, dstStrides: [5, 1], accumulate: false };
        be.copy(b.a!, b.ya!, args); be.copy(b.h!, b.yh!, args); be.copy(b.i!, b.yi!, args);
      },
    }, log);
  });

  it('cast between f32, f16, bf16 and i32 (rounding, subnormals, inf, NaN)', async (t) => {
    const special = [0, -0, 1, -1, 65504, 65520, 1e-8, 6e-8, 3e-5, 1e30, -1e30, Infinity, -Infinity, NaN, 1 / 3, 2.5, -2.5, 0.1];
    const x = Float64Array.from([...special, ...normal(41, 100)].map(Math.fround));
    const n = x.length;
    const bits = (v: ArrayLike<number>): Float64Array => Float64Array.from(v, (a) => (Number.isNaN(a) ? -1 : a));
    const outs: Record<string, Float64Array> = {};
    for (const be of [cpuBackend(), registered, pooled]) {
      const src = be.alloc('f32', n);
      be.upload(src, Float32Array.from(x));
      const f16 = be.alloc('f16', n), bf = be.alloc('bf16', n), i = be.alloc('i32', n), back16 = be.alloc('f32', n), backBf = be.alloc('f32', n), bf2 = be.alloc('bf16', n);
      be.cast(src, f16); be.cast(src, bf); be.cast(f16, back16); be.cast(bf, backBf); be.cast(f16, bf2);
      const fin = be.alloc('f32', n);
      be.upload(fin, Float32Array.from(x, (v) => (Math.abs(v) < 2 ** 31 ? v : 0)));
      be.cast(fin, i);
      const r = [await be.download(f16), await be.download(bf), await be.download(i), await be.download(back16), await be.download(backBf), await be.download(bf2)];
      for (const b of [src, f16, bf, i, back16, backBf, bf2, fin]) be.free(b);
      const key = be === cpuBackend() ? 'cpu' : be === registered ? 'wasm' : 'pooled';
      r.forEach((a, k) => { outs[`${key}${k}`] = bits(a as ArrayLike<number>); });
    }
    for (const key of ['wasm', 'pooled']) {
      for (let k = 0; k < 6; k++) assert.deepEqual(outs[`${key}${k}`], outs[`cpu${k}`], `${key}: cast result ${k} matches bit for bit`);
    }
    assert.equal(outs.cpu0![2], f32ToF16Bits(1));
    assert.equal(outs.cpu1![2], f32ToBf16Bits(1));
    t.diagnostic(`${n} values cast identically on wasm and cpu`);
  });

  it('f16 → f32: every one of the 65536 half bit patterns widens exactly (vector and scalar paths, both builds)', async () => {
    const n = 65536 + 5; // 5 past a multiple of 8: the last values take the scalar path
    const h = Uint16Array.from({ length: n }, (_, i) => (i * 40503) & 0xffff); // a permutation of all patterns, then 5 again
    const want = Array.from(h, (b) => f16BitsToF32(b));
    for (const be of [registered, pooled]) {
      const src = be.alloc('f16', n), dst = be.alloc('f32', n);
      be.upload(src, h);
      be.cast(src, dst);
      const got = await be.download(dst) as Float32Array;
      be.free(src); be.free(dst);
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(want[i]!) ? !Number.isNaN(got[i]!) : !Object.is(got[i], want[i])) {
          assert.fail(`${be === registered ? 'wasm' : 'wasm pooled'}: f16 bits 0x${h[i]!.toString(16)} widened to ${got[i]}, expected ${want[i]}`);
        }
      }
    }
  });

  it('unary ops and their derivatives, odd length', async (t) => {
    const n = 1003;
    for (const op of ['neg', 'exp', 'log', 'silu', 'sigmoid', 'square', 'sqrt', 'tanh', 'relu'] as const) {
      const x = op === 'log' || op === 'sqrt' ? uniform(n, 0.05, 5) : normal(n, 3);
      await check(`unary ${op}`, {
        inputs: { x: { data: x }, dy: { data: normal(n) } }, outputs: { y: { n }, dx: { n } },
        call: (be, b) => { be.unary(op, b.x!, b.y!); be.unaryBackward(op, b.x!, b.dy!, b.dx!); },
      }, (s) => t.diagnostic(s));
    }
  });

  it('binary ops with every repeat of the second operand, in place, and affine', async (t) => {
    const n = 7 * 12 * 5;
    for (const op of ['add', 'sub', 'mul', 'div'] as const) {
      for (const nb of [n, 1, 12, 7, 60]) {
        const bdata = op === 'div' ? uniform(nb, 0.5, 2) : normal(nb);
        await check(`binary ${op} nb=${nb}`, {
          inputs: { a: { data: normal(n) }, b: { data: bdata } }, outputs: { y: { n } },
          call: (be, b) => be.binary(op, b.a!, b.b!, b.y!),
        }, (s) => t.diagnostic(s));
      }
    }
    await check('binary add in place', {
      inputs: { b: { data: normal(99) } }, outputs: { a: { n: 99, init: normal(99) } },
      call: (be, b) => be.binary('add', b.a!, b.b!, b.a!),
    }, (s) => t.diagnostic(s));
    await check('affine', {
      inputs: { x: { data: normal(77) } }, outputs: { y: { n: 77 } },
      call: (be, b) => be.affine(b.x!, -0.75, 0.125, b.y!),
    }, (s) => t.diagnostic(s));
  });

  it('reduceSum over [outer, size, inner]', async (t) => {
    for (const [outer, size, inner] of [[1, 1000, 1], [5, 37, 1], [3, 17, 13], [2, 9, 64], [4, 1, 6]] as const) {
      await check(`reduceSum ${outer}×${size}×${inner}`, {
        inputs: { x: { data: normal(outer * size * inner) } }, outputs: { y: { n: outer * inner, init: 'nan' } },
        call: (be, b) => be.reduceSum(b.x!, b.y!, outer, size, inner),
      }, (s) => t.diagnostic(s));
    }
  });

  it('matmul: every transpose, odd sizes across the tiles, batches, broadcast, alpha and beta', async (t) => {
    // m ≤ 4 with x·Wᵀ takes the unpacked path (gemv): k across its 16-, 4- and 1-wide loops.
    const shapes: Array<[number, number, number, number]> = [[1, 37, 29, 53], [1, 130, 70, 300], [3, 5, 9, 4], [1, 1, 17, 8], [2, 64, 8, 64], [2, 140, 20, 33],
      [2, 3, 45, 67], [1, 4, 300, 130], [1, 2, 33, 1]];
    for (const [batch, m, n, k] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const [alpha, beta, bcast] of [[1, 0, false], [0.5, 1, true], [-2, 0.3, false]] as const) {
            const strideB = bcast ? 0 : k * n;
            await check(`matmul b=${batch} ${m}×${n}×${k} tA=${transA} tB=${transB} α=${alpha} β=${beta}${bcast ? ' shared B' : ''}`, {
              inputs: { a: { data: normal(batch * m * k) }, b: { data: normal((bcast ? 1 : batch) * k * n) } },
              outputs: { c: { n: batch * m * n, init: beta === 0 ? 'nan' : normal(batch * m * n) } },
              call: (be, b) => be.matmul(b.a!, b.b!, b.c!, { batch, m, n, k, transA, transB, alpha, beta, strideA: m * k, strideB }),
            }, () => {});
          }
        }
      }
    }
    await check('matmul with k = 0 scales the output by beta', {
      inputs: { a: { data: normal(1) }, b: { data: normal(1) } }, outputs: { c: { n: 12, init: normal(12) } },
      call: (be, b) => be.matmul(b.a!, b.b!, b.c!, { batch: 1, m: 3, n: 4, k: 0, transA: false, transB: false, alpha: 1, beta: 0.5, strideA: 0, strideB: 0 }),
    }, (s) => t.diagnostic(s));
    t.diagnostic(`${shapes.length * 12} matmul cases match`);
  });

  it('softmax and RMSNorm, forward and backward', async (t) => {
    const log = (s: string): void => t.diagnostic(s);
    for (const [rows, cols] of [[7, 13], [3, 64], [2, 3], [33, 130]] as const) {
      await check(`softmax ${rows}×${cols}`, {
        inputs: { x: { data: normal(rows * cols, 3) }, dy: { data: normal(rows * cols) } },
        outputs: { y: { n: rows * cols }, dx: { n: rows * cols } },
        call: (be, b) => { be.softmax(b.x!, b.y!, rows, cols); be.softmaxBackward(b.y!, b.dy!, b.dx!, rows, cols); },
      }, log);
      await check(`rmsnorm ${rows}×${cols}`, {
        inputs: { x: { data: normal(rows * cols) }, w: { data: normal(cols) }, dy: { data: normal(rows * cols) } },
        outputs: { y: { n: rows * cols }, rstd: { n: rows }, dx: { n: rows * cols }, dx2: { n: rows * cols }, dw: { n: cols, init: normal(cols) } },
        call: (be, b) => {
          be.rmsnorm(b.x!, b.w!, b.y!, b.rstd!, rows, cols, 1e-5);
          be.rmsnormBackward(b.x!, b.w!, b.rstd!, b.dy!, b.dx!, b.dw!, rows, cols);
          be.rmsnormBackward(b.x!, b.w!, b.rstd!, b.dy!, b.dx2!, null, rows, cols);
        },
      }, log);
    }
  });

  it('RoPE forward and inverse, head dims with an odd half', async (t) => {
    for (const [B, N, H, D] of [[2, 5, 3, 6], [1, 9, 2, 16], [1, 3, 1, 10]] as const) {
      const n = B * N * H * D;
      await check(`rope ${B}×${N}×${H}×${D}`, {
        inputs: { x: { data: normal(n) }, cos: { data: normal(N * D / 2) }, sin: { data: normal(N * D / 2) } },
        outputs: { y: { n }, z: { n } },
        call: (be, b) => { be.rope(b.x!, b.cos!, b.sin!, b.y!, B, N, H, D, false); be.rope(b.x!, b.cos!, b.sin!, b.z!, B, N, H, D, true); },
      }, (s) => t.diagnostic(s));
    }
  });

  it('gather and scatterAdd with repeated ids; an id outside the vocabulary is a RangeError', async (t) => {
    const [V, C, T] = [11, 13, 40];
    const ids = ints(T, V);
    ids[3] = ids[7] = ids[20] = 5;
    await check('gather / scatterAdd', {
      inputs: { table: { data: normal(V * C) }, ids: { data: ids }, dy: { data: normal(T * C) } },
      outputs: { out: { n: T * C }, dtable: { n: V * C, init: normal(V * C) } },
      call: (be, b) => { be.gather(b.table!, b.ids!, b.out!, V, C, T); be.scatterAdd(b.dy!, b.ids!, b.dtable!, V, C, T); },
    }, (s) => t.diagnostic(s));
    const be = registered;
    const table = be.alloc('f32', V * C), bad = be.alloc('i32', 2), out = be.alloc('f32', 2 * C);
    be.upload(bad, Int32Array.of(1, V));
    assert.throws(() => be.gather(table, bad, out, V, C, 2), /token id 11 at position 1 is outside the vocabulary \[0, 11\)/);
    for (const b of [table, bad, out]) be.free(b);
  });

  it('cross-entropy forward and backward with ignored targets, odd vocabulary', async (t) => {
    const [T, V] = [19, 101];
    const targets = ints(T, V);
    targets[2] = targets[11] = -100;
    await check('crossEntropy', {
      inputs: { logits: { data: normal(T * V, 4) }, targets: { data: targets }, dl: { data: normal(T) } },
      outputs: { losses: { n: T }, lse: { n: T }, dlogits: { n: T * V } },
      call: (be, b) => {
        be.crossEntropy(b.logits!, b.targets!, b.losses!, b.lse!, T, V, -100);
        be.crossEntropyBackward(b.logits!, b.targets!, b.lse!, b.dl!, b.dlogits!, T, V, -100);
      },
    }, (s) => t.diagnostic(s));
  });

  it('AdamW, three steps in place', async (t) => {
    const n = 1001;
    await check('adamw', {
      inputs: { g: { data: normal(n) } },
      outputs: { p: { n, init: normal(n) }, m: { n, init: normal(n, 0.1) }, v: { n, init: uniform(n, 0, 0.1) } },
      call: (be, b) => {
        for (let step = 1; step <= 3; step++) be.adamw(b.p!, b.g!, b.m!, b.v!, { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step });
      },
    }, (s) => t.diagnostic(s));
  });

  it('SwiGLU forward and backward, odd lengths, either gradient alone', async (t) => {
    for (const n of [1, 7, 1003, 40001]) {
      const gate = normal(n, 3);
      await check(`swiglu n=${n}`, {
        inputs: { g: { data: gate }, u: { data: normal(n) }, dy: { data: normal(n) } },
        outputs: { y: { n }, dg: { n }, du: { n }, dg1: { n }, du1: { n } },
        call: (be, b) => {
          be.swiglu!(b.g!, b.u!, b.y!);
          be.swigluBackward!(b.g!, b.u!, b.dy!, b.dg!, b.du!);
          be.swigluBackward!(b.g!, b.u!, b.dy!, b.dg1!, null);
          be.swigluBackward!(b.g!, b.u!, b.dy!, null, b.du1!);
        },
      }, (s) => t.diagnostic(s));
    }
    await check('swiglu in place (out = up)', {
      inputs: { g: { data: normal(99, 3) } }, outputs: { u: { n: 99, init: normal(99) } },
      call: (be, b) => be.swiglu!(b.g!, b.u!, b.u!),
    }, (s) => t.diagnostic(s));
  });

  it('NF4 dequantisation equals the reference bit for bit (odd sizes and block sizes, many chunks)', async (t) => {
    const cases = [
      { n: 64 * 5 + 32, blockSize: 64, scaleBlockSize: 256 },
      { n: 64 * 600 + 33, blockSize: 64, scaleBlockSize: 256 }, // odd n, large enough to run on every thread
      { n: 7 * 41 + 3, blockSize: 7, scaleBlockSize: 3 }, // blocks that start mid-byte
      { n: 16 * 50 + 5, blockSize: 16, scaleBlockSize: 3 }, // the vector decoder with one group per block
    ];
    for (const { n, blockSize, scaleBlockSize } of cases) {
      const blocks = Math.ceil(n / blockSize);
      const inputs = {
        packed: Uint8Array.from({ length: Math.ceil(n / 2) }, () => rng.int(256)),
        code4: Float32Array.from(normal(16)),
        codes: Uint8Array.from({ length: blocks }, () => rng.int(256)),
        code8: Float32Array.from(normal(256)),
        absmax: Float32Array.from(uniform(Math.ceil(blocks / scaleBlockSize), 0.5, 2)),
      };
      // An f32 offset (as the quantiser stores it) and one that is not: the kernel rounds the sum once either way.
      for (const scaleOffset of [Math.fround(0.01), 0.01]) {
        const args = { n, blockSize, scaleBlockSize, scaleOffset };
        const outs: Float64Array[] = [];
        for (const be of [cpuBackend(), registered, pooled]) {
          const b = {
            packed: be.alloc('u8', inputs.packed.length), code4: be.alloc('f32', 16), codes: be.alloc('u8', blocks),
            code8: be.alloc('f32', 256), absmax: be.alloc('f32', inputs.absmax.length), out: be.alloc('f32', n),
          };
          be.upload(b.packed, inputs.packed); be.upload(b.code4, inputs.code4); be.upload(b.codes, inputs.codes);
          be.upload(b.code8, inputs.code8); be.upload(b.absmax, inputs.absmax);
          be.fill(b.out, NaN);
          be.dequantize4bit(b.packed, b.code4, b.codes, b.code8, b.absmax, b.out, args);
          outs.push(Float64Array.from(await be.download(b.out) as Float32Array));
          for (const x of Object.values(b)) be.free(x);
        }
        assert.ok(outs[0]!.every(Number.isFinite), 'the reference wrote every element');
        assert.deepEqual(outs[1], outs[0], `wasm: n=${n} block ${blockSize} offset ${scaleOffset}`);
        assert.deepEqual(outs[2], outs[0], `wasm pooled: n=${n} block ${blockSize} offset ${scaleOffset}`);
      }
      t.diagnostic(`n=${n} blockSize=${blockSize}: identical on cpu, wasm and wasm pooled`);
    }
  });

  it('the fused 4-bit linear layer equals dequantising and then x·Wᵀ bit for bit (both builds, many chunks)', async (t) => {
    const cases = [
      { m: 1, n: 37, k: 96, blockSize: 64, scaleBlockSize: 256 }, // rows start inside blocks
      { m: 4, n: 37, k: 96, blockSize: 64, scaleBlockSize: 256 },
      { m: 1, n: 300, k: 32, blockSize: 16, scaleBlockSize: 3 },
      { m: 3, n: 9, k: 48, blockSize: 48, scaleBlockSize: 2 },
    ];
    for (const c of cases) {
      const { m, n, k } = c;
      const blocks = Math.ceil((n * k) / c.blockSize);
      const inputs = {
        x: Float32Array.from(normal(m * k)),
        packed: Uint8Array.from({ length: (n * k) / 2 }, () => rng.int(256)),
        code4: Float32Array.from(normal(16)),
        codes: Uint8Array.from({ length: blocks }, () => rng.int(256)),
        code8: Float32Array.from(normal(256)),
        absmax: Float32Array.from(uniform(Math.ceil(blocks / c.scaleBlockSize), 0.5, 2)),
      };
      const args = { ...c, scaleOffset: Math.fround(0.01) };
      for (const [label, be] of [['wasm', registered], ['wasm pooled', pooled]] as const) {
        const b = {
          x: be.alloc('f32', m * k), packed: be.alloc('u8', inputs.packed.length), code4: be.alloc('f32', 16), codes: be.alloc('u8', blocks),
          code8: be.alloc('f32', 256), absmax: be.alloc('f32', inputs.absmax.length), w: be.alloc('f32', n * k),
          fused: be.alloc('f32', m * n), twin: be.alloc('f32', m * n),
        };
        for (const key of ['x', 'packed', 'code4', 'codes', 'code8', 'absmax'] as const) be.upload(b[key], inputs[key]);
        be.fill(b.fused, NaN);
        assert.equal(be.linear4bit!(b.x, b.packed, b.code4, b.codes, b.code8, b.absmax, b.fused, args), true, `${label}: ran`);
        be.dequantize4bit(b.packed, b.code4, b.codes, b.code8, b.absmax, b.w, { blockSize: c.blockSize, scaleBlockSize: c.scaleBlockSize, n: n * k, scaleOffset: args.scaleOffset });
        be.matmul(b.x, b.w, b.twin, { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: m * k, strideB: n * k });
        const fused = await be.download(b.fused) as Float32Array;
        assert.ok(fused.every(Number.isFinite), `${label}: every output written`);
        assert.deepEqual(fused, await be.download(b.twin), `${label}: m=${m} n=${n} k=${k} block ${c.blockSize}`);
        for (const x of Object.values(b)) be.free(x);
      }
      t.diagnostic(`m=${m} n=${n} k=${k} block ${c.blockSize}: identical on wasm and wasm pooled`);
    }
  });
});

interface AttnCase { B: number; Nq: number; Nk?: number; kvStride?: number; H: number; Hkv: number; D: number; qOffset?: number; mask: AttentionMask }

function attentionCase(c: AttnCase): Case {
  const Nk = c.Nk ?? c.Nq;
  const kvStride = c.kvStride ?? Nk;
  const g: AttentionArgs = { B: c.B, Nq: c.Nq, Nk, kvStride, H: c.H, Hkv: c.Hkv, D: c.D, scale: 1 / Math.sqrt(c.D), qOffset: c.qOffset ?? 0, mask: c.mask };
  const nq = c.B * c.Nq * c.H * c.D;
  const nk = c.B * kvStride * c.Hkv * c.D;
  return {
    inputs: { q: { data: normal(nq, 1.5) }, k: { data: normal(nk, 1.5) }, v: { data: normal(nk) }, dout: { data: normal(nq) } },
    outputs: { out: { n: nq }, lse: { n: c.B * c.H * c.Nq }, dq: { n: nq, init: 'nan' }, dk: { n: nk, init: 'nan' }, dv: { n: nk, init: 'nan' } },
    call: (be, b) => {
      be.attention(b.q!, b.k!, b.v!, b.out!, b.lse!, g);
      be.attentionBackward(b.q!, b.k!, b.v!, b.out!, b.lse!, b.dout!, b.dq!, b.dk!, b.dv!, g);
    },
    rtol: 2e-5,
  };
}

describe('wasm fused attention against the CPU reference, forward and backward', () => {
  const causal: AttentionMask = { kind: 'causal' };
  const cases: Array<[string, AttnCase]> = [
    ['dense causal, one block', { B: 1, Nq: 9, H: 2, Hkv: 2, D: 8, mask: causal }],
    ['dense causal over several blocks, odd N and D', { B: 2, Nq: 150, H: 2, Hkv: 2, D: 5, mask: causal }],
    ['dense causal, GQA 4:1', { B: 1, Nq: 70, H: 4, Hkv: 1, D: 16, mask: causal }],
    ['dense causal, GQA 4:2, D = 12', { B: 2, Nq: 67, H: 4, Hkv: 2, D: 12, mask: causal }],
    ['query offset over a preallocated cache (decoding)', { B: 2, Nq: 3, Nk: 100, kvStride: 130, H: 4, Hkv: 2, D: 8, qOffset: 97, mask: causal }],
    ['query offset, a prompt chunk after cached keys', { B: 1, Nq: 70, Nk: 140, H: 2, Hkv: 1, D: 8, qOffset: 70, mask: causal }],
    // One query row (decoding): the row kernel, keys read in place.
    ['one query row over a cache (decoding), GQA 4:2, odd D', { B: 2, Nq: 1, Nk: 150, kvStride: 170, H: 4, Hkv: 2, D: 13, qOffset: 149, mask: causal }],
    ['one query row, D = 64, GQA 4:1, several key blocks', { B: 1, Nq: 1, Nk: 300, H: 8, Hkv: 2, D: 64, qOffset: 299, mask: causal }],
    ['one query row that sees part of the keys (causal cut inside a block)', { B: 1, Nq: 1, Nk: 100, H: 2, Hkv: 2, D: 8, qOffset: 40, mask: causal }],
    ['one query row, one key', { B: 1, Nq: 1, Nk: 1, H: 2, Hkv: 1, D: 4, mask: causal }],
  ];
  for (const form of ['segmented', 'roll', 'short'] as const) {
    cases.push([`S² ${form}, G = 64 (block-aligned), GQA`, { B: 2, Nq: 256, H: 4, Hkv: 2, D: 8, mask: { kind: 's2', form, group: 64 } }]);
    cases.push([`S² ${form}, G = 10 (groups inside blocks)`, { B: 1, Nq: 130, H: 2, Hkv: 2, D: 6, mask: { kind: 's2', form, group: 10 } }]);
    cases.push([`S² ${form}, G = 50 (groups across blocks), H = 3`, { B: 1, Nq: 200, H: 3, Hkv: 3, D: 8, mask: { kind: 's2', form, group: 50 } }]);
  }
  cases.push(['S² segmented, N not a multiple of G', { B: 1, Nq: 157, H: 4, Hkv: 4, D: 8, mask: { kind: 's2', form: 'segmented', group: 40 } }]);
  cases.push(['S² short, odd group', { B: 1, Nq: 90, H: 2, Hkv: 1, D: 8, mask: { kind: 's2', form: 'short', group: 7 } }]);
  for (const [name, c] of cases) {
    it(name, (t) => check(`attention ${name}`, attentionCase(c), (s) => t.diagnostic(s)));
  }

  it('one query row with whole kv groups per chunk (one thread: the 8 query heads of a kv head together)', async (t) => {
    const single = await WasmBackend.create({ threads: 1 });
    try {
      const c = attentionCase({ B: 2, Nq: 1, Nk: 200, kvStride: 230, H: 16, Hkv: 2, D: 64, qOffset: 199, mask: causal });
      const ref = await runCase(cpuBackend(), c);
      const got = await runCase(single, c);
      for (const k of Object.keys(c.outputs)) assertClose(got[k]!, ref[k]!, c.rtol!, `attention, 8 heads per chunk: ${k}`, (s) => t.diagnostic(s));
    } finally {
      await single.dispose();
    }
  });
});

describe('wasm argument checks', () => {
  it('a buffer too small for the kernel is an error, not a silent overwrite', () => {
    const be = registered;
    const a = be.alloc('f32', 6), b = be.alloc('f32', 6), c = be.alloc('f32', 3);
    assert.throws(() => be.matmul(a, b, c, { batch: 1, m: 2, n: 2, k: 3, transA: false, transB: false, alpha: 1, beta: 0, strideA: 6, strideB: 6 }), /matmul out has 3 elements, the kernel reads 4/);
    assert.throws(() => be.copy(a, c, { shape: [4], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1], accumulate: false }), /outside a buffer of 3/);
    const ids = be.alloc('i32', 1);
    assert.throws(() => be.unary('exp', ids, a), /needs f32/);
    for (const x of [a, b, c, ids]) be.free(x);
  });
});
