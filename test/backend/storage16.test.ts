/**
 * 16-bit operands at the kernel level (backend.ts, storage16.ts): kernels read f16/bf16
 * as f32, compute in f32 and round each result to its output's dtype, nearest even.
 *
 * First the semantics on the CPU reference, with values whose rounding is known by hand;
 * then every backend against the CPU with the same 16-bit operands. Two backends whose
 * f32 results differ by f32 noise can round to neighbouring 16-bit values, so they agree
 * to one unit in the last place of the output dtype (relative to the largest magnitude:
 * 2^-7 for bf16, 2^-10 for f16) plus that noise.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { AttentionArgs, Backend, DeviceBuffer } from '../../src/backend/backend.js';
import { cpuBackend } from '../../src/backend/registry.js';
import type { DType, HostArray } from '../../src/tensor/dtype.js';
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits, fromFloatArray, toFloatArray } from '../../src/tensor/dtype.js';
import { Rng } from '../../src/tensor/random.js';
import { testBackends } from '../helpers/backends.js';
import { createWebGpuBackend } from '../../src/backend/webgpu/webgpu.js';
import { assertClose } from '../helpers/compare.js';

const ULP: Record<string, number> = { bf16: 2 ** -7, f16: 2 ** -10, f32: 0 };
/** f32 differences between kernels (the f32 kernel tests' tolerance). */
const F32_NOISE = 1e-5;

interface Arg { dtype: DType; values?: ArrayLike<number>; numel?: number }

function upload(be: Backend, a: Arg): DeviceBuffer {
  const n = a.values ? a.values.length : a.numel!;
  const b = be.alloc(a.dtype, n);
  if (a.values) be.upload(b, fromFloatArray(a.values, a.dtype));
  else be.fill(b, 0);
  return b;
}

/** Bytes allocated during the last `run`'s call beyond its operands (scratch buffers). */
let lastScratch = 0;

/** Runs `call` on `be` with buffers made from `args`; returns every buffer's values as f32. */
async function run(be: Backend, args: Arg[], call: (be: Backend, b: DeviceBuffer[]) => void): Promise<Float32Array[]> {
  const bufs = args.map((a) => upload(be, a));
  be.resetPeak();
  const before = be.memory().bytes;
  call(be, bufs);
  lastScratch = be.memory().peakBytes - before;
  const out: Float32Array[] = [];
  for (const [i, b] of bufs.entries()) out.push(toFloatArray(await be.download(b) as HostArray, args[i]!.dtype, 'f32') as Float32Array);
  for (const b of bufs) be.free(b);
  return out;
}

function randn(rng: Rng, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => rng.normal() * scale);
}

describe('16-bit operands: semantics on the CPU reference', () => {
  const cpu = cpuBackend();

  it('fill stores the value rounded to f16/bf16 (not its raw bits)', async () => {
    for (const [dtype, bits] of [['bf16', f32ToBf16Bits], ['f16', f32ToF16Bits]] as const) {
      const b = cpu.alloc(dtype, 3);
      cpu.fill(b, 1 / 3);
      assert.deepEqual(Array.from(await cpu.download(b) as Uint16Array), [bits(1 / 3), bits(1 / 3), bits(1 / 3)], dtype);
      cpu.free(b);
    }
  });

  it('a bf16 sum is rounded once, to nearest even', async () => {
    // bf16 has 7 fraction bits: next to 1 the spacing is 2^-7. 1 + 2^-8 and 1 + 3·2^-8 are
    // both halfway; ties go to the even neighbour: 1 and 1 + 2^-6.
    const [, , out] = await run(cpu, [
      { dtype: 'bf16', values: [1, 1, 1] }, { dtype: 'f32', values: [2 ** -8, 3 * 2 ** -8, 2 ** -7] }, { dtype: 'bf16', numel: 3 },
    ], (be, [a, b, o]) => be.binary('add', a!, b!, o!));
    assert.deepEqual(Array.from(out!), [1, 1 + 2 ** -6, 1 + 2 ** -7]);
  });

  it('an accumulating copy adds values, and a mixed matmul reads each operand in its own dtype', async () => {
    const [, dst] = await run(cpu, [{ dtype: 'bf16', values: [1, 2, -3] }, { dtype: 'bf16', values: [0.5, 0.25, 0.125] }], (be, [s, d]) => be.copy(s!, d!, {
      shape: [3], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1], accumulate: true,
    }));
    assert.deepEqual(Array.from(dst!), [1.5, 2.25, -2.875]);
    const third = bf16BitsToF32(f32ToBf16Bits(1 / 3));
    const [, , out] = await run(cpu, [{ dtype: 'bf16', values: [1 / 3, 1] }, { dtype: 'f32', values: [3, 1 / 3] }, { dtype: 'f32', numel: 1 }],
      (be, [a, b, o]) => be.matmul(a!, b!, o!, { batch: 1, m: 1, n: 1, k: 2, transA: false, transB: false, alpha: 1, beta: 0, strideA: 0, strideB: 0 }));
    assert.equal(out![0], Math.fround(Math.fround(third * 3) + Math.fround(1 / 3)), 'bf16(1/3)·3 + 1·(1/3) in f32');
  });
});

describe('16-bit operands: every backend against the CPU reference', async () => {
  const targets = (await testBackends()).filter((tb) => tb.name !== 'cpu').map((tb) => ({ ...tb, label: tb.name }));
  // An adapter without shader-f16 (Chromium's SwiftShader, many older GPUs): every kernel
  // is the same WGSL except the matmul, which then has no f16 compute; that one runs again.
  const webgpu = targets.find((tb) => tb.name === 'webgpu' && tb.backend);
  const noF16 = webgpu ? await createWebGpuBackend({ f16: false }) : null;
  if (noF16) targets.push({ name: 'webgpu', label: 'webgpu without shader-f16', backend: noF16 });
  after(() => noF16?.destroy());
  it('a WebGPU device can be asked not to use shader-f16', { skip: noF16 ? false : 'no WebGPU adapter' }, () => {
    assert.equal(noF16!.hasF16, false);
  });
  for (const tb of targets) {
    const skip = tb.backend ? false : `backend ${tb.name} unavailable: ${tb.skip}`;
    const matmulOnly = tb.backend === noF16;
    const be = tb.backend!;
    /**
     * Runs on the CPU and on `be`; compares the outputs at `outs` within one ulp of their
     * dtype. `scratch` (WebGPU) and `wasmScratch` say what the backend may allocate for the
     * call: up to that many bytes when a number (its kernels read and write the 16-bit
     * operands themselves), or some when 'widened' (the call goes through f32 copies,
     * storage16.ts).
     */
    const compare = async (label: string, log: (s: string) => void, args: Arg[], outs: number[], call: (be: Backend, b: DeviceBuffer[]) => void,
      opts: { extra?: number; scratch?: number | 'widened'; wasmScratch?: number | 'widened' } = {}): Promise<void> => {
      const ref = await run(cpuBackend(), args, call);
      const got = await run(be, args, call);
      for (const i of outs) assertClose(got[i]!, ref[i]!, ULP[args[i]!.dtype]! + F32_NOISE + (opts.extra ?? 0), `${label} ${i} (${args[i]!.dtype})`, log);
      const want = tb.name === 'webgpu' ? opts.scratch : tb.name === 'wasm' ? opts.wasmScratch : undefined;
      if (want === undefined) return;
      if (want === 'widened') assert.ok(lastScratch > 0, `${label}: expected to go through f32 copies`);
      else assert.ok(lastScratch <= want, `${label}: ${lastScratch} bytes of scratch, expected at most ${want} (16-bit operands handled natively)`);
    };

    if (!matmulOnly) it(`${tb.label}: a 16-bit result is rounded once, to nearest even`, { skip }, async () => {
      // bf16 has 7 fraction bits, f16 10: next to 1 the spacing is 2^-7 (2^-10). 1 + u/2 and
      // 1 + 3u/2 are halfway; ties go to the even neighbour: 1 and 1 + 2u.
      for (const [dtype, u] of [['bf16', 2 ** -7], ['f16', 2 ** -10]] as const) {
        const [, , out] = await run(be, [
          { dtype, values: [1, 1, 1, 1, -1] }, { dtype: 'f32', values: [u / 2, 1.5 * u, u, 0.25 * u, -0.75 * u] }, { dtype, numel: 5 },
        ], (b, [x, y, o]) => b.binary('add', x!, y!, o!));
        assert.deepEqual(Array.from(out!), [1, 1 + 2 * u, 1 + u, 1, -1 - u], dtype);
      }
    });

    it(`${tb.label}: matmul with 16-bit operands and outputs, every transpose, accumulating`, { skip }, async (t) => {
      const rng = new Rng(1);
      // A 16-bit output is written two columns at a time: n = 24 natively, n = 23 widened.
      // m = 1 and 3 take Wasm's unpacked x·Wᵀ path (gemv) with a bf16 W.
      for (const [m, n, k] of [[19, 24, 37], [19, 23, 37], [1, 24, 37], [3, 23, 37]] as const) await matmulCases(t, rng, m, n, k);
      // Wasm writes a bf16 output in blocks of rows through an f32 block of at most 4 MiB
      // (here 1024 of the 1100 rows, then 76), plus the packed copy of B; with A transposed
      // the rows of op(A) are not contiguous and the output is widened whole.
      if (matmulOnly) return;
      const [m, n, k] = [1100, 1024, 8];
      for (const transA of [false, true]) {
        await compare(`matmul ${m}×${n}×${k} bf16·f32→bf16 ${transA ? 'T' : 'N'}T, accumulating`, (s) => t.diagnostic(s), [
          { dtype: 'bf16', values: randn(rng, m * k) }, { dtype: 'f32', values: randn(rng, n * k) }, { dtype: 'bf16', values: randn(rng, m * n) },
        ], [2], (b, [aa, ww, o]) => b.matmul(aa!, ww!, o!, { batch: 1, m, n, k, transA, transB: true, alpha: 0.5, beta: 1, strideA: 0, strideB: 0 }),
        { wasmScratch: transA ? 'widened' : 1024 * n * 4 + n * k * 4 });
      }
    });

    const matmulCases = async (t: { diagnostic: (s: string) => void }, rng: Rng, m: number, n: number, k: number): Promise<void> => {
      const all: Array<[DType, DType, DType]> = [['bf16', 'bf16', 'bf16'], ['f16', 'f32', 'f16'], ['f32', 'bf16', 'f32'], ['f16', 'f16', 'f32'], ['f16', 'f16', 'f16'], ['bf16', 'f32', 'bf16'], ['f32', 'f16', 'f32']];
      // without shader-f16 only the f16 · f16 products take another path
      const combos = matmulOnly ? all.filter(([a, b]) => a === 'f16' && b === 'f16') : all;
      const alpha = 0.5;
      // With shader-f16, WebGPU multiplies two f16 operands in f16 and sums each slice of
      // BK = 8 products in f16 before adding it to the f32 total (the reduced-precision
      // reduction PyTorch also allows in f16 GEMMs): each output may be off by up to
      // BK·2^-11·Σ_k|a·b| more, which is added to the tolerance for that case.
      const f16Compute = (be as Backend & { hasF16?: boolean }).hasF16 === true;
      for (const [ta, tb_, to] of combos) {
        for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
          const a = randn(rng, m * k);
          const w = randn(rng, k * n);
          const init = randn(rng, m * n);
          let extra = 0;
          if (f16Compute && ta === 'f16' && tb_ === 'f16') {
            const [a16, w16] = [toFloatArray(fromFloatArray(a, 'f16'), 'f16', 'f64'), toFloatArray(fromFloatArray(w, 'f16'), 'f16', 'f64')];
            let worstSum = 0;
            let worstOut = 0;
            for (let i = 0; i < m; i++) {
              for (let j = 0; j < n; j++) {
                let sAbs = 0;
                let sum = 0;
                for (let kk = 0; kk < k; kk++) {
                  const p = a16[transA ? kk * m + i : i * k + kk]! * w16[transB ? j * k + kk : kk * n + j]!;
                  sAbs += Math.abs(p);
                  sum += p;
                }
                worstSum = Math.max(worstSum, alpha * sAbs);
                worstOut = Math.max(worstOut, Math.abs(alpha * sum + init[i * n + j]!));
              }
            }
            extra = (8 * 2 ** -11 * worstSum) / worstOut;
          }
          await compare(`matmul ${m}×${n}×${k} ${ta}·${tb_}→${to} ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`, (s) => t.diagnostic(s), [
            { dtype: ta, values: a }, { dtype: tb_, values: w }, { dtype: to, values: init },
          ], [2], (b, [aa, ww, o]) => b.matmul(aa!, ww!, o!, { batch: 1, m, n, k, transA, transB, alpha, beta: 1, strideA: 0, strideB: 0 }),
          // Wasm reads 16-bit inputs itself; a 16-bit output goes through an f32 block (here all
          // m rows), or with A transposed through f32 copies.
          { extra, scratch: to === 'f32' || n % 2 === 0 ? 0 : 'widened',
            wasmScratch: to !== 'f32' && transA ? 'widened' : to === 'f32' ? 0 : m * n * 4 });
        }
      }
    };

    if (!matmulOnly) it(`${tb.label}: RMSNorm forward and backward on bf16 activations with an f32 weight`, { skip }, async (t) => {
      const rng = new Rng(2);
      // WebGPU writes rows of even length a word at a time; an odd row length goes through f32
      // copies. Wasm reads and writes bf16 rows of any length itself.
      for (const [rows, C] of [[7, 96], [3, 95]] as const) {
        const opts = { scratch: C % 2 === 0 ? 0 : 'widened', wasmScratch: 0 } as const;
        await compare(`rmsnorm C=${C}`, (s) => t.diagnostic(s), [
          { dtype: 'bf16', values: randn(rng, rows * C) }, { dtype: 'f32', values: randn(rng, C) }, { dtype: 'bf16', numel: rows * C }, { dtype: 'f32', numel: rows },
        ], [2, 3], (b, [x, w, o, r]) => b.rmsnorm(x!, w!, o!, r!, rows, C, 1e-6), opts);
        const x = randn(rng, rows * C);
        let s2 = 0;
        const rstd = Array.from({ length: rows }, (_, r) => { s2 = 0; for (let c = 0; c < C; c++) s2 += x[r * C + c]! ** 2; return 1 / Math.sqrt(s2 / C + 1e-6); });
        await compare(`rmsnormBackward C=${C}`, (s) => t.diagnostic(s), [
          { dtype: 'bf16', values: x }, { dtype: 'bf16', values: randn(rng, C) }, { dtype: 'f32', values: rstd }, { dtype: 'bf16', values: randn(rng, rows * C) },
          { dtype: 'bf16', numel: rows * C }, { dtype: 'f32', values: randn(rng, C) },
        ], [4, 5], (b, [xx, w, r, dy, dx, dw]) => b.rmsnormBackward(xx!, w!, r!, dy!, dx!, dw!, rows, C), opts);
      }
    });

    if (!matmulOnly) it(`${tb.label}: S²-Attn forward and backward on 16-bit q, k, v, out and gradients`, { skip }, async (t) => {
      const rng = new Rng(3);
      // D = 16: every lane width writes whole words; D = 5 (odd) writes its 16-bit outputs
      // through f32 copies on WebGPU. Wasm reads and writes bf16 itself (any D, several key
      // blocks at N = 160, walked by one chunk each when there are 8 (b, kv head) pairs);
      // f16 itself in the forward pass, through f32 copies in the backward pass.
      for (const [dtype, D, N, B, H, Hkv] of [['f16', 16, 32, 1, 4, 2], ['f16', 13, 160, 1, 4, 2], ['bf16', 5, 32, 1, 4, 2], ['bf16', 16, 160, 1, 4, 2], ['bf16', 16, 160, 2, 8, 4]] as const) {
        const args: AttentionArgs = { B, Nq: N, Nk: N, kvStride: N, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: 0, mask: { kind: 's2', form: 'segmented', group: 8 } };
        const q = randn(rng, B * N * H * D);
        const k = randn(rng, B * N * Hkv * D);
        const v = randn(rng, B * N * Hkv * D);
        const fwd: Arg[] = [{ dtype, values: q }, { dtype, values: k }, { dtype, values: v }, { dtype, numel: q.length }, { dtype: 'f32', numel: B * H * N }];
        await compare(`attention ${dtype} D=${D}`, (s) => t.diagnostic(s), fwd, [3, 4], (b, [qq, kk, vv, o, l]) => b.attention(qq!, kk!, vv!, o!, l!, args),
          { scratch: D % 2 === 0 ? 0 : 'widened', wasmScratch: 0 });
        // The backward pass from the CPU's forward outputs.
        const [, , , o, lse] = await run(cpuBackend(), fwd, (b, [qq, kk, vv, oo, l]) => b.attention(qq!, kk!, vv!, oo!, l!, args));
        await compare(`attentionBackward ${dtype} D=${D}`, (s) => t.diagnostic(s), [
          { dtype, values: q }, { dtype, values: k }, { dtype, values: v }, { dtype, values: o! }, { dtype: 'f32', values: lse! },
          { dtype, values: randn(rng, q.length) }, { dtype, numel: q.length }, { dtype, numel: k.length }, { dtype, numel: v.length },
        ], [6, 7, 8], (b, [qq, kk, vv, oo, l, dout, dq, dk, dv]) => b.attentionBackward(qq!, kk!, vv!, oo!, l!, dout!, dq!, dk!, dv!, args),
        // δ (f32, one per query row) is the backward pass's own scratch; Wasm adds an f32 dq
        // accumulator and, with more threads than (b, kv head) pairs, partial dq sums.
        { scratch: D % 2 === 0 ? B * H * N * 4 : 'widened', wasmScratch: dtype === 'bf16' ? B * H * N * 4 + 4 * q.length * 4 : 'widened' });
      }
    });

    if (!matmulOnly) it(`${tb.label}: decoding over a 16-bit KV cache: an f32 query row, bf16 or f16 keys and values`, { skip }, async (t) => {
      const rng = new Rng(6);
      // Both backends read either in place (no allocation; the outputs here are f32).
      for (const [dtype, D] of [['bf16', 64], ['bf16', 13], ['f16', 16], ['f16', 13]] as const) {
        const [B, H, Hkv, Nk, kvStride] = [2, 8, 2, 150, 200];
        const args: AttentionArgs = { B, Nq: 1, Nk, kvStride, H, Hkv, D, scale: 1 / Math.sqrt(D), qOffset: Nk - 1, mask: { kind: 'causal' } };
        await compare(`decoding attention, ${dtype} cache, D=${D}`, (s) => t.diagnostic(s), [
          { dtype: 'f32', values: randn(rng, B * H * D) }, { dtype, values: randn(rng, B * kvStride * Hkv * D) }, { dtype, values: randn(rng, B * kvStride * Hkv * D) },
          { dtype: 'f32', numel: B * H * D }, { dtype: 'f32', numel: B * H },
        ], [3, 4], (b, [qq, kk, vv, o, l]) => b.attention(qq!, kk!, vv!, o!, l!, args),
        { scratch: 0, wasmScratch: 0 });
      }
    });

    if (!matmulOnly) it(`${tb.label}: pointwise kernels, RoPE and embedding rows on f16 and bf16 (odd lengths, in place, broadcast)`, { skip }, async (t) => {
      const rng = new Rng(4);
      const log = (s: string): void => t.diagnostic(s);
      const n = 333;
      const r = (dtype: DType, len = n): Arg => ({ dtype, values: randn(rng, len) });
      const z = (dtype: DType, len = n): Arg => ({ dtype, numel: len });
      // Wasm reads and writes bf16 in SwiGLU itself (mixed with f32 too) and widens f16.
      await compare('swiglu', log, [r('bf16'), r('bf16'), z('bf16')], [2], (b, [g, u, o]) => b.swiglu!(g!, u!, o!), { scratch: 0, wasmScratch: 0 });
      await compare('swiglu bf16 in place, f32 up', log, [r('bf16'), r('f32')], [0], (b, [g, u]) => b.swiglu!(g!, u!, g!), { scratch: 0, wasmScratch: 0 });
      await compare('swiglu in place (out = gate)', log, [r('f16'), r('f32')], [0], (b, [g, u]) => b.swiglu!(g!, u!, g!), { scratch: 0, wasmScratch: 'widened' });
      await compare('swigluBackward', log, [r('bf16'), r('bf16'), r('bf16'), z('bf16'), z('bf16')], [3, 4],
        (b, [g, u, d, dg, du]) => b.swigluBackward!(g!, u!, d!, dg!, du!), { scratch: 0, wasmScratch: 0 });
      await compare('swigluBackward mixed, dgate only', log, [r('f32'), r('bf16'), r('bf16'), z('bf16')], [3],
        (b, [g, u, d, dg]) => b.swigluBackward!(g!, u!, d!, dg!, null), { scratch: 0, wasmScratch: 0 });
      await compare('swigluBackward (dup only)', log, [r('f16'), r('bf16'), r('f32'), z('f16')], [3],
        (b, [g, u, d, du]) => b.swigluBackward!(g!, u!, d!, null, du!), { scratch: 0, wasmScratch: 'widened' });
      // Wasm: bf16 (mixed with f32) read and written by the pointwise kernels themselves; f16 widened.
      const w16 = { scratch: 0, wasmScratch: 'widened' } as const;
      const n16 = { scratch: 0, wasmScratch: 0 } as const;
      await compare('unary silu', log, [r('f16'), z('f16')], [1], (b, [x, o]) => b.unary('silu', x!, o!), w16);
      await compare('unary exp in place', log, [r('bf16')], [0], (b, [x]) => b.unary('exp', x!, x!), n16);
      await compare('unary silu bf16 → f32', log, [r('bf16'), z('f32')], [1], (b, [x, o]) => b.unary('silu', x!, o!), n16);
      await compare('unaryBackward tanh', log, [r('bf16'), r('f32'), z('bf16')], [2], (b, [x, dy, dx]) => b.unaryBackward('tanh', x!, dy!, dx!), n16);
      await compare('affine', log, [r('f32'), z('f16')], [1], (b, [x, o]) => b.affine(x!, 0.75, -0.5, o!), w16);
      await compare('affine in place', log, [r('bf16')], [0], (b, [x]) => b.affine(x!, -2, 0.125, x!), n16);
      await compare('binary add, broadcast', log, [r('bf16', 37 * 9), r('f16', 9), z('f16', 37 * 9)], [2], (b, [x, y, o]) => b.binary('add', x!, y!, o!), w16);
      await compare('binary mul in place', log, [r('bf16'), r('f32')], [0], (b, [a, w]) => b.binary('mul', a!, w!, a!), n16);
      // the three broadcast paths of Wasm's binary kernel: rows of 8, one value, rows of 9 (scalar)
      await compare('binary sub bf16, rows of 8', log, [r('bf16', 37 * 8), r('bf16', 8), z('bf16', 37 * 8)], [2], (b, [x, y, o]) => b.binary('sub', x!, y!, o!), n16);
      await compare('binary div bf16 by one value', log, [r('bf16'), { dtype: 'bf16', values: [1.75] }, z('bf16')], [2], (b, [x, y, o]) => b.binary('div', x!, y!, o!), n16);
      await compare('binary add bf16, rows of 9', log, [r('bf16', 37 * 9), r('f32', 9), z('bf16', 37 * 9)], [2], (b, [x, y, o]) => b.binary('add', x!, y!, o!), n16);
      // WebGPU's RoPE writes d and d + 1 together when D/2 is even (D = 8), one at a time
      // otherwise (D = 6: widened); Wasm reads and writes bf16 itself for any D.
      for (const D of [8, 6]) {
        const [B, N, H] = [2, 5, 3];
        const ang = Array.from({ length: N * D / 2 }, (_, i) => i * 0.37);
        await compare(`rope D=${D}`, log, [
          r('bf16', B * N * H * D), { dtype: 'f32', values: ang.map(Math.cos) }, { dtype: 'f32', values: ang.map(Math.sin) }, z('bf16', B * N * H * D),
        ], [3], (b, [x, c, s, o]) => b.rope(x!, c!, s!, o!, B, N, H, D, true), { scratch: D % 4 === 0 ? 0 : 'widened', wasmScratch: 0 });
      }
      // Embedding rows from a bf16 table: no f32 copy of the table when C is even.
      for (const C of [12, 7]) {
        const [V, T] = [11, 9];
        await compare(`gather C=${C}`, log, [r('bf16', V * C), { dtype: 'i32', values: Array.from({ length: T }, () => rng.int(V)) }, z('bf16', T * C)],
          [2], (b, [tab, ids, o]) => b.gather(tab!, ids!, o!, V, C, T), { scratch: C % 2 === 0 ? 0 : 'widened', wasmScratch: 0 });
      }
      // Wasm widens bf16 and f16 rows into f32 itself (C = 7: the scalar tail; C = 19: a
      // vector of 8 first), with no f32 copy of the table.
      for (const [dt, C] of [['bf16', 7], ['f16', 7], ['f16', 19]] as const) {
        const [V, T] = [11, 9];
        await compare(`gather ${dt} → f32`, log, [r(dt, V * C), { dtype: 'i32', values: Array.from({ length: T }, () => rng.int(V)) }, z('f32', T * C)],
          [2], (b, [tab, ids, o]) => b.gather(tab!, ids!, o!, V, C, T), { scratch: 0, wasmScratch: 0 });
      }
      await compare('copy accumulate', log, [r('bf16', 6 * 4), r('bf16', 4)], [1], (b, [s, d]) => b.copy(s!, d!, {
        shape: [6, 4], srcOffset: 0, srcStrides: [4, 1], dstOffset: 0, dstStrides: [0, 1], accumulate: true,
      }), { scratch: 'widened' });
    });
  }
});

describe('16-bit operands: native16: false (the comparison benchmarks use it)', () => {
  it('a Wasm backend created with native16: false widens a bf16 weight, with the same result', async () => {
    const rng = new Rng(5);
    const [m, n, k] = [1, 24, 37];
    const args: Arg[] = [{ dtype: 'f32', values: randn(rng, m * k) }, { dtype: 'bf16', values: randn(rng, n * k) }, { dtype: 'f32', numel: m * n }];
    const call = (b: Backend, [x, w, o]: DeviceBuffer[]): void => b.matmul(x!, w!, o!, { batch: 1, m, n, k, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 });
    const { WasmBackend } = await import('../../src/backend/wasm/wasm.js');
    const results: Float32Array[] = [];
    for (const native16 of [true, false]) {
      const be = await WasmBackend.create({ threads: 1, native16 });
      try {
        results.push((await run(be, args, call))[2]!);
        if (native16) assert.equal(lastScratch, 0, 'the bf16 weight is read directly');
        else assert.ok(lastScratch >= n * k * 4, `the bf16 weight goes through an f32 copy (${lastScratch} bytes)`);
      } finally {
        await be.dispose();
      }
    }
    assert.deepEqual(results[1], results[0]);
  });
});
