/**
 * Finds and compiles the kernel module for this engine. Two builds ship (assembly/
 * build.mjs): relaxed SIMD (fused multiply-add) and plain SIMD. A 37-byte probe module
 * that uses one relaxed-SIMD instruction decides: WebAssembly.validate accepts it only
 * where relaxed SIMD is on. An engine without SIMD at all, or without shared memory and
 * Atomics, cannot run this backend; the error says so, and autoBackend falls back to cpu.
 *
 * Node.js 20 (V8 11.3) implements relaxed SIMD but keeps it behind a flag (V8 turns it
 * on by default from 11.4, which Node.js 21 and later ship). There, unless the plain
 * build is asked for, the loader sets `--experimental-wasm-relaxed-simd` at run time
 * (node:v8 setFlagsFromString; V8 reads wasm feature flags when it validates or compiles
 * a module, and the flags are process-wide, so the pool's workers see them too), then
 * probes again: the choice stays WebAssembly.validate's. Where the flag cannot be set,
 * the plain build runs. LONGLORA_WASM_BUILD=simd (or `flavour: 'simd'`) leaves the
 * flags alone. On x64 with FMA (measured on AMD Zen 4) the relaxed build's matmul kernel
 * ran about 1.3× as fast as the plain one.
 */
import { LongLoraError } from '../../errors.js';
import { wasmApi, type WasmModule } from './wasm-api.js';

export type WasmFlavour = 'relaxed' | 'simd';

/** (func (param v128 v128 v128) (result v128) local.get 0..2 f32x4.relaxed_madd) */
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type: (v128 v128 v128) → v128
  0x03, 0x02, 0x01, 0x00, // one function of type 0
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b, // body
]);

/** (func (param v128 v128) (result v128) local.get 0 local.get 1 f32x4.add) */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x07, 0x01, 0x60, 0x02, 0x7b, 0x7b, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x0b, 0x01, 0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0xfd, 0xe4, 0x01, 0x0b,
]);

export interface WasmFeatures {
  simd: boolean;
  relaxedSimd: boolean;
  threads: boolean;
}

export function detectFeatures(): WasmFeatures {
  const wa = wasmApi;
  if (!wa) return { simd: false, relaxedSimd: false, threads: false };
  let threads = typeof SharedArrayBuffer === 'function' && typeof Atomics === 'object';
  if (threads) {
    try { new wa.Memory({ initial: 1, maximum: 1, shared: true }); } catch { threads = false; }
  }
  return { simd: wa.validate(SIMD_PROBE), relaxedSimd: wa.validate(RELAXED_PROBE), threads };
}

/**
 * On Node.js 20 only: sets V8's relaxed-SIMD flag (see the header) and reports whether the
 * probe validates afterwards. Anything unexpected leaves the plain build.
 */
async function enableRelaxedSimdOnNode20(): Promise<boolean> {
  const node = typeof process !== 'undefined' ? process.versions?.node : undefined;
  if (!node || Number(node.split('.')[0]) !== 20) return false;
  try {
    const v8 = await import('node:v8');
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    return false;
  }
  return detectFeatures().relaxedSimd;
}

async function readBytes(url: URL): Promise<Uint8Array> {
  if (url.protocol === 'file:') {
    const fs = await import('node:fs/promises');
    const { fileURLToPath } = await import('node:url');
    try {
      return new Uint8Array(await fs.readFile(fileURLToPath(url)));
    } catch (e) {
      throw new LongLoraError(`wasm backend: cannot read ${fileURLToPath(url)} (${(e as Error).message}). Run \`npm run build\` to build the kernels.`);
    }
  }
  const res = await fetch(url);
  if (!res.ok) throw new LongLoraError(`wasm backend: cannot fetch ${url.href} (HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Compiles the kernels: the relaxed build where the engine validates relaxed SIMD (on
 * Node.js 20 after enabling it, see the header), else the plain one; `flavour` forces one
 * (an error if the engine cannot run it).
 */
export async function loadKernels(flavour?: WasmFlavour): Promise<{ module: WasmModule; flavour: WasmFlavour; features: WasmFeatures }> {
  const features = detectFeatures();
  if (features.simd && !features.relaxedSimd && flavour !== 'simd') features.relaxedSimd = await enableRelaxedSimdOnNode20();
  if (!features.simd) {
    throw new LongLoraError('wasm backend: this JavaScript engine has no WebAssembly SIMD (Node.js ≥ 16.4 and current browsers have it).');
  }
  if (!features.threads) {
    throw new LongLoraError('wasm backend: shared WebAssembly memory is unavailable (SharedArrayBuffer; in a browser the page must be cross-origin isolated: served over https:// or from localhost with the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp).');
  }
  const chosen = flavour ?? (features.relaxedSimd ? 'relaxed' : 'simd');
  if (chosen === 'relaxed' && !features.relaxedSimd) {
    throw new LongLoraError('wasm backend: relaxed SIMD was asked for but this engine does not support it (Node.js 20 needs --experimental-wasm-relaxed-simd).');
  }
  const bytes = await readBytes(new URL(`./kernels-${chosen}.wasm`, import.meta.url));
  if (!wasmApi!.validate(bytes)) throw new LongLoraError(`wasm backend: kernels-${chosen}.wasm does not validate on this engine; rebuild with \`npm run build\`.`);
  return { module: await wasmApi!.compile(bytes), flavour: chosen, features };
}
