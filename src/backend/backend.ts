/**
 * The backend interface: a small set of kernels over device-resident buffers.
 *
 * It is shaped for an asynchronous GPU backend from the start:
 * - buffers live on the device and are opaque to callers (`DeviceBuffer`);
 * - every kernel call only *enqueues* work and returns nothing, so a GPU backend can
 *   record many dispatches without a host round trip;
 * - the only way back to the host is `download`, which is async;
 * - kernels are addressed by name with plain-data arguments, so a backend can prepare
 *   (compile) a pipeline once per argument signature and reuse it.
 *
 * The CPU reference backend (`backend/cpu/`) implements every kernel as plain loops and
 * is the oracle for all other backends. Shapes use fixed letters: B batch, N tokens,
 * H query heads, Hkv key/value heads, D head dim, C channels, V vocabulary.
 *
 * Buffers hold a whole number of elements of one dtype; offsets and sizes in kernel
 * arguments are in elements. Unless a kernel says otherwise, inputs and outputs must not
 * overlap. Kernels compute in f32, or in f64 where `supportsF64` (then every float operand
 * is f64). Float operands may also be stored as f16 or bf16, mixed freely with f32: they are
 * read as f32 and each result is rounded to its output's dtype (mixed precision;
 * `storage16.ts` gives any f32 kernel this behaviour by widening).
 */
import type { DType, HostArray } from '../tensor/dtype.js';

/** Opaque handle to device memory. Only the backend that made it may use it. */
export interface DeviceBuffer {
  readonly backend: string;
  readonly dtype: DType;
  readonly numel: number;
}

export interface MemoryStats {
  /** Live buffers. */
  buffers: number;
  /** Bytes held by live buffers. */
  bytes: number;
  /** Highest `bytes` since the backend started or `resetPeak()`. */
  peakBytes: number;
}

/** The live-buffer count and byte high-water mark every backend keeps for `memory()`. */
export class MemoryCounter {
  private live = 0;
  private bytes = 0;
  private peak = 0;

  /** A buffer of `bytes` was allocated. */
  add(bytes: number): void {
    this.live++;
    this.bytes += bytes;
    this.peak = Math.max(this.peak, this.bytes);
  }

  /** A buffer of `bytes` was freed. */
  remove(bytes: number): void {
    this.live--;
    this.bytes -= bytes;
  }

  stats(): MemoryStats { return { buffers: this.live, bytes: this.bytes, peakBytes: this.peak }; }
  resetPeak(): void { this.peak = this.bytes; }
}

export type UnaryOp = 'neg' | 'exp' | 'log' | 'silu' | 'sigmoid' | 'square' | 'sqrt' | 'tanh' | 'relu';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';

/** out[b] = alpha · op(A[b]) · op(B[b]) + beta · out[b]; op(A) is [m,k], op(B) is [k,n]. */
export interface MatmulArgs {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [k, m] and read transposed. */
  transA: boolean;
  /** B is stored [n, k] and read transposed (the `x · Wᵀ` of a linear layer). */
  transB: boolean;
  alpha: number;
  /** 0 overwrites `out`; 1 accumulates into it. */
  beta: number;
  /** Elements between consecutive batch entries of A, B; 0 broadcasts one matrix. */
  strideA: number;
  strideB: number;
}

/**
 * An N-d strided copy: for every index `idx` of `shape`,
 * `dst[dstOffset + Σ idx·dstStrides] (+)= src[srcOffset + Σ idx·srcStrides]`.
 * Permute, broadcast (stride 0 in src), slice and write-into-slice are all this kernel;
 * with `accumulate` and stride 0 in dst it is the reduction that undoes a broadcast.
 */
export interface CopyArgs {
  shape: readonly number[];
  srcOffset: number;
  srcStrides: readonly number[];
  dstOffset: number;
  dstStrides: readonly number[];
  accumulate: boolean;
}

/**
 * Which keys a query may attend to. Positions are absolute token indices: query row i
 * sits at position `qOffset + i`; key j at position j.
 * - `causal`: dense causal attention, key ≤ query.
 * - `s2`: shifted sparse attention (SPEC §2) with group size `group`:
 *   `segmented` (leak-free, default), `roll` (the paper's pseudocode), `short` (no shift).
 */
export type AttentionMask =
  | { kind: 'causal' }
  | { kind: 's2'; form: 'segmented' | 'roll' | 'short'; group: number };

/**
 * q [B, Nq, H, D], out [B, Nq, H, D], lse [B, H, Nq]; k and v hold `kvStride` rows per
 * batch entry ([B, kvStride, Hkv, D]) of which the first Nk are keys (kvStride > Nk for a
 * preallocated KV cache; kvStride = Nk otherwise).
 */
export interface AttentionArgs {
  B: number;
  Nq: number;
  Nk: number;
  kvStride: number;
  H: number;
  Hkv: number;
  D: number;
  scale: number;
  qOffset: number;
  mask: AttentionMask;
}

/** Hyper-parameters of one AdamW update (torch.optim.AdamW semantics). */
export interface AdamWArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/**
 * Blockwise 4-bit lookup dequantisation with double-quantised block scales: the QLoRA NF4
 * format (`src/quant/nf4.ts` documents the layout and how it is produced). For element i
 * of the `n`-element output, with b = ⌊i / blockSize⌋:
 *
 *   scale[b] = f32(f32(code8[scaleCodes[b]] · scaleAbsmax[⌊b / scaleBlockSize⌋]) + scaleOffset)
 *   out[i]   = f32(code4[nibble(i)] · scale[b])
 *
 * where f32(·) rounds to float32 (every product and sum is one float32 operation, so all
 * backends agree bit for bit), and nibble(i) is the HIGH nibble of packed[⌊i/2⌋] for even i
 * and the LOW nibble for odd i (bitsandbytes' order). `out` may be f32 or f64 (f64 holds the
 * same float32 values). The last block may be shorter than `blockSize`.
 */
export interface Dequantize4bitArgs {
  /** Elements of the output. */
  n: number;
  /** Elements per 4-bit block (64 for NF4); one scale per block. */
  blockSize: number;
  /** Scales per block of the 8-bit scale quantisation (256); one scaleAbsmax per such block. */
  scaleBlockSize: number;
  /** Added to every dequantised scale: the mean subtracted before the scales were quantised. */
  scaleOffset: number;
}

/**
 * A linear layer over a 4-bit weight without expanding it: out [m, n] = x [m, k] · Ŵᵀ, Ŵ
 * [n, k] the weight of `Dequantize4bitArgs` (n·k elements, row-major, blocks counted over
 * the flattened weight). The blockwise fields are those of `Dequantize4bitArgs`.
 */
export interface Linear4bitArgs {
  m: number;
  n: number;
  k: number;
  blockSize: number;
  scaleBlockSize: number;
  scaleOffset: number;
}

export interface Backend {
  readonly name: string;
  /** What the backend runs on, in one line (`longlora backends`). */
  describe?(): string;
  /** Whether kernels accept f64 operands (the CPU reference backend, for gradient checks). */
  readonly supportsF64: boolean;

  alloc(dtype: DType, numel: number): DeviceBuffer;
  free(buf: DeviceBuffer): void;
  /** Enqueues a host → device copy; `data` is read before the call returns. */
  upload(buf: DeviceBuffer, data: HostArray): void;
  /** Resolves with a host copy of `buf` once all earlier work has finished. */
  download(buf: DeviceBuffer): Promise<HostArray>;
  /** Resolves when all enqueued work has finished. */
  sync(): Promise<void>;
  memory(): MemoryStats;
  resetPeak(): void;

  fill(out: DeviceBuffer, value: number): void;
  copy(src: DeviceBuffer, dst: DeviceBuffer, args: CopyArgs): void;
  /** Converts between float dtypes (f16/bf16 round to nearest even) and i32 ↔ float. */
  cast(src: DeviceBuffer, dst: DeviceBuffer): void;
  unary(op: UnaryOp, x: DeviceBuffer, out: DeviceBuffer): void;
  /** dx = dy · op'(x). */
  unaryBackward(op: UnaryOp, x: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer): void;
  /** out[i] = a[i] ∘ b[i mod b.numel]; `out` may be `a` (in-place update). */
  binary(op: BinaryOp, a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer): void;
  /** out = alpha · x + beta; `out` may be `x`. */
  affine(x: DeviceBuffer, alpha: number, beta: number, out: DeviceBuffer): void;
  /** x viewed as [outer, size, inner]; out[o, i] = Σ_r x[o, r, i]. */
  reduceSum(x: DeviceBuffer, out: DeviceBuffer, outer: number, size: number, inner: number): void;
  matmul(a: DeviceBuffer, b: DeviceBuffer, out: DeviceBuffer, args: MatmulArgs): void;

  /** Row softmax over the last dim of x [rows, cols]. */
  softmax(x: DeviceBuffer, out: DeviceBuffer, rows: number, cols: number): void;
  softmaxBackward(y: DeviceBuffer, dy: DeviceBuffer, dx: DeviceBuffer, rows: number, cols: number): void;

  /** out = x · rsqrt(mean(x²) + eps) · w over rows of x [rows, C]; rstd [rows] saved. */
  rmsnorm(x: DeviceBuffer, w: DeviceBuffer, out: DeviceBuffer, rstd: DeviceBuffer, rows: number, C: number, eps: number): void;
  /** dx written; dw accumulated (+=) when given. */
  rmsnormBackward(
    x: DeviceBuffer, w: DeviceBuffer, rstd: DeviceBuffer, dy: DeviceBuffer,
    dx: DeviceBuffer, dw: DeviceBuffer | null, rows: number, C: number,
  ): void;

  /**
   * Rotate-half RoPE on x [B, N, H, D] with tables cos, sin [N, D/2] (row n = the angles
   * of token n). `inverse` rotates by the negative angle (the backward pass).
   */
  rope(x: DeviceBuffer, cos: DeviceBuffer, sin: DeviceBuffer, out: DeviceBuffer,
    B: number, N: number, H: number, D: number, inverse: boolean): void;

  /** out[t] = table[ids[t]] for table [V, C], ids i32 [T], out [T, C]. */
  gather(table: DeviceBuffer, ids: DeviceBuffer, out: DeviceBuffer, V: number, C: number, T: number): void;
  /** dtable[ids[t]] += dy[t]: the embedding gradient. */
  scatterAdd(dy: DeviceBuffer, ids: DeviceBuffer, dtable: DeviceBuffer, V: number, C: number, T: number): void;

  /** Softmax attention; lse [B, H, Nq] is the log-sum-exp of each row's scaled scores. */
  attention(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer,
    args: AttentionArgs): void;
  /** dq, dk, dv written (not accumulated). */
  attentionBackward(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer,
    lse: DeviceBuffer, dout: DeviceBuffer, dq: DeviceBuffer, dk: DeviceBuffer, dv: DeviceBuffer,
    args: AttentionArgs): void;

  /**
   * Per-row cross-entropy of logits [T, V] against i32 targets [T]:
   * losses[t] = lse[t] − logits[t, target]; 0 where target == ignoreIndex.
   */
  crossEntropy(logits: DeviceBuffer, targets: DeviceBuffer, losses: DeviceBuffer, lse: DeviceBuffer,
    T: number, V: number, ignoreIndex: number): void;
  /** dlogits[t] = dlosses[t] · (softmax(logits[t]) − onehot(target)); 0 rows where ignored. */
  crossEntropyBackward(logits: DeviceBuffer, targets: DeviceBuffer, lse: DeviceBuffer,
    dlosses: DeviceBuffer, dlogits: DeviceBuffer, T: number, V: number, ignoreIndex: number): void;

  /**
   * One AdamW step, in place on p, m, v: p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
   * v ← β2·v + (1−β2)·g²; p ← p − lr·m̂/(√v̂ + eps) with bias-corrected m̂, v̂.
   */
  adamw(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, args: AdamWArgs): void;

  /**
   * Dequantises a 4-bit weight (see `Dequantize4bitArgs`): packed u8 [⌈n/2⌉], code4 f32 [16]
   * (the 4-bit code book), scaleCodes u8 [⌈n/blockSize⌉], code8 f32 [256] (the 8-bit code
   * book of the scales), scaleAbsmax f32 [⌈scaleCodes/scaleBlockSize⌉] → out f32|f64 [n].
   * Frozen quantised linear layers call it once per use (forward and input gradient); a
   * fast backend may later fuse it into the matmul.
   */
  dequantize4bit(packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, args: Dequantize4bitArgs): void;

  /**
   * Optional fused SwiGLU gate of the Llama MLP: out = silu(gate) ⊙ up, all of one size.
   * It saves one intermediate per MLP for the backward pass; where a backend lacks it the
   * op (`nn/swiglu.ts`) composes `unary('silu')` and `binary('mul')` instead.
   */
  swiglu?(gate: DeviceBuffer, up: DeviceBuffer, out: DeviceBuffer): void;

  /**
   * Optional fused 4-bit linear layer (see `Linear4bitArgs`): x f32 [m, k] → out f32 [m, n],
   * reading the packed weight as `dequantize4bit` does, with no [n, k] temporary. A backend
   * runs it where it is faster than expanding the weight (a few rows of x: decoding) and
   * returns false, writing nothing, where it is not; the caller then dequantises.
   */
  linear4bit?(x: DeviceBuffer, packed: DeviceBuffer, code4: DeviceBuffer, scaleCodes: DeviceBuffer, code8: DeviceBuffer,
    scaleAbsmax: DeviceBuffer, out: DeviceBuffer, args: Linear4bitArgs): boolean;
  /** dgate = dout ⊙ up ⊙ silu'(gate) and dup = dout ⊙ silu(gate), each written when given. */
  swigluBackward?(gate: DeviceBuffer, up: DeviceBuffer, dout: DeviceBuffer, dgate: DeviceBuffer | null, dup: DeviceBuffer | null): void;
}
