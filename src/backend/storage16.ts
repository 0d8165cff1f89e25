/**
 * 16-bit storage for compute kernels (mixed precision).
 *
 * Float operands of a kernel may be stored as f16 or bf16 as well as f32: the kernel
 * reads them as f32, computes in f32 and rounds each result to its output's dtype
 * (nearest even). A backend that has no native 16-bit path for a kernel gets one from
 * `widenStorage16`: the 16-bit operands are cast into f32 scratch buffers, the f32 kernel
 * runs, and the outputs are cast back. That is exactly the semantics above, so a native
 * kernel and a widened one agree to one 16-bit rounding step.
 *
 * f64 is never mixed with other float dtypes (it exists for gradient checks).
 */
import type { Backend, CopyArgs, DeviceBuffer } from './backend.js';
import { isHalf } from '../tensor/dtype.js';

/** Kernels that take float operands, with the argument positions they write (or update in place). */
export const KERNEL_WRITES = {
  unary: [2], unaryBackward: [3], binary: [3], affine: [3], reduceSum: [1], matmul: [2],
  softmax: [1], softmaxBackward: [2], rmsnorm: [2, 3], rmsnormBackward: [4, 5], rope: [3],
  gather: [2], scatterAdd: [2], attention: [3, 4], attentionBackward: [6, 7, 8],
  crossEntropy: [2, 3], crossEntropyBackward: [4], adamw: [0, 2, 3], swiglu: [2], swigluBackward: [3, 4],
  copy: [1],
} as const satisfies Partial<Record<keyof Backend, readonly number[]>>;

export type Storage16Kernel = keyof typeof KERNEL_WRITES;

function is16(x: unknown): x is DeviceBuffer {
  return typeof x === 'object' && x !== null && 'dtype' in x && 'numel' in x && isHalf((x as DeviceBuffer).dtype);
}

/** Whether a kernel call (its arguments) writes its 16-bit outputs itself. */
export type NativeTest = (...args: never[]) => boolean;

/** A lookup whose table and rows share a dtype: rows are copied as they are (CPU and Wasm backends). */
export const gatherSameDType = (table: DeviceBuffer, _ids: DeviceBuffer, out: DeviceBuffer): boolean => table.dtype === out.dtype;

export interface Widen16Options {
  /**
   * Kernels that handle 16-bit operands themselves: every call (true), or the calls a test
   * accepts. A refused call (and every call of a kernel given false) still has its 16-bit
   * inputs of the dtypes in `reads` read directly; its other 16-bit operands are widened.
   */
  native?: Partial<Record<Storage16Kernel, boolean | NativeTest>>;
  /** The 16-bit input dtypes the listed kernels read themselves even in refused calls (default both). */
  reads?: ReadonlyArray<'f16' | 'bf16'>;
}

/**
 * Gives every float kernel of `be` 16-bit storage, widening what the backend does not
 * handle itself: replaces the methods on the instance with wrappers that pass calls with
 * nothing to widen straight through. A strided copy needs it only when it accumulates (a
 * plain copy moves bits).
 */
export function widenStorage16(be: Backend, opts: Widen16Options = {}): void {
  const target = be as unknown as Record<string, (...args: unknown[]) => void>;
  const reads = new Set<string>(opts.reads ?? ['f16', 'bf16']);
  for (const [name, writes] of Object.entries(KERNEL_WRITES) as Array<[Storage16Kernel, readonly number[]]>) {
    const entry = opts.native?.[name];
    if (typeof target[name] !== 'function' || entry === true) continue;
    const inner = target[name].bind(be);
    const test = typeof entry === 'function' ? entry as (...a: unknown[]) => boolean : null;
    target[name] = (...args: unknown[]): void => {
      if (!args.some(is16) || (name === 'copy' && !(args[2] as CopyArgs).accumulate) || (test && test(...args))) { inner(...args); return; }
      // The buffers to widen: 16-bit outputs, and 16-bit inputs the kernel does not read itself.
      const widen = new Set<DeviceBuffer>();
      args.forEach((a, i) => {
        if (is16(a) && (writes.includes(i) || entry === undefined || !reads.has(a.dtype))) widen.add(a);
      });
      if (widen.size === 0) { inner(...args); return; }
      const scratch = new Map<DeviceBuffer, DeviceBuffer>();
      const widened = args.map((a) => {
        if (!is16(a) || !widen.has(a as DeviceBuffer)) return a;
        let w = scratch.get(a);
        if (!w) {
          w = be.alloc('f32', a.numel);
          be.cast(a, w); // outputs too: some kernels accumulate into them or update in place
          scratch.set(a, w);
        }
        return w;
      });
      try {
        inner(...widened);
        for (const i of writes) {
          const a = args[i];
          if (is16(a) && scratch.has(a)) be.cast(scratch.get(a)!, a);
        }
      } finally {
        for (const w of scratch.values()) be.free(w);
      }
    };
  }
}
