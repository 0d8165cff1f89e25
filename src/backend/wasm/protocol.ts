/**
 * What the host and the worker threads of the wasm backend agree on: the kernel table,
 * the layout of the control block, and the start-up message.
 *
 * Protocol. At start-up the host posts each worker one message (the compiled module, the
 * shared memory, the control block, the worker's thread index). After that the two sides
 * talk only through shared memory and Atomics — no messages — so the same protocol runs
 * on Node worker_threads and on browser Web Workers:
 *  1. the host writes the arguments into the argument block (wasm memory), the kernel
 *     index, the chunk count and NEXT = 0, ACTIVE = number of workers, then bumps GEN
 *     and notifies it;
 *  2. every thread (the host's too) claims chunks with Atomics.add(NEXT, 1) and calls
 *     the kernel export (args, chunk, tid) until the chunks run out;
 *  3. each worker decrements ACTIVE when done and notifies it; the host waits until
 *     ACTIVE is 0, so the next job's arguments are never written while a worker still
 *     reads this one's.
 * STOP = 1 with a GEN bump ends the workers' loops. A worker that catches an error writes
 * its message (UTF-8) into the control block's text area and sets ERROR; the host raises it.
 */
import type { WasmMemory, WasmModule } from './wasm-api.js';

/** Kernel exports, by index. The order is the protocol: host and workers share this list. */
export const KERNELS = [
  'fill', 'copy', 'cast', 'unary', 'unaryBackward', 'binary', 'affine', 'reduceSum',
  'matmul', 'softmax', 'softmaxBackward', 'rmsnorm', 'rmsnormBackward', 'rmsnormDw',
  'rope', 'gather', 'scatterAdd', 'crossEntropy', 'crossEntropyBackward', 'adamw',
  'attention', 'attentionBackward', 'attnDelta', 'attnReduce', 'dequantize4bit', 'matmulPackB',
  'swiglu', 'swigluBackward', 'gemv', 'linear4bit',
] as const;

export type KernelName = (typeof KERNELS)[number];

export const KERNEL_INDEX: Readonly<Record<KernelName, number>> = Object.fromEntries(KERNELS.map((k, i) => [k, i])) as Record<KernelName, number>;

/** A kernel export: (argument block address, chunk index, thread index). */
export type KernelFn = (args: number, chunk: number, tid: number) => void;

/** Slots of the control block (an Int32Array over a SharedArrayBuffer). */
export const CTRL = {
  GEN: 0,
  KERNEL: 1,
  ARGS: 2,
  NCHUNKS: 3,
  NEXT: 4,
  ACTIVE: 5,
  STOP: 6,
  ERROR: 7,
  READY: 8,
  /** Iterations a worker polls GEN before it sleeps in Atomics.wait. */
  SPIN: 9,
  /** Byte length of the error text at TEXT_OFFSET. */
  ERROR_LENGTH: 10,
  SIZE: 16,
} as const;

/** The error text area: bytes [TEXT_OFFSET, TEXT_OFFSET + TEXT_BYTES) of the control block. */
export const TEXT_OFFSET = CTRL.SIZE * 4;
export const TEXT_BYTES = 1024;
export const CONTROL_BYTES = TEXT_OFFSET + TEXT_BYTES;

/** Stores an error message in the control block (first writer wins). */
export function writeError(control: SharedArrayBuffer, message: string): void {
  const ctrl = new Int32Array(control, 0, CTRL.SIZE);
  if (Atomics.compareExchange(ctrl, CTRL.ERROR, 0, 2) !== 0) return; // 2: being written
  const bytes = new TextEncoder().encode(message).subarray(0, TEXT_BYTES);
  new Uint8Array(control, TEXT_OFFSET, TEXT_BYTES).set(bytes);
  Atomics.store(ctrl, CTRL.ERROR_LENGTH, bytes.length);
  Atomics.store(ctrl, CTRL.ERROR, 1);
}

/** Reads (and clears) the error message of the control block, or null. */
export function takeError(control: SharedArrayBuffer): string | null {
  const ctrl = new Int32Array(control, 0, CTRL.SIZE);
  if (Atomics.load(ctrl, CTRL.ERROR) !== 1) return null;
  const n = Atomics.load(ctrl, CTRL.ERROR_LENGTH);
  const text = new TextDecoder().decode(new Uint8Array(control, TEXT_OFFSET, n).slice());
  Atomics.store(ctrl, CTRL.ERROR, 0);
  return text;
}

/** The one message each worker receives. */
export interface StartMessage {
  module: WasmModule;
  memory: WasmMemory;
  control: SharedArrayBuffer;
  tid: number;
}

/** Number of f64 slots in the argument block. */
export const ARG_SLOTS = 64;

/** Element type codes of the cast kernel (assembly/elementwise.ts). */
export const DTYPE_CODE = { f32: 0, f16: 1, bf16: 2, i32: 3, u8: 4, f64: 5 } as const;

/** Unary op codes (assembly/elementwise.ts). */
export const UNARY_CODE = { neg: 0, exp: 1, log: 2, silu: 3, sigmoid: 4, square: 5, sqrt: 6, tanh: 7, relu: 8 } as const;

/** Binary op codes (assembly/elementwise.ts). */
export const BINARY_CODE = { add: 0, sub: 1, mul: 2, div: 3 } as const;

/** Mask kinds of the attention kernels (assembly/mask.ts). */
export const MASK_CODE = { causal: 0, segmented: 1, roll: 2, short: 3 } as const;
