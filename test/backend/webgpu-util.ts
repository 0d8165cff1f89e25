/**
 * The WebGPU backend under test, or the reason it is unavailable (no `webgpu` package, no
 * adapter): tests pass the reason to `skip`, so a machine without WebGPU shows every
 * WebGPU test as skipped with that message instead of failing or passing silently.
 */
import { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from '../../src/backend/webgpu/webgpu.js';

export async function webgpuUnderTest(opts: WebGpuBackendOptions = {}): Promise<{ backend: WebGpuBackend | null; skip: string | null }> {
  try {
    return { backend: await createWebGpuBackend(opts), skip: null };
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    process.stderr.write(`# WebGPU tests skipped: ${why}\n`);
    return { backend: null, skip: `WebGPU unavailable: ${why}` };
  }
}
