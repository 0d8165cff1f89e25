/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: every kernel of backend.ts as a WGSL compute shader.
 *
 * - Buffers live on the device (`GpuBuffer`), drawn from a size-class pool so a training
 *   step that frees and reallocates the same shapes creates no new GPU buffers.
 * - Kernel calls only record: each is a dispatch in an open compute pass. Its scalar
 *   arguments go into a host-side uniform arena that is written to the GPU once per
 *   submission, just before the command buffer is submitted, so recording never waits.
 * - Pipelines are compiled once per kernel signature (wgsl.ts) and cached.
 * - The only reads back are `download` (and `sync`), which are async. Queue order makes
 *   reuse safe: a buffer freed while earlier recorded work still reads it can be handed
 *   out again at once, since later work runs after; `upload` submits the recorded work
 *   before it writes, so a write never overtakes the reads recorded before it.
 * - Errors the GPU reports asynchronously (validation, out-of-range token ids found by a
 *   kernel) are thrown by the next `download` or `sync`.
 *
 * f64 is not available (`supportsF64` false). f16/bf16 buffers are packed two per 32-bit
 * word; matmul reads them directly (mixed precision: 16-bit weights, f32 compute).
 */
import type {
  AdamWArgs, AttentionArgs, Backend, BinaryOp, CopyArgs, Dequantize4bitArgs, DeviceBuffer, Linear4bitArgs, MatmulArgs, MemoryStats, UnaryOp,
} from '../backend.js';
import { MemoryCounter } from '../backend.js';
import { widenStorage16 } from '../storage16.js';
import { fstore, type FStore } from './kernels/operand.js';
import type { DType, HostArray } from '../../tensor/dtype.js';
import { allocHost, hostMatches, itemSize } from '../../tensor/dtype.js';
import { InternalError, LongLoraError } from '../../errors.js';
import type { AcquiredDevice, AdapterSummary, WebGpuOptions } from './device.js';
import { acquireDevice, BufferUsage, describeAdapter, inBrowser, MapMode, ShaderStage } from './device.js';
import type { KernelSpec, Launch } from './wgsl.js';
import { argsBytes, buildModule, STATUS_BAD_TARGET, STATUS_BAD_TOKEN } from './wgsl.js';
import * as ew from './kernels/elementwise.js';
import * as nn from './kernels/nn.js';
import { gemv, gemvApplies, linear4bit, linear4bitApplies, matmul as matmulLaunches, TILE_LIGHT, type Tile } from './kernels/matmul.js';
import { matmulSgm, sgmPlan, type SgmPlan } from './kernels/matmul-sgm.js';
import type { AttentionTiles } from './kernels/attention.js';
import * as attn from './kernels/attention.js';
import {
  attentionBackwardSgm, attentionBackwardSgmApplies, attentionSgm, attentionSgmApplies, attnSgmBwdPlan, attnSgmPlan, type AttnSgmBwdPlan, type AttnSgmPlan,
} from './kernels/attention-sgm.js';

class GpuBuffer implements DeviceBuffer {
  readonly backend = 'webgpu';
  freed = false;
  constructor(readonly dtype: DType, readonly numel: number, readonly gpu: GPUBuffer, readonly size: number) {}
}

interface Prepared {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  argsSize: number;
}

export interface WebGpuBackendOptions extends WebGpuOptions {
  /** Bytes of freed buffers kept for reuse (default 1 GiB). */
  poolBytes?: number;
  /** Fill every newly handed-out buffer with NaN (tests: catches reads of uninitialised memory). */
  poison?: boolean;
  /** Dispatches recorded before a submission (default 128). */
  batch?: number;
  /** Tile sizes of the attention kernels (tests use small ones to cover the tiling). */
  attentionTiles?: Partial<AttentionTiles>;
  /** Matmul tile (tests); default: chosen per problem size. */
  matmulTile?: Tile;
  /**
   * Decoding kernels (default true): x·Wᵀ with at most 4 rows on the matrix-vector kernel
   * (and on the fused 4-bit one for NF4 weights), and attention for one query row on a
   * kernel that shares the row among 256 threads; false sends them to the general kernels
   * (benchmarks and tests compare them).
   */
  decodeKernels?: boolean;
  /**
   * Kernel constants: 'fast' (large tiles, for GPUs) or 'light' (small tiles that a
   * software adapter compiles quickly). Default: 'light' on a software adapter, else 'fast'.
   */
  profile?: 'fast' | 'light';
  /**
   * Let the kernels read and write 16-bit operands themselves (default true). false widens
   * every 16-bit operand to f32 copies around the kernels (storage16.ts), for comparisons.
   */
  native16?: boolean;
  /**
   * Tests: build the subgroup-matrix matmul with its operations written out in plain WGSL
   * (kernels/matmul-sgm.ts), with 8×8×8 blocks, on any adapter with one subgroup size. It
   * checks the kernel's tiling where the extension is missing; it is slow.
   */
  emulateSubgroupMatrix?: boolean;
}

const ARENA_BYTES = 1 << 18;
const STATUS_BYTES = 16;

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Pool size classes: multiples of 256 B up to 4 KiB, then 8 classes per power of two (≤ 12.5 % waste). */
export function sizeClass(bytes: number): number {
  const n = Math.max(16, bytes);
  if (n <= 4096) return align(n, n <= 256 ? 16 : 256);
  const step = 2 ** (Math.floor(Math.log2(n)) - 3);
  return align(n, step);
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} B`;
}

const f32Buf = (b: DeviceBuffer | null): boolean => b === null || b.dtype === 'f32';
const evenOr = (n: number, ...outs: Array<DeviceBuffer | null>): boolean => n % 2 === 0 || outs.every(f32Buf);

/**
 * The kernels that read and write 16-bit operands themselves, with the calls they take: a
 * 16-bit output is written a word (two elements) at a time, so its rows must have even
 * length; per-row statistics (rstd, lse) and weight gradients of RMSNorm stay f32.
 */
const NATIVE16 = {
  unary: true, unaryBackward: true, binary: true, affine: true, swiglu: true, swigluBackward: true,
  matmul: (_a: DeviceBuffer, _b: DeviceBuffer, o: DeviceBuffer, g: MatmulArgs) => evenOr(g.n, o),
  rmsnorm: (_x: DeviceBuffer, _w: DeviceBuffer, o: DeviceBuffer, rstd: DeviceBuffer, _r: number, C: number) => f32Buf(rstd) && evenOr(C, o),
  rmsnormBackward: (_x: DeviceBuffer, _w: DeviceBuffer, rstd: DeviceBuffer, _dy: DeviceBuffer, dx: DeviceBuffer, dw: DeviceBuffer | null, _r: number, C: number) =>
    f32Buf(rstd) && f32Buf(dw) && evenOr(C, dx),
  rope: (...a: [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, number, number, number, number]) => evenOr(a[7] / 2, a[3]),
  gather: (_t: DeviceBuffer, _i: DeviceBuffer, o: DeviceBuffer, _V: number, C: number) => evenOr(C, o),
  attention: (...a: [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, AttentionArgs]) => f32Buf(a[4]) && evenOr(a[5].D, a[3]),
  attentionBackward: (...a: [DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, DeviceBuffer, AttentionArgs]) =>
    f32Buf(a[4]) && evenOr(a[9].D, a[6], a[7], a[8]),
} as const;

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly supportsF64 = false;
  readonly adapter: AdapterSummary;
  /** shader-f16 is enabled on the device (f16 compute matmul). */
  readonly hasF16: boolean;
  /** Set when automatic backend selection should pass this one over (a software adapter). */
  readonly autoSkipReason: string | null;
  readonly device: GPUDevice;
  readonly limits: { maxBinding: number; maxBuffer: number; workgroupStorage: number };
  /** Kernel constants in use (see `WebGpuBackendOptions.profile`). */
  readonly profile: 'fast' | 'light';
  /**
   * The subgroup-matrix (tensor-core) matmul's plan, when the `subgroupMatrix` option was set
   * and the device can run it; f16 · f16 matmuls then use it. `subgroupMatrixNote` says which
   * blocks it uses, or why it is off.
   */
  readonly sgm: SgmPlan | null;
  readonly subgroupMatrixNote: string;

  /** The GPU object (Dawn's instance in Node), held so it lives as long as the backend. */
  readonly instance: unknown;
  private readonly pool = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private readonly poolLimit: number;
  private readonly poison: boolean;
  private readonly batchLimit: number;
  private readonly tilesOverride: Partial<AttentionTiles>;
  private readonly matmulTile: Tile | undefined;
  private readonly decodeKernels: boolean;
  private readonly mem = new MemoryCounter();

  private readonly pipelines = new Map<string, Prepared>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private recorded = 0;
  private readonly arena = new ArrayBuffer(ARENA_BYTES);
  private readonly arenaView = new DataView(this.arena);
  private arenaUsed = 0;
  private readonly argsBuffer: GPUBuffer;
  private readonly argsAlign: number;
  private readonly statusBuffer: GPUBuffer;
  private statusDirty = false;
  private readonly toDestroy: GPUBuffer[] = [];
  private error: string | null = null;
  private lost: string | null = null;

  constructor(acq: AcquiredDevice, opts: WebGpuBackendOptions = {}) {
    this.device = acq.device;
    this.instance = acq.instance;
    this.adapter = acq.adapter;
    this.hasF16 = acq.features.f16;
    this.autoSkipReason = acq.adapter.software
      ? `only a software adapter is available (${describeAdapter(acq.adapter)}); automatic selection skips it — ${inBrowser() ? "setBackend('webgpu')" : 'pass --backend webgpu'} to use it anyway`
      : null;
    const lim = this.device.limits;
    this.limits = {
      maxBinding: lim.maxStorageBufferBindingSize,
      maxBuffer: lim.maxBufferSize,
      workgroupStorage: lim.maxComputeWorkgroupStorageSize,
    };
    this.argsAlign = Math.max(lim.minUniformBufferOffsetAlignment, 16);
    this.poolLimit = opts.poolBytes ?? 2 ** 30;
    this.poison = opts.poison ?? false;
    this.batchLimit = opts.batch ?? 128;
    this.profile = opts.profile ?? (acq.adapter.software ? 'light' : 'fast');
    const light = this.profile === 'light';
    this.tilesOverride = { ...(light ? { BK: 4, BQ2: 4 } : {}), ...opts.attentionTiles };
    this.matmulTile = opts.matmulTile ?? (light ? TILE_LIGHT : undefined);
    this.decodeKernels = opts.decodeKernels ?? true;
    const sgm = planSubgroupMatrix(acq, opts, this.limits.workgroupStorage, lim.maxComputeInvocationsPerWorkgroup);
    this.sgm = sgm.plan;
    this.subgroupMatrixNote = sgm.reason;
    this.argsBuffer = this.device.createBuffer({ size: ARENA_BYTES, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'args' });
    this.statusBuffer = this.device.createBuffer({
      size: STATUS_BYTES, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST, label: 'status',
    });
    this.device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.error ??= e.message;
    });
    void this.device.lost.then((info) => {
      this.lost = `webgpu: the device was lost (${info.reason}: ${info.message})`;
    });
    // 16-bit operands (mixed precision) are read and written directly by the kernels of the
    // forward and backward passes; the rest widen them to f32 (storage16.ts), as do calls
    // whose 16-bit outputs cannot be written a word at a time (odd row lengths).
    widenStorage16(this, { native: opts.native16 === false ? {} : NATIVE16 });
  }

  /** Adapter, features and limits in one line (for logs). */
  describe(): string {
    return `${describeAdapter(this.adapter)}; shader-f16 ${this.hasF16 ? 'yes' : 'no'}; ` +
      `max buffer binding ${fmtBytes(this.limits.maxBinding)}, workgroup memory ${this.limits.workgroupStorage} B; ${this.profile} kernels` +
      (this.sgm ? `; subgroup-matrix matmul and attention: ${this.subgroupMatrixNote}` : this.subgroupMatrixNote ? `; no subgroup-matrix matmul: ${this.subgroupMatrixNote}` : '');
  }

  // ---- memory -----------------------------------------------------------------------

  alloc(dtype: DType, numel: number): DeviceBuffer {
    this.checkAlive();
    if (dtype === 'f64') throw new LongLoraError('webgpu: f64 tensors are not supported on the GPU; use f32 (f64 is for CPU gradient checks)');
    if (!Number.isInteger(numel) || numel < 0) throw new InternalError(`webgpu.alloc: numel ${numel}`);
    const need = align(Math.max(16, numel * itemSize(dtype)), 16);
    if (need > this.limits.maxBinding) {
      throw new LongLoraError(`webgpu: a ${dtype} tensor of ${numel.toLocaleString('en-US')} elements (${fmtBytes(need)}) exceeds this adapter's ` +
        `maxStorageBufferBindingSize (${fmtBytes(this.limits.maxBinding)}). Use a shorter sequence or smaller chunks, or --backend wasm|cpu`);
    }
    let cls = sizeClass(need);
    if (cls > this.limits.maxBinding) cls = need;
    let gpu = this.pool.get(cls)?.pop();
    if (gpu) this.pooledBytes -= cls;
    else gpu = this.device.createBuffer({ size: cls, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    const buf = new GpuBuffer(dtype, numel, gpu, cls);
    this.mem.add(numel * itemSize(dtype));
    if (this.poison) this.launch(ew.fill('f32', cls / 4, NaN), [buf]);
    return buf;
  }

  free(buf: DeviceBuffer): void {
    const b = this.own(buf);
    b.freed = true;
    this.mem.remove(b.numel * itemSize(b.dtype));
    if (this.pooledBytes + b.size <= this.poolLimit) {
      let list = this.pool.get(b.size);
      if (!list) { list = []; this.pool.set(b.size, list); }
      list.push(b.gpu);
      this.pooledBytes += b.size;
    } else if (this.encoder) {
      this.toDestroy.push(b.gpu); // recorded work may still use it: destroy after submission
    } else {
      b.gpu.destroy();
    }
  }

  /** Destroys the pooled (free) buffers. */
  trim(): void {
    this.flush();
    for (const list of this.pool.values()) for (const g of list) g.destroy();
    this.pool.clear();
    this.pooledBytes = 0;
  }

  /** Bytes held by free buffers kept for reuse. */
  pooled(): number {
    return this.pooledBytes;
  }

  upload(buf: DeviceBuffer, data: HostArray): void {
    const b = this.own(buf);
    if (!hostMatches(b.dtype, data) || data.length !== b.numel) {
      throw new InternalError(`webgpu.upload: ${data.constructor.name}[${data.length}] into ${b.dtype}[${b.numel}]`);
    }
    if (data.byteLength === 0) return;
    this.flush(); // recorded reads of this buffer's previous contents run first
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length % 4 !== 0) {
      const padded = new Uint8Array(align(bytes.length, 4));
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(b.gpu, 0, bytes);
  }

  async download(buf: DeviceBuffer): Promise<HostArray> {
    const b = this.own(buf);
    const bytes = b.numel * itemSize(b.dtype);
    const size = Math.max(4, align(bytes, 4));
    const withStatus = this.statusDirty;
    this.statusDirty = false;
    this.flush();
    const staging = this.device.createBuffer({ size: size + (withStatus ? STATUS_BYTES : 0), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    if (bytes > 0) enc.copyBufferToBuffer(b.gpu, 0, staging, 0, size);
    if (withStatus) enc.copyBufferToBuffer(this.statusBuffer, 0, staging, size, STATUS_BYTES);
    this.device.queue.submit([enc.finish()]);
    try {
      await this.deadline(staging.mapAsync(MapMode.READ), 'a readback');
    } catch (e) {
      staging.destroy();
      this.throwIfFailed();
      throw new InternalError(`webgpu.download: mapping failed (${e instanceof Error ? e.message : String(e)})`);
    }
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    if (withStatus) this.checkStatus(new Uint32Array(copy, size, 4));
    this.throwIfFailed();
    const out = allocHost(b.dtype, b.numel);
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(new Uint8Array(copy, 0, bytes));
    return out;
  }

  async sync(): Promise<void> {
    if (this.statusDirty) {
      // A tiny download carries the status words back.
      const probe = this.alloc('i32', 1);
      try { await this.download(probe); } finally { this.free(probe); }
      return;
    }
    this.flush();
    await this.deadline(this.device.queue.onSubmittedWorkDone(), 'sync');
    this.throwIfFailed();
  }

  /**
   * `p`, or an error after LONGLORA_WEBGPU_TIMEOUT_S seconds (default 600): a hung driver
   * then fails the caller with a message instead of blocking the process forever.
   */
  private deadline<T>(p: Promise<T>, what: string): Promise<T> {
    const seconds = Number(globalThis.process?.env?.LONGLORA_WEBGPU_TIMEOUT_S ?? 600);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LongLoraError(`webgpu: ${what} did not complete in ${seconds} s; the GPU or its driver appears hung`)), seconds * 1000);
      (timer as { unref?: () => void }).unref?.();
    });
    return Promise.race([p, limit]).finally(() => clearTimeout(timer));
  }

  memory(): MemoryStats { return this.mem.stats(); }
  resetPeak(): void { this.mem.resetPeak(); }

  /** Releases every GPU resource; the backend cannot be used afterwards. */
  destroy(): void {
    this.trim();
    this.argsBuffer.destroy();
    this.statusBuffer.destroy();
    this.device.destroy();
    this.lost ??= 'webgpu: the backend was destroyed';
  }

  // ---- kernels ----------------------------------------------------------------------

  fill(out: DeviceBuffer, value: number): void {
    const o = this.own(out);
    this.launch(ew.fill(o.dtype, o.numel, value), [o]);
  }

  copy(src: DeviceBuffer, dst: DeviceBuffer, args: CopyArgs): void {
    const s = this.own(src);
    const d = this.own(dst);
    if (s.dtype !== d.dtype && !(itemSize(s.dtype) === 4 && itemSize(d.dtype) === 4 && !args.accumulate)) {
      throw new InternalError(`webgpu.copy: ${s.dtype} → ${d.dtype}`);
    }
    this.launch(ew.copy(d.dtype, args), [s, d]);
  }

  cast(src: DeviceBuffer, dst: DeviceBuffer): void {
    const s = this.own(src);
    const d = this.own(dst);
    if (s.numel !== d.numel) throw new InternalError(`webgpu.cast: ${s.numel} → ${d.numel} elements`);
    this.launch(ew.cast(s.dtype, d.dtype, d.numel), [s, d]);
  }

  unary(op: UnaryOp, x: DeviceBuffer, out: DeviceBuffer): void {
    const [xb, o] = [this.fl(x), this.fl(out)];
    const st = { x: xb.dtype, o: o.dtype };
    if (xb === o) this.launch(ew.unary(op, o.numel, true, st), [o]);
    else this.launch(ew.unary(op, o.numel, false, st), [xb, o]);
  }

  unaryBackward(op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer): void {
    const [xb, dyb, dxb] = [this.fl(x), this.fl(dy), this.fl(dx)];
    this.launch(ew.unaryBackward(op, dxb.numel, { x: xb.dtype, dy: dyb.dtype, dx: dxb.dtype }), [xb, dyb, dxb]);
  }

  binary(op: BinaryOp, a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer): void {
    const [ab, bb, o] = [this.fl(a), this.fl(b), this.fl(out)];
    if (bb.numel === 0) return;
    const st = { x: ab.dtype, y: bb.dtype, o: o.dtype };
    if (ab === o) this.launch(ew.binary(op, o.numel, bb.numel, true, st), [bb, o]);
    else this.launch(ew.binary(op, o.numel, bb.numel, false, st), [ab, bb, o]);
  }

  swiglu(gate: DeviceBuffer, up: DeviceBuffer, out: DeviceBuffer): void {
    const [g, u, o] = [this.fl(gate), this.fl(up), this.fl(out)];
    this.sameNumel('swiglu', g, u, o);
    const ins = [...(g === o ? [] : [g]), ...(u === o ? [] : [u])];
    this.launch(ew.swiglu(o.numel, g === o, u === o, { g: g.dtype, u: u.dtype, o: o.dtype }), [...ins, o]);
  }

  swigluBackward(gate: DeviceBuffer, up: DeviceBuffer, dout: DeviceBuffer, dgate: DeviceBuffer | null, dup: DeviceBuffer | null): void {
    const [g, u, dy] = [this.fl(gate), this.fl(up), this.fl(dout)];
    const [dg, du] = [dgate && this.fl(dgate), dup && this.fl(dup)];
    const grads = [dg, du].filter((b) => b !== null);
    this.sameNumel('swigluBackward', g, u, dy, ...grads);
    if (grads.length === 0) return;
    const st = { g: g.dtype, u: u.dtype, dy: dy.dtype, dg: dg?.dtype ?? 'f32', du: du?.dtype ?? 'f32' };
    this.launch(ew.swigluBackward(g.numel, dg !== null, du !== null, st), [g, u, dy, ...grads]);
  }

  affine(x: DeviceBuffer, alpha: number, beta: number, out: DeviceBuffer): void {
    const [xb, o] = [this.fl(x), this.fl(out)];
    const st = { x: xb.dtype, o: o.dtype };
    if (xb === o) this.launch(ew.affine(o.numel, alpha, beta, true, st), [o]);
    else this.launch(ew.affine(o.numel, alpha, beta, false, st), [xb, o]);
  }

  reduceSum(x: DeviceBuffer, out: DeviceBuffer, outer: number, size: number, inner: number): void {
    if (size === 0) { this.fill(out, 0); return; }
    this.launch(ew.reduceSum(outer, size, inner), [this.f32(x), this.f32(out)]);
  }

  /** Keys of the kernels compiled so far (diagnostics and tests: which variant ran). */
  preparedKernels(): string[] {
    return [...this.pipelines.keys()];
  }

  matmul(a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer, args: MatmulArgs): void {
    const [ab, bb, o] = [this.fl(a), this.fl(b), this.fl(out)];
    if (args.m === 0 || args.n === 0 || args.batch === 0) return;
    // 16-bit operands are read and written directly; f16 compute when both inputs are f16 and the device has shader-f16.
    const f16 = this.hasF16 && ab.dtype === 'f16' && bb.dtype === 'f16';
    const launches = this.decodeKernels && gemvApplies(args, o.dtype, f16)
      ? gemv(args, ab.dtype, bb.dtype)
      : f16 && this.sgm ? matmulSgm(args, this.sgm, o.dtype)
      : matmulLaunches(args, ab.dtype, bb.dtype, this.matmulTile, f16, o.dtype);
    for (const l of launches) this.launch(l, [ab, bb, o]);
  }

  softmax(x: DeviceBuffer, out: DeviceBuffer, rows: number, cols: number): void {
    this.launch(nn.softmax(rows, cols), [this.f32(x), this.f32(out)]);
  }

  softmaxBackward(y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, rows: number, cols: number): void {
    this.launch(nn.softmaxBackward(rows, cols), [this.f32(y), this.f32(dy), this.f32(dx)]);
  }

  rmsnorm(x: DeviceBuffer, w: DeviceBuffer, out: DeviceBuffer, rstd: DeviceBuffer, rows: number, C: number, eps: number): void {
    const [xb, wb, o] = [this.fl(x), this.fl(w), this.fl(out)];
    this.launch(nn.rmsnorm(rows, C, eps, { x: xb.dtype, w: wb.dtype, o: o.dtype }), [xb, wb, o, this.f32(rstd)]);
  }

  rmsnormBackward(x: DeviceBuffer, w: DeviceBuffer, rstd: DeviceBuffer, dy: DeviceBuffer,
    dx: DeviceBuffer, dw: DeviceBuffer | null, rows: number, C: number): void {
    const [xb, wb, rb, dyb, dxb] = [this.fl(x), this.fl(w), this.f32(rstd), this.fl(dy), this.fl(dx)];
    this.launch(nn.rmsnormBackwardDx(rows, C, { x: xb.dtype, w: wb.dtype, dy: dyb.dtype, dx: dxb.dtype }), [xb, wb, rb, dyb, dxb]);
    if (dw) this.launch(nn.rmsnormBackwardDw(rows, C, { x: xb.dtype, dy: dyb.dtype }), [xb, rb, dyb, this.f32(dw)]);
  }

  rope(x: DeviceBuffer, cos: DeviceBuffer, sin: DeviceBuffer, out: DeviceBuffer,
    B: number, N: number, H: number, D: number, inverse: boolean): void {
    const [xb, cb, sb, o] = [this.fl(x), this.fl(cos), this.fl(sin), this.fl(out)];
    this.launch(nn.rope(B, N, H, D, inverse, { x: xb.dtype, cs: cb.dtype, sn: sb.dtype, o: o.dtype }), [xb, cb, sb, o]);
  }

  gather(table: DeviceBuffer, ids: DeviceBuffer, out: DeviceBuffer, V: number, C: number, T: number): void {
    const [tb, o] = [this.fl(table), this.fl(out)];
    this.launch(nn.gather(V, C, T, { table: tb.dtype, o: o.dtype }), [tb, this.i32(ids), o]);
  }

  scatterAdd(dy: DeviceBuffer, ids: DeviceBuffer, dtable: DeviceBuffer, V: number, C: number, T: number): void {
    this.launch(nn.scatterAdd(V, C, T), [this.f32(dy), this.i32(ids), this.f32(dtable)]);
  }

  // q, k, v, out, dout, dq, dk and dv are read and written directly, each in its own dtype
  // (f32, f16 or bf16); lse and δ are f32.
  attention(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer, args: AttentionArgs): void {
    const st = { ...attn.F32_STORES, qb: this.store(q), kb: this.store(k), vb: this.store(v), ob: this.store(out) };
    const tc = attentionSgmApplies(args, st) ? this.attentionSgmPlan(args.D) : null;
    const launch = this.decodeKernels && attn.decodeApplies(args) ? attn.attentionDecode(args, st)
      : tc ? attentionSgm(args, tc, st)
      : attn.attention(args, this.tiles(args.D), st);
    this.launch(launch, [this.own(q), this.own(k), this.own(v), this.own(out), this.f32(lse)]);
  }

  attentionBackward(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer,
    dout: DeviceBuffer, dq: DeviceBuffer, dk: DeviceBuffer, dv: DeviceBuffer, args: AttentionArgs): void {
    const t = this.tiles(args.D);
    const st = {
      qb: this.store(q), kb: this.store(k), vb: this.store(v), ob: this.store(out), dob: this.store(dout),
      dqb: this.store(dq), dkb: this.store(dk), dvb: this.store(dv),
    };
    const [qb, kb, vb, ob, lb, dob] = [this.own(q), this.own(k), this.own(v), this.own(out), this.f32(lse), this.own(dout)];
    const delta = this.alloc('f32', args.B * args.H * args.Nq) as GpuBuffer;
    this.launch(attn.attentionDelta(args, t, st), [ob, dob, delta]);
    const tc = attentionBackwardSgmApplies(args, st) ? this.attentionSgmBwdPlan(args.D) : null;
    const { dkv, dq: dqLaunch } = tc ? attentionBackwardSgm(args, tc, st) : { dkv: attn.attentionDkv(args, t, st), dq: attn.attentionDq(args, t, st) };
    this.launch(dkv, [qb, kb, vb, lb, delta, dob, this.own(dk), this.own(dv)]);
    this.launch(dqLaunch, [qb, kb, vb, lb, delta, dob, this.own(dq)]);
    this.free(delta); // recorded work reads it before any later reuse
  }

  /** The storage of a float operand read or written directly (attention). */
  private store(buf: DeviceBuffer): FStore {
    return this.fl(buf).dtype;
  }

  crossEntropy(logits: DeviceBuffer, targets: DeviceBuffer, losses: DeviceBuffer, lse: DeviceBuffer,
    T: number, V: number, ignoreIndex: number): void {
    this.launch(nn.crossEntropy(T, V, ignoreIndex), [this.f32(logits), this.i32(targets), this.f32(losses), this.f32(lse)]);
  }

  crossEntropyBackward(logits: DeviceBuffer, targets: DeviceBuffer, lse: DeviceBuffer, dlosses: DeviceBuffer,
    dlogits: DeviceBuffer, T: number, V: number, ignoreIndex: number): void {
    this.launch(nn.crossEntropyBackward(T, V, ignoreIndex),
      [this.f32(logits), this.i32(targets), this.f32(lse), this.f32(dlosses), this.f32(dlogits)]);
  }

  adamw(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, args: AdamWArgs): void {
    const pb = this.f32(p);
    this.launch(nn.adamw(pb.numel, args), [pb, this.f32(g), this.f32(m), this.f32(v)]);
  }

  dequantize4bit(packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, args: Dequantize4bitArgs): void {
    this.launch(nn.dequantize4bit(args.n, args.blockSize, args.scaleBlockSize, args.scaleOffset),
      [this.u8(packed), this.f32(code4), this.u8(scaleCodes), this.f32(code8), this.f32(scaleAbsmax), this.f32(out)]);
  }

  /** The fused 4-bit matrix-vector product (kernels/matmul.ts linear4bit) for a few rows of f32 x. */
  linear4bit(x: DeviceBuffer, packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, args: Linear4bitArgs): boolean {
    if (!this.decodeKernels || !linear4bitApplies(args) || x.dtype !== 'f32' || out.dtype !== 'f32') return false;
    this.launch(linear4bit(args), [this.f32(x), this.u8(packed), this.f32(code4), this.u8(scaleCodes), this.f32(code8), this.f32(scaleAbsmax), this.f32(out)]);
    return true;
  }

  // ---- recording and submission -----------------------------------------------------

  private readonly attnSgmPlans = new Map<string, AttnSgmPlan | AttnSgmBwdPlan | null>();

  /** The subgroup-matrix attention tiles (forward) for head dim D, when the device has subgroup matrices and D fits their blocks. */
  private attentionSgmPlan(D: number): AttnSgmPlan | null {
    return this.sgmPlanFor(`fwd:${D}`, (sgm) => attnSgmPlan(sgm, D, this.limits.workgroupStorage).plan) as AttnSgmPlan | null;
  }

  /** The same for the backward kernels. */
  private attentionSgmBwdPlan(D: number): AttnSgmBwdPlan | null {
    return this.sgmPlanFor(`bwd:${D}`, (sgm) => attnSgmBwdPlan(sgm, D, this.limits.workgroupStorage).plan) as AttnSgmBwdPlan | null;
  }

  private sgmPlanFor(key: string, make: (sgm: SgmPlan) => AttnSgmPlan | AttnSgmBwdPlan | null): AttnSgmPlan | AttnSgmBwdPlan | null {
    if (!this.sgm) return null;
    if (!this.attnSgmPlans.has(key)) this.attnSgmPlans.set(key, make(this.sgm));
    return this.attnSgmPlans.get(key)!;
  }

  /** Attention tiles for head dim D: sized to the device's workgroup memory unless overridden. */
  private tiles(D: number): AttentionTiles {
    return { ...attn.attentionTiles(D, this.limits.workgroupStorage), ...this.tilesOverride };
  }

  private prepare(spec: KernelSpec): Prepared {
    let p = this.pipelines.get(spec.key);
    if (p) return p;
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: ShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ...spec.buffers.map((b, i): GPUBindGroupLayoutEntry => ({
        binding: i + 1, visibility: ShaderStage.COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
      })),
    ];
    if (spec.status) entries.push({ binding: spec.buffers.length + 1, visibility: ShaderStage.COMPUTE, buffer: { type: 'storage' } });
    const layout = this.device.createBindGroupLayout({ entries });
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: buildModule(spec), label: spec.key });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: spec.key,
    });
    void this.device.popErrorScope().then((err) => {
      if (err) this.error ??= `kernel '${spec.key}' failed to compile: ${err.message}`;
    });
    p = { pipeline, layout, argsSize: argsBytes(spec) };
    this.pipelines.set(spec.key, p);
    return p;
  }

  /** Records one dispatch of `l` over `bufs` (in the spec's binding order). */
  private launch(l: Launch, bufs: GpuBuffer[]): void {
    this.checkAlive();
    const [gx, gy, gz] = l.grid;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const spec = l.spec;
    if (bufs.length !== spec.buffers.length) throw new InternalError(`webgpu: kernel ${spec.key} takes ${spec.buffers.length} buffers, got ${bufs.length}`);
    for (let i = 0; i < bufs.length; i++) {
      if (spec.buffers[i]!.access !== 'rw') continue;
      for (let j = 0; j < bufs.length; j++) {
        if (j !== i && bufs[j]!.gpu === bufs[i]!.gpu) {
          throw new InternalError(`webgpu: kernel ${spec.key}: output '${spec.buffers[i]!.name}' is also bound as '${spec.buffers[j]!.name}'`);
        }
      }
    }
    const p = this.prepare(spec);
    const slot = align(p.argsSize, this.argsAlign);
    if (this.arenaUsed + slot > ARENA_BYTES) this.flush();
    const at = this.arenaUsed;
    spec.fields.forEach(([, type], k) => {
      const v = l.args[k]!;
      if (type === 'f32') this.arenaView.setFloat32(at + 4 * k, v, true);
      else if (type === 'i32') this.arenaView.setInt32(at + 4 * k, v, true);
      else this.arenaView.setUint32(at + 4 * k, v, true);
    });
    this.arenaUsed += slot;
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.argsBuffer, offset: at, size: p.argsSize } },
      ...bufs.map((b, i): GPUBindGroupEntry => ({ binding: i + 1, resource: { buffer: b.gpu } })),
    ];
    if (spec.status) {
      entries.push({ binding: bufs.length + 1, resource: { buffer: this.statusBuffer } });
      this.statusDirty = true;
    }
    const group = this.device.createBindGroup({ layout: p.layout, entries });
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    this.pass.setPipeline(p.pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(gx, gy, gz);
    if (++this.recorded >= this.batchLimit) this.flush();
  }

  /** Submits the recorded work (after writing its arguments). */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.argsBuffer, 0, this.arena, 0, this.arenaUsed);
    this.arenaUsed = 0;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.recorded = 0;
    for (const g of this.toDestroy.splice(0)) g.destroy();
  }

  private checkStatus(words: Uint32Array): void {
    const [code, pos, value, limit] = [words[0]!, words[1]!, words[2]! | 0, words[3]!];
    if (code === 0) return;
    this.device.queue.writeBuffer(this.statusBuffer, 0, new Uint32Array(4));
    if (code === STATUS_BAD_TOKEN) throw new RangeError(`token id ${value} at position ${pos} is outside the vocabulary [0, ${limit})`);
    if (code === STATUS_BAD_TARGET) throw new RangeError(`target ${value} at position ${pos} is outside the vocabulary [0, ${limit})`);
    throw new InternalError(`webgpu: a kernel reported status ${code}`);
  }

  private throwIfFailed(): void {
    if (this.lost) throw new LongLoraError(this.lost);
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw new InternalError(`webgpu: ${e}`);
    }
  }

  private checkAlive(): void {
    if (this.lost) throw new LongLoraError(this.lost);
  }

  private own(buf: DeviceBuffer): GpuBuffer {
    if (!(buf instanceof GpuBuffer)) throw new InternalError(`webgpu: buffer from backend '${buf.backend}'`);
    if (buf.freed) throw new InternalError('webgpu: use of a freed buffer');
    return buf;
  }

  /** A float operand in any of the storages the kernels read and write (f32, f16, bf16). */
  private fl(buf: DeviceBuffer): GpuBuffer & { readonly dtype: FStore } {
    const b = this.own(buf);
    fstore(b.dtype, 'kernel');
    return b as GpuBuffer & { readonly dtype: FStore };
  }

  private f32(buf: DeviceBuffer): GpuBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'f32') throw new InternalError(`webgpu: kernel needs f32, got ${b.dtype}`);
    return b;
  }

  private sameNumel(kernel: string, ...bufs: GpuBuffer[]): void {
    const n = bufs[0]!.numel;
    if (bufs.some((b) => b.numel !== n)) throw new InternalError(`webgpu.${kernel}: operands of ${bufs.map((b) => b.numel).join(', ')} elements differ`);
  }

  private u8(buf: DeviceBuffer): GpuBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'u8') throw new InternalError(`webgpu: kernel needs u8 bytes, got ${b.dtype}`);
    return b;
  }

  private i32(buf: DeviceBuffer): GpuBuffer {
    const b = this.own(buf);
    if (b.dtype !== 'i32') throw new InternalError(`webgpu: kernel needs i32 ids, got ${b.dtype}`);
    return b;
  }
}

/** Requests an adapter and device and returns the backend; throws a LongLoraError naming what is missing. */
/** The subgroup-matrix plan for a device and options, or why there is none ('' when not asked for). */
function planSubgroupMatrix(acq: AcquiredDevice, opts: WebGpuBackendOptions, storage: number, maxThreads: number): { plan: SgmPlan | null; reason: string } {
  const { subgroupSize: size, subgroupMatrix: configs, f16 } = acq.features;
  if (opts.emulateSubgroupMatrix) {
    if (!size || !f16) return { plan: null, reason: 'emulation needs the subgroups and shader-f16 features' };
    return sgmPlan([{ componentType: 'f16', resultComponentType: 'f32', M: 8, N: 8, K: 8 }], size.min, size.max, storage, maxThreads, true);
  }
  if (!opts.subgroupMatrix) return { plan: null, reason: '' };
  if (!configs) {
    return { plan: null, reason: 'the adapter does not offer chromium-experimental-subgroup-matrix' + (f16 && size ? '' : ' (it needs shader-f16 and subgroups)') };
  }
  return sgmPlan(configs, size!.min, size!.max, storage, maxThreads);
}

export async function createWebGpuBackend(opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  return new WebGpuBackend(await acquireDevice(opts), opts);
}
