/**
 * Choosing the WebGPU backend: an adapter that is missing or lacks a limit the kernels
 * need is refused with a message naming it, and automatic selection then falls back to
 * the next backend; a software adapter (lavapipe) is usable when asked for by name but
 * passed over by automatic selection. The fake adapters here need no GPU.
 */
/// <reference types="@webgpu/types" />
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autoBackend, getBackend, registerBackend } from '../../src/backend/registry.js';
import { acquireDevice } from '../../src/backend/webgpu/device.js';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backend/webgpu/webgpu.js';
import { LongLoraError } from '../../src/errors.js';

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
