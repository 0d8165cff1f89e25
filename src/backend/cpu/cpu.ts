/**
 * The CPU reference backend: every kernel as plain TypeScript loops over typed arrays.
 * Slow and simple on purpose: it is the oracle that every faster backend is tested
 * against. It computes in f32 or f64 (for finite-difference gradient checks).
 */
import type {
  AdamWArgs, AttentionArgs, Backend, BinaryOp, CopyArgs, Dequantize4bitArgs, DeviceBuffer, MatmulArgs, MemoryStats, UnaryOp,
} from '../backend.js';
import { MemoryCounter } from '../backend.js';
import { gatherSameDType, widenStorage16 } from '../storage16.js';
import type { DType, HostArray } from '../../tensor/dtype.js';
import { allocHost, f32ToBf16Bits, f32ToF16Bits, hostMatches, itemSize } from '../../tensor/dtype.js';
import { InternalError } from '../../errors.js';
import * as ew from './elementwise.js';
import { matmul } from './matmul.js';
import * as norm from './norm.js';
import { rope } from './rope.js';
import { gather, scatterAdd } from './embedding.js';
import { attention, attentionBackward } from './attention.js';
import { crossEntropy, crossEntropyBackward } from './loss.js';
import { adamw } from './optim.js';
import { dequantize4bit } from './quant.js';

type F = ew.F;

class CpuBuffer implements DeviceBuffer {
  readonly backend = 'cpu';
  freed = false;
  constructor(readonly dtype: DType, readonly data: HostArray) {}
  get numel(): number { return this.data.length; }
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly supportsF64 = true;
  private readonly mem = new MemoryCounter();

  describe(): string {
    return 'plain TypeScript loops, f32 and f64 (the reference the other backends are tested against)';
  }

  constructor() {
    // 16-bit operands: gather copies 16-bit rows as they are; every other kernel widens them to f32 (storage16.ts).
    widenStorage16(this, { native: { gather: gatherSameDType }, reads: [] });
  }

  alloc(dtype: DType, numel: number): DeviceBuffer {
    const buf = new CpuBuffer(dtype, allocHost(dtype, numel));
    this.mem.add(numel * itemSize(dtype));
    return buf;
  }

  free(buf: DeviceBuffer): void {
    const b = this.own(buf);
    if (b.freed) throw new InternalError('cpu: buffer freed twice');
    b.freed = true;
    this.mem.remove(b.numel * itemSize(b.dtype));
  }

  upload(buf: DeviceBuffer, data: HostArray): void {
    const b = this.own(buf);
    if (!hostMatches(b.dtype, data) || data.length !== b.numel) {
      throw new InternalError(`cpu.upload: ${data.constructor.name}[${data.length}] into ${b.dtype}[${b.numel}]`);
    }
    b.data.set(data as never);
  }

  download(buf: DeviceBuffer): Promise<HostArray> {
    return Promise.resolve(this.own(buf).data.slice());
  }

  sync(): Promise<void> { return Promise.resolve(); }
  memory(): MemoryStats { return this.mem.stats(); }
  resetPeak(): void { this.mem.resetPeak(); }

  fill(out: DeviceBuffer, value: number): void {
    const b = this.own(out);
    b.data.fill(b.dtype === 'f16' ? f32ToF16Bits(value) : b.dtype === 'bf16' ? f32ToBf16Bits(value) : value);
  }
  copy(src: DeviceBuffer, dst: DeviceBuffer, args: CopyArgs): void {
    ew.copyStrided(this.own(src).data, this.own(dst).data, args);
  }
  cast(src: DeviceBuffer, dst: DeviceBuffer): void {
    const s = this.own(src);
    const d = this.own(dst);
    ew.cast(s.data, s.dtype, d.data, d.dtype);
  }
  unary(op: UnaryOp, x: DeviceBuffer, out: DeviceBuffer): void { ew.unary(op, this.f(x), this.f(out)); }
  unaryBackward(op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer): void {
    ew.unaryBackward(op, this.f(x), this.f(dy), this.f(dx));
  }
  binary(op: BinaryOp, a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer): void {
    ew.binary(op, this.f(a), this.f(b), this.f(out));
  }
  swiglu(gate: DeviceBuffer, up: DeviceBuffer, out: DeviceBuffer): void {
    ew.swiglu(this.f(gate), this.f(up), this.f(out));
  }
  swigluBackward(gate: DeviceBuffer, up: DeviceBuffer, dout: DeviceBuffer, dgate: DeviceBuffer | null, dup: DeviceBuffer | null): void {
    ew.swigluBackward(this.f(gate), this.f(up), this.f(dout), dgate ? this.f(dgate) : null, dup ? this.f(dup) : null);
  }
  affine(x: DeviceBuffer, alpha: number, beta: number, out: DeviceBuffer): void {
    ew.affine(this.f(x), alpha, beta, this.f(out));
  }
  reduceSum(x: DeviceBuffer, out: DeviceBuffer, outer: number, size: number, inner: number): void {
    ew.reduceSum(this.f(x), this.f(out), outer, size, inner);
  }
  matmul(a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer, args: MatmulArgs): void {
    matmul(this.f(a), this.f(b), this.f(out), args);
  }
  softmax(x: DeviceBuffer, out: DeviceBuffer, rows: number, cols: number): void {
    norm.softmax(this.f(x), this.f(out), rows, cols);
  }
  softmaxBackward(y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, rows: number, cols: number): void {
    norm.softmaxBackward(this.f(y), this.f(dy), this.f(dx), rows, cols);
  }
  rmsnorm(x: DeviceBuffer, w: DeviceBuffer, out: DeviceBuffer, rstd: DeviceBuffer, rows: number, C: number, eps: number): void {
    norm.rmsnorm(this.f(x), this.f(w), this.f(out), this.f(rstd), rows, C, eps);
  }
  rmsnormBackward(x: DeviceBuffer, w: DeviceBuffer, rstd: DeviceBuffer, dy: DeviceBuffer,
    dx: DeviceBuffer, dw: DeviceBuffer | null, rows: number, C: number): void {
    norm.rmsnormBackward(this.f(x), this.f(w), this.f(rstd), this.f(dy), this.f(dx), dw ? this.f(dw) : null, rows, C);
  }
  rope(x: DeviceBuffer, cos: DeviceBuffer, sin: DeviceBuffer, out: DeviceBuffer,
    B: number, N: number, H: number, D: number, inverse: boolean): void {
    rope(this.f(x), this.f(cos), this.f(sin), this.f(out), B, N, H, D, inverse);
  }
  gather(table: DeviceBuffer, ids: DeviceBuffer, out: DeviceBuffer, V: number, C: number, T: number): void {
    const [t, o] = [this.own(table), this.own(out)];
    if (t.dtype !== o.dtype) throw new InternalError(`cpu.gather: ${t.dtype} table into ${o.dtype} rows`);
    gather(t.data as F, this.i(ids), o.data as F, V, C, T); // copies elements of any one dtype
  }
  scatterAdd(dy: DeviceBuffer, ids: DeviceBuffer, dtable: DeviceBuffer, V: number, C: number, T: number): void {
    scatterAdd(this.f(dy), this.i(ids), this.f(dtable), V, C, T);
  }
  attention(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer, args: AttentionArgs): void {
    attention(this.f(q), this.f(k), this.f(v), this.f(out), this.f(lse), args);
  }
  attentionBackward(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer,
    dout: DeviceBuffer, dq: DeviceBuffer, dk: DeviceBuffer, dv: DeviceBuffer, args: AttentionArgs): void {
    attentionBackward(this.f(q), this.f(k), this.f(v), this.f(out), this.f(lse), this.f(dout),
      this.f(dq), this.f(dk), this.f(dv), args);
  }
  crossEntropy(logits: DeviceBuffer, targets: DeviceBuffer, losses: DeviceBuffer, lse: DeviceBuffer,
    T: number, V: number, ignoreIndex: number): void {
    crossEntropy(this.f(logits), this.i(targets), this.f(losses), this.f(lse), T, V, ignoreIndex);
  }
  crossEntropyBackward(logits: DeviceBuffer, targets: DeviceBuffer, lse: DeviceBuffer, dlosses: DeviceBuffer,
    dlogits: DeviceBuffer, T: number, V: number, ignoreIndex: number): void {
    crossEntropyBackward(this.f(logits), this.i(targets), this.f(lse), this.f(dlosses), this.f(dlogits), T, V, ignoreIndex);
  }

  adamw(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, args: AdamWArgs): void {
    adamw(this.f(p), this.f(g), this.f(m), this.f(v), args);
  }

  dequantize4bit(packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, args: Dequantize4bitArgs): void {
    dequantize4bit(this.u8(packed), this.f(code4), this.u8(scaleCodes), this.f(code8), this.f(scaleAbsmax), this.f(out), args);
  }

  private own(buf: DeviceBuffer): CpuBuffer {
    if (!(buf instanceof CpuBuffer)) throw new InternalError(`cpu: buffer from backend '${buf.backend}'`);
    if (buf.freed) throw new InternalError('cpu: use of a freed buffer');
    return buf;
  }

  /** A compute (f32/f64) buffer's array. */
  private f(buf: DeviceBuffer): F {
    const b = this.own(buf);
    if (b.dtype !== 'f32' && b.dtype !== 'f64') throw new InternalError(`cpu: kernel needs f32/f64, got ${b.dtype}`);
    return b.data as F;
  }

  private u8(buf: DeviceBuffer): Uint8Array {
    const b = this.own(buf);
    if (b.dtype !== 'u8') throw new InternalError(`cpu: kernel needs u8 bytes, got ${b.dtype}`);
    return b.data as Uint8Array;
  }

  private i(buf: DeviceBuffer): Int32Array {
    const b = this.own(buf);
    if (b.dtype !== 'i32') throw new InternalError(`cpu: kernel needs i32 ids, got ${b.dtype}`);
    return b.data as Int32Array;
  }
}
