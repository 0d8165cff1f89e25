/**
 * The wasm backend: every kernel of the Backend interface as WebAssembly SIMD
 * (assembly/*.ts, built by assembly/build.mjs), run on all cores by a worker pool over
 * one shared WebAssembly.Memory.
 *
 * - Buffers live in that memory, placed by WasmAllocator (64-byte aligned); the memory
 *   grows on demand up to the WebAssembly limit of 4 GiB.
 * - A kernel call writes its arguments into an argument block in wasm memory, cuts the
 *   work into chunks and runs them on every thread (WorkerPool); small calls run on the
 *   calling thread alone. Calls stay synchronous, so "enqueue" simply executes and
 *   `download` resolves at once.
 * - Compute is f32 (supportsF64 is false); f16/bf16 are storage, converted by `cast`.
 * - The host checks sizes, ids and targets before every kernel (a wasm kernel trusts
 *   its arguments: an out-of-range index would write over another buffer).
 */
import type {
  AdamWArgs, AttentionArgs, Backend, BinaryOp, CopyArgs, DeviceBuffer, Dequantize4bitArgs, Linear4bitArgs, MatmulArgs, MemoryStats, UnaryOp,
} from '../backend.js';
import { MemoryCounter } from '../backend.js';
import { gatherSameDType, widenStorage16 } from '../storage16.js';
import type { DType, HostArray } from '../../tensor/dtype.js';
import { f32ToBf16Bits, f32ToF16Bits, hostMatches, isHalf, itemSize } from '../../tensor/dtype.js';
import { InternalError } from '../../errors.js';
import { copyStrided } from '../cpu/elementwise.js';
import { dequantize4bit } from '../cpu/quant.js';
import { WasmAllocator } from './allocator.js';
import { loadKernels, type WasmFlavour } from './loader.js';
import { WorkerPool } from './pool.js';
import { IN_NODE, wasmApi, type WasmMemory } from './wasm-api.js';
import {
  ARG_SLOTS, BINARY_CODE, DTYPE_CODE, KERNEL_INDEX, KERNELS, MASK_CODE, UNARY_CODE, type KernelFn, type KernelName,
} from './protocol.js';

/** 1 for a bf16 buffer, 0 for f32 (the kernels' dtype flags). */
const isBf16 = (b: WasmBuffer): number => (b.dtype === 'bf16' ? 1 : 0);

/** The matmul and attention kernels' dtype flags: 0 f32, 1 bf16, 2 f16. */
const floatFlag = (t: DType): number => (t === 'bf16' ? 1 : t === 'f16' ? 2 : 0);

/** A matmul the kernel runs on its operands as they are: f32, bf16 or f16 inputs, an f32 output, or a 16-bit one in row blocks. */
const matmulNative16 = (_a: DeviceBuffer, _b: DeviceBuffer, out: DeviceBuffer, g: MatmulArgs): boolean =>
  out.dtype === 'f32' || (isHalf(out.dtype) && g.batch === 1 && !g.transA);

/** A lookup whose rows are copied as they are, or widened from a 16-bit table into f32 rows. */
const gatherNative16 = (table: DeviceBuffer, ids: DeviceBuffer, out: DeviceBuffer): boolean =>
  gatherSameDType(table, ids, out) || (isHalf(table.dtype) && out.dtype === 'f32');

/** RMSNorm's backward pass on f32 or bf16 operands, its weight gradient (accumulated) in f32. */
const rmsnormBackwardNative16 = (x: DeviceBuffer, w: DeviceBuffer, rstd: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, dw: DeviceBuffer | null): boolean =>
  noF16(x, w, rstd, dy, dx) && (dw === null || dw.dtype === 'f32');

/** A call whose float operands are f32 or bf16 only: the kernel reads and writes them itself. */
const noF16 = (...args: unknown[]): boolean => !args.some((a) => typeof a === 'object' && a !== null && (a as DeviceBuffer).dtype === 'f16');

export interface WasmBackendOptions {
  /** Threads including the calling one (default: every core; env LONGLORA_WASM_THREADS). */
  threads?: number;
  /**
   * Force a build (default: relaxed SIMD where the engine has it, on Node.js 20 once
   * loader.ts has enabled it; env LONGLORA_WASM_BUILD).
   */
  flavour?: WasmFlavour;
  /**
   * Work (≈ elements touched) below which a kernel runs on the calling thread alone
   * (default 65536). Tests set 0 to send even tiny kernels through the pool.
   */
  parallelMin?: number;
  /** Let matmul and gather handle bf16 operands themselves (default true); false widens them to f32 copies (comparisons). */
  native16?: boolean;
}

export interface WasmStats {
  flavour: WasmFlavour;
  threads: number;
  /** Size of the WebAssembly memory. */
  memoryBytes: number;
  /** Heap span in use by the allocator (buffers, free blocks, scratch). */
  heapBytes: number;
  /** Per-thread scratch of the kernels (packed panels, attention blocks), all threads. */
  scratchBytes: number;
}

class WasmBuffer implements DeviceBuffer {
  readonly backend = 'wasm';
  freed = false;
  constructor(readonly dtype: DType, readonly numel: number, readonly addr: number) {}
}

/** Below this much work (≈ elements touched) a kernel runs on the calling thread alone. */
const PARALLEL_MIN = 1 << 16;
/** Chunks hold at least this much work (when not every thread would get one otherwise). */
const CHUNK_MIN = 1 << 15;
/** Matmul blocking (assembly/matmul.ts). */
const MC = 128, NC = 256, KC = 256;
/** Attention blocks (assembly/attention.ts): queries × keys. */
const BQ = 64, BK = 64;
/** Largest f32 block of a bf16 matmul output computed at a time. */
const OUT16_BLOCK_BYTES = 4 << 20;

/** Threads by default: LONGLORA_WASM_THREADS, else every core. */
async function defaultThreads(): Promise<number> {
  const env = typeof process !== 'undefined' ? Number(process.env.LONGLORA_WASM_THREADS ?? '') : NaN;
  if (Number.isInteger(env) && env >= 1) return env;
  if (IN_NODE) return (await import('node:os')).availableParallelism();
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
}

const roundUp = (n: number, a: number): number => Math.ceil(n / a) * a;

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  readonly supportsF64 = false;
  private readonly mem = new MemoryCounter();
  private u8!: Uint8Array;
  private u16!: Uint16Array;
  private i32!: Int32Array;
  private f32!: Float32Array;
  private f64!: Float64Array;
  private readonly alloc_: WasmAllocator;
  private readonly argsAddr: number;
  private scratchAddr = 0;
  private scratchPerThread = 0;
  private disposed = false;

  private constructor(
    private readonly wasmMemory: WasmMemory,
    private readonly pool: WorkerPool,
    heapBase: number,
    readonly flavour: WasmFlavour,
    private readonly parallelMin: number,
    native16: boolean,
  ) {
    this.refresh();
    this.alloc_ = new WasmAllocator(wasmMemory, Math.max(heapBase, 65536), () => this.refresh());
    this.argsAddr = this.alloc_.alloc(ARG_SLOTS * 8);
    // 16-bit operands: matmul reads f16 and bf16 inputs itself (a 16-bit weight needs no f32
    // copy) and writes a 16-bit output through f32 blocks of rows, gather copies 16-bit rows
    // or widens them into f32 rows, the attention forward pass reads and writes f16 and bf16
    // (a 16-bit KV cache is read in place), its backward pass, SwiGLU, RMSNorm, RoPE and the
    // pointwise kernels bf16; the rest (softmax, reductions, the loss, scatter-add, AdamW, an
    // accumulating copy) and the other f16 operands are widened (storage16.ts).
    widenStorage16(this, native16 ? {
      native: { matmul: matmulNative16, gather: gatherNative16, attention: true, attentionBackward: noF16, swiglu: noF16, swigluBackward: noF16,
        rmsnorm: noF16, rmsnormBackward: rmsnormBackwardNative16, rope: noF16,
        unary: noF16, unaryBackward: noF16, binary: noF16, affine: noF16 },
      reads: ['bf16'],
    } : {});
  }

  /** Compiles the kernels, creates the memory and starts the worker pool. */
  static async create(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
    const envFlavour = typeof process !== 'undefined' ? process.env.LONGLORA_WASM_BUILD : undefined;
    const flavour = opts.flavour ?? (envFlavour === 'simd' || envFlavour === 'relaxed' ? envFlavour : undefined);
    const { module, flavour: chosen } = await loadKernels(flavour);
    const memory = new wasmApi!.Memory({ initial: 256, maximum: 65536, shared: true });
    const inst = new wasmApi!.Instance(module, { env: { memory } });
    const fns = KERNELS.map((k) => inst.exports[k] as KernelFn);
    const heapBase = (inst.exports.heapBase as () => number)();
    const threads = Math.max(1, Math.floor(opts.threads ?? await defaultThreads()));
    const pool = await WorkerPool.create(module, memory, fns, threads);
    return new WasmBackend(memory, pool, heapBase, chosen, opts.parallelMin ?? PARALLEL_MIN, opts.native16 ?? true);
  }

  get threads(): number { return this.pool.threads; }

  describe(): string {
    return `WebAssembly ${this.flavour === 'relaxed' ? 'relaxed SIMD (fused multiply-add)' : 'SIMD'} on ${this.threads} thread${this.threads === 1 ? '' : 's'}`;
  }

  stats(): WasmStats {
    return {
      flavour: this.flavour, threads: this.threads, memoryBytes: this.alloc_.memoryBytes,
      heapBytes: this.alloc_.heapBytes, scratchBytes: this.scratchPerThread * this.threads,
    };
  }

  /** Stops the worker threads; resolves when they have exited. The backend cannot be used afterwards. */
  dispose(): Promise<void> {
    this.disposed = true;
    return this.pool.dispose();
  }

  /** Worker threads still running (0 after dispose() has resolved). */
  get liveWorkers(): number { return this.pool.liveWorkers; }

  // ---- memory -----------------------------------------------------------------------

  alloc(dtype: DType, numel: number): DeviceBuffer {
    if (!Number.isInteger(numel) || numel < 0) throw new InternalError(`wasm.alloc: bad element count ${numel}`);
    const nbytes = numel * itemSize(dtype);
    const buf = new WasmBuffer(dtype, numel, this.alloc_.alloc(nbytes));
    this.mem.add(nbytes);
    return buf;
  }

  free(buf: DeviceBuffer): void {
    const b = this.own(buf);
    b.freed = true;
    this.alloc_.free(b.addr);
    this.mem.remove(b.numel * itemSize(b.dtype));
  }

  upload(buf: DeviceBuffer, data: HostArray): void {
    const b = this.own(buf);
    if (!hostMatches(b.dtype, data) || data.length !== b.numel) {
      throw new InternalError(`wasm.upload: ${data.constructor.name}[${data.length}] into ${b.dtype}[${b.numel}]`);
    }
    this.view(b).set(data as never);
  }

  download(buf: DeviceBuffer): Promise<HostArray> {
    return Promise.resolve(this.view(this.own(buf)).slice());
  }

  sync(): Promise<void> { return Promise.resolve(); }
  memory(): MemoryStats { return this.mem.stats(); }
  resetPeak(): void { this.mem.resetPeak(); }

  // ---- elementwise ------------------------------------------------------------------

  fill(out: DeviceBuffer, value: number): void {
    const b = this.own(out);
    const n = b.numel;
    let bits: number;
    let size = itemSize(b.dtype);
    switch (b.dtype) {
      case 'f32': bits = new Int32Array(Float32Array.of(value).buffer)[0]!; break;
      case 'i32': bits = Int32Array.of(value)[0]!; break;
      case 'f16': bits = f32ToF16Bits(value); break;
      case 'bf16': bits = f32ToBf16Bits(value); break;
      case 'u8': bits = Uint8Array.of(value)[0]!; break;
      case 'f64': this.f64.fill(value, b.addr / 8, b.addr / 8 + n); return;
    }
    if (size === 8) size = 4;
    const { chunks, per } = this.split(n, 4, 1);
    this.run('fill', chunks, [b.addr, n, bits, size, per], n);
  }

  copy(src: DeviceBuffer, dst: DeviceBuffer, args: CopyArgs): void {
    const s = this.own(src);
    const d = this.own(dst);
    const size = itemSize(s.dtype);
    if (itemSize(d.dtype) !== size) throw new InternalError(`wasm.copy: ${s.dtype} → ${d.dtype}`);
    const g = simplifyCopy(args);
    if (g.total === 0) return;
    checkExtent('copy src', s, args.srcOffset, args.shape, args.srcStrides);
    checkExtent('copy dst', d, args.dstOffset, args.shape, args.dstStrides);
    if (g.shape.length > 8 || (args.accumulate && s.dtype !== 'f32')) {
      copyStrided(this.view(s), this.view(d), args); // rare shapes: the reference loop on the views
      return;
    }
    const rank = g.shape.length;
    const inner = g.shape[rank - 1]!;
    const rows = g.total / inner;
    // Threads must not write one element twice: an outer axis with dst stride 0 runs serially.
    const serial = g.shape.some((n, ax) => ax < rank - 1 && n > 1 && g.dst[ax] === 0);
    const want = serial ? 1 : this.chunkCount(g.total);
    const perRows = Math.ceil(rows / want);
    const a: number[] = new Array<number>(34).fill(0);
    a[0] = s.addr; a[1] = d.addr; a[2] = size; a[3] = args.accumulate ? 1 : 0; a[4] = rank;
    a[5] = args.srcOffset; a[6] = args.dstOffset; a[7] = rows; a[8] = perRows;
    for (let i = 0; i < rank; i++) { a[10 + i] = g.shape[i]!; a[18 + i] = g.src[i]!; a[26 + i] = g.dst[i]!; }
    this.run('copy', Math.ceil(rows / perRows), a, serial ? -1 : g.total);
  }

  cast(src: DeviceBuffer, dst: DeviceBuffer): void {
    const s = this.own(src);
    const d = this.own(dst);
    if (d.numel < s.numel) throw new InternalError(`wasm.cast: ${s.numel} elements into ${d.numel}`);
    this.castAt(s.addr, s.dtype, d.addr, d.dtype, s.numel);
  }

  /** n elements at address src (of dtype st) into dst (dt). */
  private castAt(src: number, st: DType, dst: number, dt: DType, n: number): void {
    const { chunks, per } = this.split(n, 8, 2);
    this.run('cast', chunks, [src, dst, DTYPE_CODE[st], DTYPE_CODE[dt], n, per], n);
  }

  unary(op: UnaryOp, x: DeviceBuffer, out: DeviceBuffer): void {
    const [xb, ob] = [this.fOrBf16(x), this.fOrBf16(out)];
    this.sameSize('unary', xb, ob);
    const { chunks, per } = this.split(xb.numel, 4, op === 'neg' || op === 'square' || op === 'relu' ? 1 : 8);
    this.run('unary', chunks, [UNARY_CODE[op], xb.addr, ob.addr, xb.numel, per, isBf16(xb), isBf16(ob)], xb.numel * 4);
  }

  unaryBackward(op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer): void {
    const [xb, yb, ob] = [this.fOrBf16(x), this.fOrBf16(dy), this.fOrBf16(dx)];
    this.sameSize('unaryBackward', xb, yb);
    this.sameSize('unaryBackward', xb, ob);
    const { chunks, per } = this.split(xb.numel, 4, 8);
    this.run('unaryBackward', chunks, [UNARY_CODE[op], xb.addr, yb.addr, ob.addr, xb.numel, per, isBf16(xb), isBf16(yb), isBf16(ob)], xb.numel * 4);
  }

  binary(op: BinaryOp, a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer): void {
    const [ab, bb, ob] = [this.fOrBf16(a), this.fOrBf16(b), this.fOrBf16(out)];
    this.sameSize('binary', ab, ob);
    const n = ab.numel;
    const nb = bb.numel;
    if (nb === 0 && n > 0) throw new InternalError('wasm.binary: empty second operand');
    // A chunk holds whole repeats of b when its vector path needs them.
    const unit = nb === n || nb === 1 ? 4 : n % nb === 0 && nb % 4 === 0 ? nb : 4;
    const { chunks, per } = this.split(n, unit, 1);
    this.run('binary', chunks, [BINARY_CODE[op], ab.addr, bb.addr, ob.addr, n, nb, per, isBf16(ab), isBf16(bb), isBf16(ob)], n);
  }

  swiglu(gate: DeviceBuffer, up: DeviceBuffer, out: DeviceBuffer): void {
    const [gb, ub, ob] = [this.fOrBf16(gate), this.fOrBf16(up), this.fOrBf16(out)];
    this.sameSize('swiglu', gb, ub);
    this.sameSize('swiglu', gb, ob);
    const { chunks, per } = this.split(gb.numel, 4, 8);
    this.run('swiglu', chunks, [gb.addr, ub.addr, ob.addr, gb.numel, per, isBf16(gb), isBf16(ub), isBf16(ob)], gb.numel * 8);
  }

  swigluBackward(gate: DeviceBuffer, up: DeviceBuffer, dout: DeviceBuffer, dgate: DeviceBuffer | null, dup: DeviceBuffer | null): void {
    const [gb, ub, yb] = [this.fOrBf16(gate), this.fOrBf16(up), this.fOrBf16(dout)];
    const [dg, du] = [dgate ? this.fOrBf16(dgate) : null, dup ? this.fOrBf16(dup) : null];
    for (const b of [ub, yb, dg, du]) if (b) this.sameSize('swigluBackward', gb, b);
    if (!dg && !du) return;
    const { chunks, per } = this.split(gb.numel, 4, 10);
    this.run('swigluBackward', chunks, [gb.addr, ub.addr, yb.addr, dg ? dg.addr : 0, du ? du.addr : 0, gb.numel, per,
      isBf16(gb), isBf16(ub), isBf16(yb), dg ? isBf16(dg) : 0, du ? isBf16(du) : 0], gb.numel * 10);
  }

  affine(x: DeviceBuffer, alpha: number, beta: number, out: DeviceBuffer): void {
    const [xb, ob] = [this.fOrBf16(x), this.fOrBf16(out)];
    this.sameSize('affine', xb, ob);
    const { chunks, per } = this.split(xb.numel, 4, 1);
    this.run('affine', chunks, [xb.addr, ob.addr, alpha, beta, xb.numel, per, isBf16(xb), isBf16(ob)], xb.numel);
  }

  reduceSum(x: DeviceBuffer, out: DeviceBuffer, outer: number, size: number, inner: number): void {
    const [xb, ob] = [this.f(x), this.f(out)];
    this.need(xb, outer * size * inner, 'reduceSum x');
    this.need(ob, outer * inner, 'reduceSum out');
    if (outer * inner === 0) return;
    const total = outer * size * inner;
    const want = this.chunkCount(total);
    const IB = inner === 1 ? 1 : Math.max(4, roundUp(Math.ceil(inner / want), 4));
    const colBlocks = Math.ceil(inner / IB);
    const rowsPer = Math.max(1, Math.ceil(outer / Math.max(1, Math.floor(want / colBlocks))));
    this.run('reduceSum', Math.ceil(outer / rowsPer) * colBlocks, [xb.addr, ob.addr, outer, size, inner, IB, rowsPer], total);
  }

  // ---- matmul -----------------------------------------------------------------------

  matmul(a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer, g: MatmulArgs): void {
    const [ab, bb, ob] = [this.float(a), this.float(b), this.float(out)];
    const { batch, m, n, k } = g;
    if (batch * m * n === 0) return;
    this.need(ab, (batch - 1) * g.strideA + m * k, 'matmul A');
    this.need(bb, (batch - 1) * g.strideB + k * n, 'matmul B');
    this.need(ob, batch * m * n, 'matmul out');
    if (ob.dtype === 'f32') { this.matmulAt(ab.addr, ab.dtype, bb.addr, bb.dtype, ob.addr, g); return; }
    // A 16-bit output: blocks of rows computed into an f32 scratch block (the products
    // accumulate over k in f32) and rounded into the output, so no f32 copy of the whole
    // output is made. Rows of op(A) are contiguous only when A is not transposed.
    if (batch !== 1 || g.transA) throw new InternalError('wasm.matmul: a 16-bit output needs batch 1 and A not transposed (storage16 widens the others)');
    const rows = Math.min(m, Math.max(MC, Math.floor(OUT16_BLOCK_BYTES / (4 * n) / MC) * MC));
    const blk = this.alloc('f32', rows * n) as WasmBuffer;
    const elem = itemSize(ab.dtype);
    try {
      for (let i0 = 0; i0 < m; i0 += rows) {
        const r = Math.min(rows, m - i0);
        const cAt = ob.addr + i0 * n * 2;
        if (g.beta !== 0) this.castAt(cAt, ob.dtype, blk.addr, 'f32', r * n);
        this.matmulAt(ab.addr + i0 * k * elem, ab.dtype, bb.addr, bb.dtype, blk.addr, { ...g, m: r });
        this.castAt(blk.addr, 'f32', cAt, ob.dtype, r * n);
      }
    } finally {
      this.free(blk);
    }
  }

  /** op(A)·op(B) into the f32 output at `c` (addresses in this memory; checked by the caller). */
  private matmulAt(aAddr: number, aType: DType, bAddr: number, bType: DType, c: number, g: MatmulArgs): void {
    const { batch, m, n, k } = g;
    const flops = 2 * batch * m * n * k;
    const parallel = flops / 32 >= this.parallelMin;
    const busy = (chunks: number): boolean => parallel && chunks < 2 * this.threads;
    const args = [aAddr, bAddr, c, batch, m, n, k, g.transA ? 1 : 0, g.transB ? 1 : 0, g.alpha, g.beta,
      g.strideA, g.strideB, 0, 0, MC, NC, KC, 0, 0, 0, floatFlag(aType), floatFlag(bType)];
    if (g.transB && !g.transA && m <= 4 && k > 0 && aType === 'f32') {
      // A few rows of x·Wᵀ (decoding): each row of W read once, no packing (assembly/matmul.ts gemv).
      const blocks = Math.max(1, Math.ceil(this.chunkCount(flops / 2) / batch));
      const cols = Math.ceil(n / blocks);
      args.push(cols);
      this.run('gemv', batch * Math.ceil(n / cols), args, parallel ? Infinity : -1);
      return;
    }
    if (m <= MC || k === 0) {
      // Per-tile schedule: tiles of mc×nc, smaller ones when too few to keep every thread busy.
      let mc = MC, nc = NC;
      const tiles = (): number => batch * Math.ceil(m / mc) * Math.ceil(n / nc);
      while (busy(tiles()) && nc > 32) nc /= 2;
      while (busy(tiles()) && mc > 16) mc /= 2;
      args[13] = this.scratch((mc * KC + KC * nc + 32) * 4);
      args[14] = this.scratchPerThread; args[15] = mc; args[16] = nc;
      this.run('matmul', tiles(), args, parallel ? Infinity : -1);
      return;
    }
    // Packed-B schedule: op(B) packed once into a temporary, then one chunk per MC-row block.
    let mc = MC;
    while (busy(batch * Math.ceil(m / mc)) && mc > 32) mc /= 2;
    const panels = Math.ceil(n / 8);
    const perBatch = panels * 8 * k;
    const copies = g.strideB === 0 ? 1 : batch;
    const packed = this.alloc('f32', copies * perBatch) as WasmBuffer;
    try {
      const group = Math.max(1, Math.ceil(panels / Math.max(1, Math.floor(this.chunkCount(k * n) / copies))));
      args[13] = this.scratch((mc * KC + 32) * 4);
      args[14] = this.scratchPerThread; args[15] = mc; args[18] = packed.addr; args[19] = perBatch; args[20] = group;
      this.run('matmulPackB', copies * Math.ceil(panels / group), args, parallel ? k * n : -1);
      this.run('matmul', batch * Math.ceil(m / mc), args, parallel ? Infinity : -1);
    } finally {
      this.free(packed);
    }
  }

  // ---- normalisation, rope, embedding -----------------------------------------------

  softmax(x: DeviceBuffer, out: DeviceBuffer, rows: number, cols: number): void {
    const [xb, ob] = [this.f(x), this.f(out)];
    this.need(xb, rows * cols, 'softmax x');
    this.need(ob, rows * cols, 'softmax out');
    const { chunks, per } = this.rows(rows, cols * 8);
    this.run('softmax', chunks, [xb.addr, ob.addr, rows, cols, per], rows * cols * 8);
  }

  softmaxBackward(y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, rows: number, cols: number): void {
    const bufs = [this.f(y), this.f(dy), this.f(dx)];
    for (const b of bufs) this.need(b, rows * cols, 'softmaxBackward');
    const { chunks, per } = this.rows(rows, cols * 2);
    this.run('softmaxBackward', chunks, [bufs[0]!.addr, bufs[1]!.addr, bufs[2]!.addr, rows, cols, per], rows * cols * 2);
  }

  rmsnorm(x: DeviceBuffer, w: DeviceBuffer, out: DeviceBuffer, rstd: DeviceBuffer, rows: number, C: number, eps: number): void {
    const [xb, wb, ob, rb] = [this.fOrBf16(x), this.fOrBf16(w), this.fOrBf16(out), this.f(rstd)];
    this.need(xb, rows * C, 'rmsnorm x');
    this.need(wb, C, 'rmsnorm w');
    this.need(ob, rows * C, 'rmsnorm out');
    this.need(rb, rows, 'rmsnorm rstd');
    const { chunks, per } = this.rows(rows, C * 2);
    this.run('rmsnorm', chunks, [xb.addr, wb.addr, ob.addr, rb.addr, rows, C, eps, per, isBf16(xb), isBf16(wb), isBf16(ob)], rows * C * 2);
  }

  rmsnormBackward(x: DeviceBuffer, w: DeviceBuffer, rstd: DeviceBuffer, dy: DeviceBuffer,
    dx: DeviceBuffer, dw: DeviceBuffer | null, rows: number, C: number): void {
    const [xb, wb, rb, yb, ob] = [this.fOrBf16(x), this.fOrBf16(w), this.f(rstd), this.fOrBf16(dy), this.fOrBf16(dx)];
    for (const [b, n] of [[xb, rows * C], [wb, C], [rb, rows], [yb, rows * C], [ob, rows * C]] as const) this.need(b, n, 'rmsnormBackward');
    const { chunks, per } = this.rows(rows, C * 3);
    this.run('rmsnormBackward', chunks, [xb.addr, wb.addr, rb.addr, yb.addr, ob.addr, rows, C, per, isBf16(xb), isBf16(wb), isBf16(yb), isBf16(ob)], rows * C * 3);
    if (dw) {
      const db = this.f(dw);
      this.need(db, C, 'rmsnormBackward dw');
      this.run('rmsnormDw', Math.ceil(C / 16), [xb.addr, rb.addr, yb.addr, db.addr, rows, C, isBf16(xb), isBf16(yb)], rows * C * 2);
    }
  }

  rope(x: DeviceBuffer, cos: DeviceBuffer, sin: DeviceBuffer, out: DeviceBuffer,
    B: number, N: number, H: number, D: number, inverse: boolean): void {
    const [xb, cb, sb, ob] = [this.fOrBf16(x), this.fOrBf16(cos), this.fOrBf16(sin), this.fOrBf16(out)];
    this.need(xb, B * N * H * D, 'rope x');
    this.need(ob, B * N * H * D, 'rope out');
    this.need(cb, N * (D / 2), 'rope cos');
    this.need(sb, N * (D / 2), 'rope sin');
    const { chunks, per } = this.rows(B * N, H * D);
    this.run('rope', chunks, [xb.addr, cb.addr, sb.addr, ob.addr, B, N, H, D, inverse ? 1 : 0, per, isBf16(xb), isBf16(cb), isBf16(sb), isBf16(ob)], B * N * H * D);
  }

  gather(table: DeviceBuffer, ids: DeviceBuffer, out: DeviceBuffer, V: number, C: number, T: number): void {
    // Rows are copied in the table's dtype, or widened from bf16 or f16 to f32 (storage16.ts widens the rest).
    const [tb, ib, ob] = [this.own(table), this.i(ids), this.own(out)];
    const mode = tb.dtype === ob.dtype && tb.dtype !== 'f64' && tb.dtype !== 'u8' ? Math.log2(itemSize(tb.dtype))
      : ob.dtype === 'f32' && tb.dtype === 'bf16' ? 0 : ob.dtype === 'f32' && tb.dtype === 'f16' ? 3 : -1;
    if (mode < 0) throw new InternalError(`wasm.gather: ${tb.dtype} table into ${ob.dtype} rows`);
    this.need(tb, V * C, 'gather table');
    this.need(ob, T * C, 'gather out');
    this.checkIds(ib, V, T, (id, t) => `token id ${id} at position ${t} is outside the vocabulary [0, ${V})`);
    const { chunks, per } = this.rows(T, C);
    this.run('gather', chunks, [tb.addr, ib.addr, ob.addr, C, T, per, mode], T * C);
  }

  scatterAdd(dy: DeviceBuffer, ids: DeviceBuffer, dtable: DeviceBuffer, V: number, C: number, T: number): void {
    const [yb, ib, tb] = [this.f(dy), this.i(ids), this.f(dtable)];
    this.need(yb, T * C, 'scatterAdd dy');
    this.need(tb, V * C, 'scatterAdd dtable');
    this.checkIds(ib, V, T, (id, t) => `token id ${id} at position ${t} is outside the vocabulary [0, ${V})`);
    const want = this.chunkCount(T * C);
    const per = roundUp(Math.ceil(C / want), 4);
    this.run('scatterAdd', Math.ceil(C / per), [yb.addr, ib.addr, tb.addr, C, T, per], T * C);
  }

  // ---- attention --------------------------------------------------------------------

  attention(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer, g: AttentionArgs): void {
    const [qb, kb, vb, ob, lb] = [this.float(q), this.float(k), this.float(v), this.float(out), this.f(lse)];
    this.checkAttention(g, qb, kb, vb, ob, lb);
    const nqb = Math.ceil(g.Nq / BQ);
    const blocksList = Math.ceil(g.Nk / BK) + 2;
    // + the staging of 16-bit rows: Q [BQ × D], K and V [BK × D]
    const scratch = this.scratch((g.D * BK + BQ * BK + BQ * g.D + 2 * BQ + blocksList + BQ * g.D + 2 * BK * g.D) * 4);
    const a = this.attnArgs(g, scratch, qb, kb, vb, ob, lb);
    if (g.Nq === 1) {
      // Decoding: one chunk per (b, kv head, group of hg query heads), each key and value row
      // read once per group (assembly/attention.ts attentionRows). Groups as large as the
      // threads allow (whole kv groups when there are enough of them); one head per chunk
      // for S² masks, whose heads see different keys. Scratch: 2·hg·D + hg·BK + 2·hg floats.
      const rep = g.H / g.Hkv;
      let hg = g.mask.kind === 'causal' ? Math.min(rep, BQ) : 1;
      while (hg > 1 && (rep % hg !== 0 || g.B * g.Hkv * (rep / hg) < 2 * this.threads)) hg--;
      a[36] = hg;
      this.run('attention', g.B * g.Hkv * (rep / hg), a, this.attnWork(g));
      return;
    }
    this.run('attention', g.B * g.H * nqb, a, this.attnWork(g));
  }

  attentionBackward(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer,
    dout: DeviceBuffer, dq: DeviceBuffer, dk: DeviceBuffer, dv: DeviceBuffer, g: AttentionArgs): void {
    const [qb, kb, vb, ob, lb] = [this.fOrBf16(q), this.fOrBf16(k), this.fOrBf16(v), this.fOrBf16(out), this.f(lse)];
    const [gb, dkb, dvb] = [this.fOrBf16(dout), this.fOrBf16(dk), this.fOrBf16(dv)];
    const dqOut = this.fOrBf16(dq);
    this.checkAttention(g, qb, kb, vb, ob, lb);
    for (const b of [gb, dqOut]) this.need(b, g.B * g.Nq * g.H * g.D, 'attentionBackward dout/dq');
    for (const b of [dkb, dvb]) this.need(b, g.B * g.kvStride * g.Hkv * g.D, 'attentionBackward dk/dv');
    if (g.kvStride > g.Nk) { this.fill(dk, 0); this.fill(dv, 0); } // rows past the keys stay 0

    // Slices of key blocks per (b, kv head): 1 when there are enough (b, kv head) pairs
    // to keep every thread busy; more (each with its own partial dQ) otherwise.
    const pairs = g.B * g.Hkv;
    const nkb = Math.ceil(g.Nk / BK);
    const slices = this.threads > 1 && pairs < 4 * this.threads ? Math.min(nkb, Math.ceil((4 * this.threads) / pairs)) : 1;
    const qElems = g.B * g.Nq * g.H * g.D;
    const delta = this.alloc('f32', g.B * g.H * g.Nq) as WasmBuffer;
    const partial = slices > 1 ? this.alloc('f32', (slices - 1) * qElems) as WasmBuffer : null;
    // dq accumulates over key blocks: a bf16 dq gets an f32 accumulator, rounded once at the end
    const dqb = dqOut.dtype === 'f32' ? dqOut : this.alloc('f32', qElems) as WasmBuffer;
    try {
      // + the staging of bf16 rows: K and V [BK × D], Q and dO [BQ × D]
      const scratch = this.scratch((2 * g.D * BK + 2 * BK * g.D + 2 * BQ * BK + 2 * BK * g.D + 2 * BQ * g.D) * 4);
      const a = this.attnArgs(g, scratch, qb, kb, vb, ob, lb);
      a[20] = gb.addr; a[21] = dqb.addr; a[22] = dkb.addr; a[23] = dvb.addr; a[24] = delta.addr;
      a[25] = slices; a[26] = partial ? partial.addr : 0;
      a[33] = isBf16(gb); a[34] = isBf16(dkb); a[35] = isBf16(dvb);
      const rows = g.B * g.Nq;
      const r = this.rows(rows, g.H * g.D * (1 + slices));
      a[27] = r.per;
      this.run('attnDelta', r.chunks, a, rows * g.H * g.D * 2);
      this.run('attentionBackward', pairs * slices, a, 2 * this.attnWork(g));
      if (partial) {
        const s = this.split(qElems, 4, slices - 1);
        a[27] = s.per; a[28] = qElems;
        this.run('attnReduce', s.chunks, a, qElems * slices);
      }
      if (dqb !== dqOut) this.cast(dqb, dqOut);
    } finally {
      this.free(delta);
      if (partial) this.free(partial);
      if (dqb !== dqOut) this.free(dqb);
    }
  }

  // ---- loss and optimizer -----------------------------------------------------------

  crossEntropy(logits: DeviceBuffer, targets: DeviceBuffer, losses: DeviceBuffer, lse: DeviceBuffer,
    T: number, V: number, ignoreIndex: number): void {
    const [xb, tb, lb, sb] = [this.f(logits), this.i(targets), this.f(losses), this.f(lse)];
    this.need(xb, T * V, 'crossEntropy logits');
    this.need(lb, T, 'crossEntropy losses');
    this.need(sb, T, 'crossEntropy lse');
    this.checkIds(tb, V, T, (y, t) => `target ${y} at position ${t} is outside the vocabulary [0, ${V})`, ignoreIndex);
    const { chunks, per } = this.rows(T, V * 8);
    this.run('crossEntropy', chunks, [xb.addr, tb.addr, lb.addr, sb.addr, T, V, ignoreIndex, per], T * V * 8);
  }

  crossEntropyBackward(logits: DeviceBuffer, targets: DeviceBuffer, lse: DeviceBuffer, dlosses: DeviceBuffer,
    dlogits: DeviceBuffer, T: number, V: number, ignoreIndex: number): void {
    const [xb, tb, sb, gb, ob] = [this.f(logits), this.i(targets), this.f(lse), this.f(dlosses), this.f(dlogits)];
    this.need(xb, T * V, 'crossEntropyBackward logits');
    this.need(ob, T * V, 'crossEntropyBackward dlogits');
    this.need(sb, T, 'crossEntropyBackward lse');
    this.need(gb, T, 'crossEntropyBackward dlosses');
    this.checkIds(tb, V, T, (y, t) => `target ${y} at position ${t} is outside the vocabulary [0, ${V})`, ignoreIndex);
    const { chunks, per } = this.rows(T, V * 8);
    this.run('crossEntropyBackward', chunks, [xb.addr, tb.addr, sb.addr, gb.addr, ob.addr, T, V, ignoreIndex, per], T * V * 8);
  }

  adamw(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, a: AdamWArgs): void {
    const [pb, gb, mb, vb] = [this.f(p), this.f(g), this.f(m), this.f(v)];
    for (const b of [gb, mb, vb]) this.sameSize('adamw', pb, b);
    const n = pb.numel;
    const bc1 = 1 - a.beta1 ** a.step;
    const bc2 = Math.sqrt(1 - a.beta2 ** a.step);
    const { chunks, per } = this.split(n, 4, 4);
    this.run('adamw', chunks, [pb.addr, gb.addr, mb.addr, vb.addr, n, per, a.beta1, a.beta2, a.lr / bc1, bc2, a.eps, 1 - a.lr * a.weightDecay], n * 4);
  }

  // ---- quantised weights ------------------------------------------------------------

  dequantize4bit(packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, a: Dequantize4bitArgs): void {
    const [pb, c4, sc, c8, am, ob] = [packed, code4, scaleCodes, code8, scaleAbsmax, out].map((b) => this.own(b)) as
      [WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer];
    const blocks = Math.ceil(a.n / a.blockSize);
    this.need(pb, Math.ceil(a.n / 2), 'dequantize4bit packed');
    this.need(c4, 16, 'dequantize4bit code4');
    this.need(sc, blocks, 'dequantize4bit scaleCodes');
    this.need(c8, 256, 'dequantize4bit code8');
    this.need(am, Math.ceil(blocks / a.scaleBlockSize), 'dequantize4bit scaleAbsmax');
    this.need(ob, a.n, 'dequantize4bit out');
    if (ob.dtype === 'f64') { // storage for f64 gradient checks: the reference loop
      dequantize4bit(this.view(pb) as Uint8Array, this.view(c4) as Float32Array, this.view(sc) as Uint8Array,
        this.view(c8) as Float32Array, this.view(am) as Float32Array, this.view(ob) as Float32Array, a);
      return;
    }
    this.f(out);
    // Chunks of whole blocks, so each scale is computed by one thread; the kernel reads the
    // nibble of every element on its own, so a block may start in the middle of a byte.
    const { chunks, per } = this.split(a.n, a.blockSize, 2);
    const scratch = this.scratch(64);
    this.run('dequantize4bit', chunks, [pb.addr, c4.addr, sc.addr, c8.addr, am.addr, ob.addr, a.n, a.blockSize, a.scaleBlockSize, a.scaleOffset, per,
      scratch, this.scratchPerThread], a.n * 2);
  }

  /**
   * The fused 4-bit linear layer (assembly/quant.ts linear4bit) for up to 4 rows of f32 x,
   * where the decoding product is memory-bound and expanding the weight would cost more than
   * the product. Its result equals `dequantize4bit` followed by `matmul` bit for bit.
   */
  linear4bit(x: DeviceBuffer, packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, a: Linear4bitArgs): boolean {
    const { m, n, k } = a;
    if (m < 1 || m > 4 || n === 0 || k === 0 || k % 16 !== 0 || a.blockSize % 16 !== 0) return false;
    const [xb, pb, c4, sc, c8, am, ob] = [x, packed, code4, scaleCodes, code8, scaleAbsmax, out].map((b) => this.own(b)) as
      [WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer, WasmBuffer];
    if (xb.dtype !== 'f32' || ob.dtype !== 'f32') return false;
    const blocks = Math.ceil((n * k) / a.blockSize);
    this.need(xb, m * k, 'linear4bit x');
    this.need(pb, (n * k) / 2, 'linear4bit packed');
    this.need(c4, 16, 'linear4bit code4');
    this.need(sc, blocks, 'linear4bit scaleCodes');
    this.need(c8, 256, 'linear4bit code8');
    this.need(am, Math.ceil(blocks / a.scaleBlockSize), 'linear4bit scaleAbsmax');
    this.need(ob, m * n, 'linear4bit out');
    const work = m * n * k;
    const per = Math.ceil(n / this.chunkCount(work));
    const scratch = this.scratch(64 + 4 * k);
    this.run('linear4bit', Math.ceil(n / per), [xb.addr, pb.addr, c4.addr, sc.addr, c8.addr, am.addr, ob.addr, m, n, k,
      a.blockSize, a.scaleBlockSize, a.scaleOffset, scratch, this.scratchPerThread, per], work);
    return true;
  }

  // ---- helpers ----------------------------------------------------------------------

  /** Writes the arguments and runs the kernel's chunks (on all threads if `work` is large). */
  private run(kernel: KernelName, chunks: number, args: number[], work: number): void {
    if (chunks <= 0) return;
    if (args.length > ARG_SLOTS) throw new InternalError(`wasm: ${args.length} arguments for ${kernel}`);
    this.f64.set(args, this.argsAddr / 8);
    this.pool.run(KERNEL_INDEX[kernel], this.argsAddr, chunks, work >= this.parallelMin && work >= 0);
  }

  /** How many chunks to cut `work` into: one when small, else a few per thread. */
  private chunkCount(work: number): number {
    if (work < this.parallelMin || this.threads === 1) return 1;
    return Math.max(Math.min(this.threads, work), Math.min(this.threads * 4, Math.floor(work / CHUNK_MIN)));
  }

  /** Chunks of a flat range of n elements, each a multiple of `unit`; `cost` weighs an element. */
  private split(n: number, unit: number, cost: number): { chunks: number; per: number } {
    if (n === 0) return { chunks: 0, per: unit };
    const want = this.chunkCount(n * cost);
    const per = roundUp(Math.ceil(n / want), unit);
    return { chunks: Math.ceil(n / per), per };
  }

  /** Chunks of `rows` rows that cost `rowCost` each. */
  private rows(rows: number, rowCost: number): { chunks: number; per: number } {
    if (rows === 0) return { chunks: 0, per: 1 };
    const want = this.chunkCount(rows * rowCost);
    const per = Math.ceil(rows / want);
    return { chunks: Math.ceil(rows / per), per };
  }

  /** Per-thread scratch of at least `bytes` per thread; returns its base address. */
  private scratch(bytes: number): number {
    const need = roundUp(bytes, 64);
    if (need > this.scratchPerThread) {
      const per = roundUp(Math.max(need, this.scratchPerThread * 1.5), 64);
      if (this.scratchAddr) this.alloc_.free(this.scratchAddr);
      this.scratchAddr = 0;
      this.scratchPerThread = 0;
      this.scratchAddr = this.alloc_.alloc(per * this.threads);
      this.scratchPerThread = per;
    }
    return this.scratchAddr;
  }

  /** The argument block of the attention kernels: q, k, v, out and lse with their dtype flags, shapes, mask, scratch. */
  private attnArgs(g: AttentionArgs, scratch: number, q: WasmBuffer, k: WasmBuffer, v: WasmBuffer, out: WasmBuffer, lse: WasmBuffer): number[] {
    const a = new Array<number>(36).fill(0);
    a[0] = q.addr; a[1] = k.addr; a[2] = v.addr; a[3] = out.addr; a[4] = lse.addr;
    a[29] = floatFlag(q.dtype); a[30] = floatFlag(k.dtype); a[31] = floatFlag(v.dtype); a[32] = floatFlag(out.dtype);
    a[5] = g.B; a[6] = g.Nq; a[7] = g.Nk; a[8] = g.kvStride; a[9] = g.H; a[10] = g.Hkv; a[11] = g.D;
    a[12] = g.scale; a[13] = g.qOffset;
    a[14] = g.mask.kind === 'causal' ? MASK_CODE.causal : MASK_CODE[g.mask.form];
    a[15] = g.mask.kind === 'causal' ? 1 : g.mask.group;
    a[16] = scratch; a[17] = this.scratchPerThread; a[18] = BQ; a[19] = BK;
    return a;
  }

  /** Rough multiply-adds of an attention pass, for the serial/parallel decision. */
  private attnWork(g: AttentionArgs): number {
    const keys = g.mask.kind === 'causal' ? Math.min(g.Nk, g.qOffset + g.Nq) / 2 + 1 : Math.min(g.Nk, g.mask.group);
    return g.B * g.H * g.Nq * keys * g.D * 2;
  }

  private checkAttention(g: AttentionArgs, q: WasmBuffer, k: WasmBuffer, v: WasmBuffer, out: WasmBuffer, lse: WasmBuffer): void {
    if (g.H % g.Hkv !== 0 || g.Nk > g.kvStride || g.qOffset + g.Nq > g.Nk) throw new InternalError(`wasm.attention: inconsistent arguments ${JSON.stringify(g)}`);
    if (g.mask.kind === 's2' && !(g.mask.group >= 1)) throw new InternalError('wasm.attention: S² group must be ≥ 1');
    this.need(q, g.B * g.Nq * g.H * g.D, 'attention q');
    this.need(out, g.B * g.Nq * g.H * g.D, 'attention out');
    this.need(k, g.B * g.kvStride * g.Hkv * g.D, 'attention k');
    this.need(v, g.B * g.kvStride * g.Hkv * g.D, 'attention v');
    this.need(lse, g.B * g.H * g.Nq, 'attention lse');
  }

  private checkIds(ids: WasmBuffer, V: number, T: number, msg: (id: number, t: number) => string, ignore?: number): void {
    this.need(ids, T, 'ids');
    const a = this.i32;
    const o = ids.addr / 4;
    for (let t = 0; t < T; t++) {
      const id = a[o + t]!;
      if (id === ignore) continue;
      if (!(id >= 0 && id < V)) throw new RangeError(msg(id, t));
    }
  }

  private refresh(): void {
    const buf = this.wasmMemory.buffer as ArrayBuffer;
    this.u8 = new Uint8Array(buf);
    this.u16 = new Uint16Array(buf);
    this.i32 = new Int32Array(buf);
    this.f32 = new Float32Array(buf);
    this.f64 = new Float64Array(buf);
  }

  /** A typed view of the buffer's elements. */
  private view(b: WasmBuffer): HostArray {
    const n = b.numel;
    switch (b.dtype) {
      case 'f32': return this.f32.subarray(b.addr / 4, b.addr / 4 + n);
      case 'f64': return this.f64.subarray(b.addr / 8, b.addr / 8 + n);
      case 'f16': case 'bf16': return this.u16.subarray(b.addr / 2, b.addr / 2 + n);
      case 'i32': return this.i32.subarray(b.addr / 4, b.addr / 4 + n);
      case 'u8': return this.u8.subarray(b.addr, b.addr + n);
    }
  }

  private own(buf: DeviceBuffer): WasmBuffer {
    if (!(buf instanceof WasmBuffer)) throw new InternalError(`wasm: buffer from backend '${buf.backend}'`);
    if (buf.freed) throw new InternalError('wasm: use of a freed buffer');
    if (this.disposed) throw new InternalError('wasm: backend disposed');
    return buf;
  }

  private f(buf: DeviceBuffer): WasmBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'f32') throw new InternalError(`wasm: kernel needs f32, got ${b.dtype} (this backend computes in f32)`);
    return b;
  }

  /** An operand the kernel reads as f32 or bf16 (matmul). */
  private float(buf: DeviceBuffer): WasmBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'f32' && b.dtype !== 'bf16' && b.dtype !== 'f16') throw new InternalError(`wasm: kernel needs f32, bf16 or f16, got ${b.dtype}`);
    return b;
  }

  private fOrBf16(buf: DeviceBuffer): WasmBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'f32' && b.dtype !== 'bf16') throw new InternalError(`wasm: kernel needs f32 or bf16, got ${b.dtype}`);
    return b;
  }

  private i(buf: DeviceBuffer): WasmBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'i32') throw new InternalError(`wasm: kernel needs i32 ids, got ${b.dtype}`);
    return b;
  }

  private need(b: WasmBuffer, n: number, what: string): void {
    if (b.numel < n) throw new InternalError(`wasm: ${what} has ${b.numel} elements, the kernel reads ${n}`);
  }

  private sameSize(what: string, a: WasmBuffer, b: WasmBuffer): void {
    if (b.numel < a.numel) throw new InternalError(`wasm.${what}: ${a.numel} elements into ${b.numel}`);
  }
}

/** Drops size-1 axes and merges axes that are contiguous in both src and dst. */
function simplifyCopy(a: CopyArgs): { shape: number[]; src: number[]; dst: number[]; total: number } {
  const shape: number[] = [];
  const src: number[] = [];
  const dst: number[] = [];
  let total = 1;
  for (let i = 0; i < a.shape.length; i++) {
    const n = a.shape[i]!;
    total *= n;
    if (n === 1) continue;
    const last = shape.length - 1;
    if (last >= 0 && src[last] === a.srcStrides[i]! * n && dst[last] === a.dstStrides[i]! * n) {
      shape[last] = shape[last]! * n;
      src[last] = a.srcStrides[i]!;
      dst[last] = a.dstStrides[i]!;
    } else {
      shape.push(n);
      src.push(a.srcStrides[i]!);
      dst.push(a.dstStrides[i]!);
    }
  }
  if (shape.length === 0) { shape.push(1); src.push(1); dst.push(1); }
  return { shape, src, dst, total };
}

/** Throws unless every element the strided walk touches is inside the buffer. */
function checkExtent(what: string, b: WasmBuffer, offset: number, shape: readonly number[], strides: readonly number[]): void {
  let lo = offset;
  let hi = offset;
  shape.forEach((n, i) => {
    const s = strides[i]! * (n - 1);
    if (s > 0) hi += s; else lo += s;
  });
  if (lo < 0 || hi >= b.numel) throw new InternalError(`wasm.${what}: elements ${lo}..${hi} outside a buffer of ${b.numel}`);
}
