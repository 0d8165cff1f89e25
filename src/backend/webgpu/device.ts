/// <reference types="@webgpu/types" />
/**
 * Getting a WebGPU device: `navigator.gpu` in browsers (and Deno), the `webgpu` npm
 * package (Dawn) in Node. The package is imported here, inside an async function, so that
 * machines without it (it is an optional dependency) still load everything else.
 *
 * The adapter must meet the limits the kernels are written for (`REQUIRED`); one that
 * does not (a compatibility-mode adapter, for instance) is refused with a message that
 * names the limit, so automatic selection falls back to another backend.
 */
import { LongLoraError } from '../../errors.js';
import type { SubgroupMatrixConfig } from './kernels/matmul-sgm.js';

/** Numeric WebGPU flags, so that no browser globals are needed (same values everywhere). */
export const BufferUsage = {
  MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80,
} as const;
export const MapMode = { READ: 0x1 } as const;
export const ShaderStage = { COMPUTE: 0x4 } as const;

/** Limits the kernels need (the WebGPU defaults, which every full adapter offers). */
const REQUIRED = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxUniformBufferBindingSize: 16384,
} as const;

/** Limits raised to the adapter's maximum when the device is requested. */
const RAISED = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
] as const;

export interface WebGpuOptions {
  /** A GPU object to use (tests, or an embedder with its own `navigator.gpu`). */
  gpu?: GPU;
  /** Dawn options for the `webgpu` package's `create()`, e.g. `backend=vulkan`. */
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
  /** Ask for shader-f16 when the adapter has it (default true). */
  f16?: boolean;
  /**
   * Ask for subgroup matrices (tensor cores; Dawn's experimental
   * `chromium-experimental-subgroup-matrix`) when the adapter has them. Default false. In
   * Node this creates Dawn with `allow_unsafe_apis`, which experimental features need.
   */
  subgroupMatrix?: boolean;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (lavapipe, SwiftShader, WARP). */
  software: boolean;
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: AdapterSummary;
  features: {
    f16: boolean; subgroups: boolean; timestamps: boolean;
    /** The adapter's subgroup sizes, with the subgroups feature. */
    subgroupSize: { min: number; max: number } | null;
    /** Subgroup-matrix configurations, when they were asked for and the device has them. */
    subgroupMatrix: SubgroupMatrixConfig[] | null;
  };
  /** Keeps the Dawn instance alive as long as the device is used. */
  instance: unknown;
}

let dawn: { gpu: GPU } | null = null;

async function nodeGpu(flags: string[]): Promise<GPU> {
  if (dawn && flags.length === 0) return dawn.gpu;
  const spec = 'webgpu'; // a variable, so the build does not need the optional package
  let mod: { create: (flags: string[]) => GPU };
  try {
    mod = await import(spec) as typeof mod;
  } catch (e) {
    throw new LongLoraError(`webgpu: the 'webgpu' package (Dawn for Node) is not installed or failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)}). ` +
      'Install it with `npm install webgpu`, or use --backend wasm|cpu');
  }
  const gpu = mod.create(flags);
  if (flags.length === 0) dawn = { gpu };
  return gpu;
}

function summarise(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const fallback = info.isFallbackAdapter ?? (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  const software = fallback || /llvmpipe|lavapipe|swiftshader|warp|software/i.test(`${info.architecture} ${info.device} ${info.description}`);
  return {
    vendor: info.vendor ?? '', architecture: info.architecture ?? '', device: info.device ?? '',
    description: info.description ?? '', software,
  };
}

export function describeAdapter(a: AdapterSummary): string {
  const name = a.description || [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unnamed adapter';
  return a.software ? `${name} (software)` : name;
}

/**
 * True in a browser page or worker (no Node.js, no Deno): errors there name what to change
 * in the browser or the page, not packages to install or command-line flags.
 */
export function inBrowser(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  return typeof g.process?.versions?.node !== 'string' && g.Deno === undefined;
}

/** How to pick another backend, in the words of where this runs. */
export function otherBackend(): string {
  return inBrowser() ? "use setBackend('wasm') or setBackend('cpu')" : 'use --backend wasm|cpu';
}

/** Requests an adapter and a device with raised limits; throws a LongLoraError naming what is missing. */
export async function acquireDevice(opts: WebGpuOptions = {}): Promise<AcquiredDevice> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const flags = [...(opts.dawnFlags ?? [])];
  if (opts.subgroupMatrix && !flags.some((f) => f.includes('allow_unsafe_apis'))) flags.push('enable-dawn-features=allow_unsafe_apis');
  if (!opts.gpu && !nav?.gpu && inBrowser()) {
    // The `webgpu` package is Dawn for Node; a page has WebGPU from the browser or not at all.
    throw new LongLoraError('webgpu: this browser offers no WebGPU here (navigator.gpu is missing): it needs a secure context ' +
      '(https:// or http://localhost) and a browser with WebGPU switched on; ' +
      `else ${otherBackend()}`);
  }
  const gpu = opts.gpu ?? nav?.gpu ?? await nodeGpu(flags);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new LongLoraError(inBrowser()
      ? 'webgpu: the browser has WebGPU but no GPU adapter for this page (WebGPU switched off, or the GPU or its driver blocklisted: ' +
        `chrome://gpu says which in Chrome); ${otherBackend()}`
      : 'webgpu: no GPU adapter found (no GPU driver, and no software Vulkan such as Mesa lavapipe ≥ 25). ' +
        'Install a GPU driver or mesa-vulkan-drivers, or use --backend wasm|cpu');
  }
  const summary = summarise(adapter);
  for (const [k, need] of Object.entries(REQUIRED)) {
    const have = adapter.limits[k as keyof GPUSupportedLimits] as number;
    if (!(have >= need)) {
      throw new LongLoraError(`webgpu: adapter ${describeAdapter(summary)} has ${k} = ${have}; the kernels need at least ${need}. ` +
        `${inBrowser() ? otherBackend().replace(/^use/, 'Use') : 'Use --backend wasm|cpu'} (or auto, which falls back by itself)`);
    }
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED) requiredLimits[k] = adapter.limits[k] as number;
  const features: GPUFeatureName[] = [];
  const f16 = (opts.f16 ?? true) && adapter.features.has('shader-f16');
  if (f16) features.push('shader-f16');
  const subgroups = adapter.features.has('subgroups' as GPUFeatureName);
  if (subgroups) features.push('subgroups' as GPUFeatureName);
  const info = adapter.info as GPUAdapterInfo & { subgroupMatrixConfigs?: SubgroupMatrixConfig[]; subgroupMinSize?: number; subgroupMaxSize?: number };
  const subgroupSize = subgroups ? { min: info.subgroupMinSize ?? 0, max: info.subgroupMaxSize ?? 0 } : null;
  const sgmFeature = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;
  let subgroupMatrix: SubgroupMatrixConfig[] | null = null;
  if (opts.subgroupMatrix && subgroups && f16 && adapter.features.has(sgmFeature)) {
    features.push(sgmFeature);
    subgroupMatrix = [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K }));
  }
  const timestamps = adapter.features.has('timestamp-query');
  if (timestamps) features.push('timestamp-query');
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  } catch (e) {
    throw new LongLoraError(`webgpu: adapter ${describeAdapter(summary)} refused a device (${e instanceof Error ? e.message : String(e)}). Use --backend wasm|cpu`);
  }
  return { device, adapter: summary, features: { f16, subgroups, timestamps, subgroupSize, subgroupMatrix }, instance: gpu };
}
