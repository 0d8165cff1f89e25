/**
 * Choosing the WebGPU backend: an adapter that is missing or lacks a limit the kernels
 * need is refused with a message naming it, and automatic selection then falls back to
 * the next backend; a software adapter (lavapipe) is usable when asked for by name but
 * passed over by automatic selection. The fake adapters here need no GPU.
 */
/// <reference types="@webgpu/types" />
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autoBackend, backendOptions, configureBackend, cpuBackend, getBackend, registerBackend } from '../../src/backend/registry.js';
import type { Backend } from '../../src/backend/backend.js';
import { acquireDevice } from '../../src/backend/webgpu/device.js';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backend/webgpu/webgpu.js';
import { LongLoraError } from '../../src/errors.js';
import { sgmPlan, sgmStorageBytes } from '../../src/backend/webgpu/kernels/matmul-sgm.js';
import { attnSgmBwdBytes, attnSgmBwdPlan, attnSgmBytes, attnSgmPlan } from '../../src/backend/webgpu/kernels/attention-sgm.js';

const LIMITS = {
  maxStorageBuffersPerShaderStage: 8, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384, maxUniformBufferBindingSize: 65536, maxStorageBufferBindingSize: 2 ** 27,
  maxBufferSize: 2 ** 28,
};

function fakeGpu(adapter: object | null): GPU {
  return { requestAdapter: async () => adapter } as unknown as GPU;
}

function fakeAdapter(limits: Partial<typeof LIMITS>): object {
  return {
    info: { vendor: 'acme', architecture: 'compat', device: 'x1', description: 'Acme X1', isFallbackAdapter: false },
    limits: { ...LIMITS, ...limits },
    features: new Set<string>(),
    requestDevice: async () => { throw new Error('not reached'); },
  };
}

describe('webgpu adapter selection', () => {
  it('no adapter: a clear error that names the fix', async () => {
    await assert.rejects(acquireDevice({ gpu: fakeGpu(null) }),
      (e: unknown) => e instanceof LongLoraError && /no GPU adapter found/.test(e.message) && /--backend wasm\|cpu/.test(e.message));
  });

  it('an adapter below a needed limit is refused, naming the limit and the adapter', async () => {
    await assert.rejects(acquireDevice({ gpu: fakeGpu(fakeAdapter({ maxStorageBuffersPerShaderStage: 4 })) }),
      (e: unknown) => e instanceof LongLoraError && /Acme X1 has maxStorageBuffersPerShaderStage = 4; the kernels need at least 8/.test(e.message));
    await assert.rejects(acquireDevice({ gpu: fakeGpu(fakeAdapter({ maxComputeWorkgroupStorageSize: 8192 })) }), /maxComputeWorkgroupStorageSize = 8192/);
  });

  it('automatic selection falls back past a refused adapter and reports why', async () => {
    registerBackend('webgpu-compat-test', 1000, () => createWebGpuBackend({ gpu: fakeGpu(fakeAdapter({ maxStorageBuffersPerShaderStage: 4 })) }));
    const { backend, skipped } = await autoBackend();
    assert.notEqual(backend.name, 'webgpu-compat-test');
    const s = skipped.find((x) => x.name === 'webgpu-compat-test');
    assert.ok(s && /maxStorageBuffersPerShaderStage = 4/.test(s.error), 'the refusal is reported');
    let real: WebGpuBackend | null = null;
    try { real = await getBackend('webgpu') as WebGpuBackend; } catch { /* no adapter on this machine */ }
    if (real?.adapter.software) {
      const w = skipped.find((x) => x.name === 'webgpu');
      assert.ok(w && /software adapter/.test(w.error) && /--backend webgpu/.test(w.error), 'a software adapter is passed over with a message');
      assert.notEqual(backend.name, 'webgpu');
    }
  });
});

describe('backend options (configureBackend)', () => {
  it('reach the factory; the same options keep the backend, other ones make a new one; an unknown backend is named', async () => {
    const made: Array<Record<string, unknown>> = [];
    registerBackend('options-test', -1, (options) => { made.push({ ...options }); return { ...cpuBackend(), name: 'options-test' } as Backend; });
    configureBackend('options-test', { subgroupMatrix: true });
    const first = await getBackend('options-test');
    configureBackend('options-test', { subgroupMatrix: true });
    assert.equal(await getBackend('options-test'), first, 'unchanged options: the same backend');
    assert.deepEqual(backendOptions('options-test'), { subgroupMatrix: true });
    configureBackend('options-test', {});
    assert.notEqual(await getBackend('options-test'), first, 'other options: a new backend');
    assert.deepEqual(made, [{ subgroupMatrix: true }, {}]);
    assert.throws(() => configureBackend('no-such-backend', {}), (e: unknown) => e instanceof LongLoraError && /unknown backend 'no-such-backend'/.test(e.message));
  });

  it('are checked against what the factory reads: a misspelt one is named with the nearest, before any backend is made', () => {
    const refused = (name: string, options: Record<string, unknown>): string => {
      try { configureBackend(name, options); } catch (e) { assert.ok(e instanceof LongLoraError); return e.message; }
      return assert.fail(`${name} took ${JSON.stringify(options)}`);
    };
    assert.match(refused('webgpu', { subgroupMatirx: true }), /^the webgpu backend has no option 'subgroupMatirx'; did you mean 'subgroupMatrix'\? Its options: .*subgroupMatrix/);
    assert.match(refused('wasm', { thread: 2 }), /^the wasm backend has no option 'thread'; did you mean 'threads'\?/);
    assert.match(refused('cpu', { threads: 2 }), /^the cpu backend has no option 'threads'; it takes none$/);
    assert.deepEqual(backendOptions('webgpu'), {}, 'nothing was set by the refused calls');
    configureBackend('wasm', { threads: 1 });
    assert.deepEqual(backendOptions('wasm'), { threads: 1 });
    configureBackend('wasm', {});
  });
});

describe('webgpu subgroup matrices (tensor cores): asking for them and planning the kernel', () => {
  const f16f32 = (M: number, N: number, K: number) => ({ componentType: 'f16', resultComponentType: 'f32', M, N, K });

  it('are requested only when asked for, and the adapter\'s configurations are passed on', async () => {
    const requested: string[][] = [];
    const configs = [{ componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 }, f16f32(16, 16, 16)];
    const adapter = {
      ...fakeAdapter({}),
      info: { vendor: 'acme', architecture: 'tc', device: 'x2', description: 'Acme X2', subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: configs },
      features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']),
      requestDevice: async (d: GPUDeviceDescriptor) => { requested.push([...(d.requiredFeatures ?? [])] as string[]); return {}; },
    };
    const plain = await acquireDevice({ gpu: fakeGpu(adapter) });
    assert.equal(plain.features.subgroupMatrix, null);
    assert.deepEqual(plain.features.subgroupSize, { min: 32, max: 32 });
    const asked = await acquireDevice({ gpu: fakeGpu(adapter), subgroupMatrix: true });
    assert.deepEqual(asked.features.subgroupMatrix, configs);
    assert.deepEqual(requested, [['shader-f16', 'subgroups'], ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']]);
    // without shader-f16 (the kernel's operands are f16) the feature is not requested
    const noF16 = await acquireDevice({ gpu: fakeGpu(adapter), subgroupMatrix: true, f16: false });
    assert.equal(noF16.features.subgroupMatrix, null);
  });

  it('the plan takes an f16 → f32 configuration whose blocks tile the workgroup tile, in the workgroup memory there is', () => {
    // NVIDIA-like: 16×16×16 and 16×8×16; 48 KiB of workgroup memory fits 64×64 tiles, not 128×128
    const nv = sgmPlan([f16f32(16, 8, 16), f16f32(16, 16, 16)], 32, 32, 49152, 1024);
    assert.deepEqual(nv.plan, { M: 16, N: 16, K: 16, SG: 32, BM: 64, BN: 64, BK: 32, emulate: false });
    assert.ok(sgmStorageBytes(nv.plan!) <= 49152 && sgmStorageBytes({ BM: 128, BN: 128, BK: 32 }) > 49152);
    // with more memory, 128×128 tiles
    assert.equal(sgmPlan([f16f32(16, 16, 16)], 32, 32, 131072, 1024).plan?.BM, 128);
    // Metal-like 8×8×8 blocks: 128×128 would give each subgroup 64 results, so 64×64
    assert.equal(sgmPlan([f16f32(8, 8, 8)], 32, 32, 131072, 1024).plan?.BM, 64);
  });

  it('no plan, with the reason, for what the kernel cannot use', () => {
    assert.match(sgmPlan([], 32, 32, 49152, 1024).reason, /no subgroup-matrix configurations/);
    assert.match(sgmPlan([f16f32(16, 16, 16)], 32, 64, 49152, 1024).reason, /subgroup size varies \(32–64\)/);
    assert.match(sgmPlan([{ componentType: 'i8', resultComponentType: 'i32', M: 8, N: 8, K: 32 }], 32, 32, 49152, 1024).reason,
      /no f16 → f32 configuration \(the adapter has i8→i32 8×8×32\)/);
    assert.match(sgmPlan([f16f32(16, 16, 16)], 32, 32, 16384, 1024).reason, /tiles the kernel's 128×128 or 64×64 tiles in 16384 B/);
    assert.match(sgmPlan([f16f32(16, 16, 16)], 128, 128, 49152, 256).reason, /4 subgroups of 128 exceed 256 invocations/);
    // blocks that do not divide a subgroup's share of the tile
    assert.equal(sgmPlan([f16f32(48, 16, 16)], 32, 32, 1 << 20, 1024).plan, null);
  });

  it('the attention kernels take the largest tiles that their arrays fit, on the matmul\'s configuration', () => {
    const nv = sgmPlan([f16f32(16, 16, 16)], 32, 32, 49152, 1024).plan!;
    // 32 KiB: 32-row forward tiles and 16 × 32 backward tiles at head dim 64; more memory, larger tiles
    assert.equal(attnSgmPlan(nv, 64, 32768).plan?.T, 32);
    assert.ok(attnSgmBytes(32, 64) <= 32768 && attnSgmBytes(64, 64) > 32768);
    assert.equal(attnSgmPlan(nv, 64, 1 << 17).plan?.T, 64);
    assert.deepEqual([attnSgmBwdPlan(nv, 64, 32768).plan?.TQ, attnSgmBwdPlan(nv, 64, 32768).plan?.TK], [16, 32]);
    assert.ok(attnSgmBwdBytes(16, 32, 64) <= 32768 && attnSgmBwdBytes(32, 32, 64) > 32768);
    assert.deepEqual([attnSgmBwdPlan(nv, 64, 1 << 17).plan?.TQ, attnSgmBwdPlan(nv, 64, 1 << 17).plan?.TK], [64, 64]);
    // head dim 128 needs smaller tiles; one that is not a multiple of the blocks gets none, with the reason
    assert.equal(attnSgmPlan(nv, 128, 32768).plan?.T, 16);
    assert.match(attnSgmPlan(nv, 40, 32768).reason, /head dim 40 is not a multiple of the 16×16×16 blocks/);
    assert.match(attnSgmBwdPlan(nv, 40, 32768).reason, /head dim 40/);
    assert.match(attnSgmPlan(nv, 256, 16384).reason, /no tile of 64, 32 or 16 rows fits head dim 256 in 16384 B/);
  });
});
