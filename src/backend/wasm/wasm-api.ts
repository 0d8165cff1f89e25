/**
 * The part of the WebAssembly JavaScript API this backend uses, typed here because the
 * project's TypeScript libs (ES2022 + Node) do not declare `WebAssembly` (lib.dom does).
 */

/** A compiled module (opaque; it can be posted to workers). */
export interface WasmModule { readonly __wasmModule?: never }

export interface WasmMemory {
  /** The memory's bytes; for a shared memory a SharedArrayBuffer, a new one after grow(). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Adds `pages` pages of 64 KiB; returns the previous size in pages. Throws past the maximum. */
  grow(pages: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

export interface WasmApi {
  Memory: new (desc: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  validate(bytes: Uint8Array): boolean;
  compile(bytes: Uint8Array): Promise<WasmModule>;
}

/** The engine's WebAssembly object, or undefined where there is none. */
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** Whether this is Node.js (worker threads, files) rather than a browser (Web Workers, fetch). */
export const IN_NODE = typeof process !== 'undefined' && process.versions?.node !== undefined;
