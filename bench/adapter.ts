/**
 * What the WebGPU adapter of this machine offers, as Dawn (the `webgpu` package) reports it
 * with `allow_unsafe_apis` (which experimental features such as subgroup matrices need):
 * its name, features, subgroup sizes and subgroup-matrix configurations, and the limits
 * the kernels care about. The first thing to read on a new GPU machine.
 *
 *   npm run build && node dist/bench/adapter.js [--backend vulkan|...]
 */
/// <reference types="@webgpu/types" />
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { backend: { type: 'string' } } });
const spec = 'webgpu';
const { create } = await import(spec) as { create: (flags: string[]) => GPU };
const gpu = create(['enable-dawn-features=allow_unsafe_apis', ...(values.backend ? [`backend=${values.backend}`] : [])]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) {
  console.log('no WebGPU adapter: no GPU driver Dawn can use (on Linux, a Vulkan driver and libvulkan1), and no software Vulkan');
  process.exit(1);
}
const info = adapter.info as GPUAdapterInfo & Record<string, unknown>;
const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => typeof x === 'bigint' ? Number(x) : x);
console.log(`adapter: ${[info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' | ')}`);
for (const k of ['subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter']) if (k in info) console.log(`  ${k}: ${show(info[k])}`);
const configs = (info.subgroupMatrixConfigs ?? []) as Array<Record<string, unknown>>;
console.log(`  subgroupMatrixConfigs: ${configs.length === 0 ? 'none' : configs.map((c) => `${String(c.componentType)}→${String(c.resultComponentType)} ${String(c.M)}×${String(c.N)}×${String(c.K)}`).join(', ')}`);
console.log(`features: ${[...adapter.features].sort().join(', ')}`);
const limits = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage'] as const;
console.log(`limits: ${limits.map((k) => `${k} ${show(adapter.limits[k])}`).join(', ')}`);
