/**
 * Backend registry. The CPU reference backend is always there; faster backends
 * (wasm, webgpu) register a factory, which may be asynchronous (a GPU adapter is
 * requested asynchronously) and may fail on machines without support.
 */
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu/cpu.js';
import { LongLoraError } from '../errors.js';
import { closestNames } from '../util/text.js';
import type { WasmBackendOptions } from './wasm/wasm.js';
import type { WebGpuBackendOptions } from './webgpu/webgpu.js';

interface Entry {
  /** Higher is preferred by `autoBackend`. */
  priority: number;
  create: (options: BackendOptions) => Backend | Promise<Backend>;
  /** What `configureBackend` gave; the factory is called with it. */
  options: BackendOptions;
  /** The option names its factory reads (undefined: not checked). */
  optionNames?: readonly string[];
  instance?: Backend;
}

/** Options a backend's factory takes (for webgpu: `WebGpuOptions`, e.g. `{ subgroupMatrix: true }`). */
export type BackendOptions = Readonly<Record<string, unknown>>;

const entries = new Map<string, Entry>();
const cpu = new CpuBackend();
entries.set('cpu', { priority: 0, create: () => cpu, options: {}, optionNames: [], instance: cpu });
let current: Backend = cpu;

/**
 * Adds a backend. `optionNames`, when given, are the options its factory reads:
 * `configureBackend` refuses any other (a misspelt option would be ignored silently).
 */
export function registerBackend(name: string, priority: number, create: (options: BackendOptions) => Backend | Promise<Backend>,
  optionNames?: readonly string[]): void {
  entries.set(name, { priority, create, options: {}, ...(optionNames ? { optionNames } : {}) });
}

/**
 * Sets the options the named backend is created with. Call it before the backend is first
 * used; if it already exists with other options, later `getBackend` calls create a new one
 * (tensors already made on the old one stay there).
 */
export function configureBackend(name: string, options: BackendOptions): void {
  const e = entry(name);
  const known = e.optionNames;
  for (const k of Object.keys(options)) {
    if (known && !known.includes(k)) {
      const near = closestNames(k, [...known], 1)[0];
      throw new LongLoraError(`the ${name} backend has no option '${k}'` + (known.length === 0 ? '; it takes none' :
        `${near !== undefined ? `; did you mean '${near}'?` : ''} Its options: ${known.join(', ')}`));
    }
  }
  if (JSON.stringify(options) === JSON.stringify(e.options)) return;
  e.options = { ...options };
  if (e.instance && name !== 'cpu') e.instance = undefined;
}

/** The options the named backend is (or will be) created with. */
export function backendOptions(name: string): BackendOptions {
  return entry(name).options;
}

/** The named backend's registration, or an error that lists the names there are. */
function entry(name: string): Entry {
  const e = entries.get(name);
  if (!e) throw new LongLoraError(`unknown backend '${name}'. Available: ${backendNames().join(', ')}.`);
  return e;
}

// WebGPU (Dawn's `webgpu` package in Node, navigator.gpu in browsers): imported only when
// first asked for, so machines without the package or a GPU load everything else.
registerBackend('webgpu', 20, async (options) => (await import('./webgpu/webgpu.js')).createWebGpuBackend(options as WebGpuBackendOptions),
  optionNames<WebGpuBackendOptions>({ gpu: 1, dawnFlags: 1, powerPreference: 1, f16: 1, subgroupMatrix: 1, poolBytes: 1, poison: 1, batch: 1,
    attentionTiles: 1, matmulTile: 1, decodeKernels: 1, profile: 1, native16: 1, emulateSubgroupMatrix: 1 }));

// WebAssembly SIMD kernels on every core (src/backend/wasm/): preferred over the CPU
// reference backend; fails to initialise, with a message, where the engine lacks Wasm
// SIMD or shared memory.
registerBackend('wasm', 10, async (options) => (await import('./wasm/wasm.js')).WasmBackend.create(options as WasmBackendOptions),
  optionNames<WasmBackendOptions>({ threads: 1, flavour: 1, parallelMin: 1, native16: 1 }));

/** The names of an options type: the compiler checks that the record has all of them and nothing else. */
function optionNames<T>(names: Record<keyof T, 1>): readonly string[] {
  return Object.keys(names);
}

export function backendNames(): string[] {
  return [...entries.keys()];
}

/** Creates (once) and returns the named backend. */
export async function getBackend(name: string): Promise<Backend> {
  const e = entry(name);
  e.instance ??= await e.create(e.options);
  return e.instance;
}

/** The backend new tensors are created on. */
export function currentBackend(): Backend {
  return current;
}

export async function setBackend(name: string): Promise<Backend> {
  current = await getBackend(name);
  return current;
}

/** The CPU reference backend (always available, synchronous to create). */
export function cpuBackend(): Backend {
  return cpu;
}

/**
 * Picks the highest-priority backend that initialises; returns the failures it skipped.
 * A backend that sets `autoSkipReason` (WebGPU on a software adapter) is passed over.
 */
export async function autoBackend(): Promise<{ backend: Backend; skipped: Array<{ name: string; error: string }> }> {
  const skipped: Array<{ name: string; error: string }> = [];
  const ranked = [...entries.entries()].sort((a, b) => b[1].priority - a[1].priority);
  for (const [name] of ranked) {
    try {
      const be = await getBackend(name);
      const why = (be as { autoSkipReason?: string | null }).autoSkipReason;
      if (why) { skipped.push({ name, error: why }); continue; }
      return { backend: await setBackend(name), skipped };
    } catch (e) {
      skipped.push({ name, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return { backend: cpu, skipped };
}
