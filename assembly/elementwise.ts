/**
 * Elementwise kernels: fill, strided copy, cast, unary (+ derivative), binary with the
 * second operand repeating, affine, and the [outer, size, inner] sum.
 *
 * Layout and chunking. These kernels see flat arrays. A chunk is a range of `per`
 * elements (a multiple of 4, chosen by the host) — or of rows for the kernels that work
 * on rows. Vector loops run over whole f32x4; the last vector of a buffer may run past
 * its last element into the allocation's padding (the allocator rounds every block up to
 * 64 bytes), which is never read back as data. A kernel whose output is a sub-range of a
 * buffer (copy) never does that.
 */
import { argF, argI, argP, madd } from './simd';
import { exp4, log4, sigmoid4, tanh4 } from './math';
import { f16ToF32, f32ToBf16, f32ToF16, ld1, ld4, narrowBf16, narrowF16, st1, st4, widenBf16, widenF16 } from './half';

// ---- fill -------------------------------------------------------------------------------

/** Args: 0 out, 1 n, 2 bit pattern, 3 element bytes (4, 2, 1), 4 per. */
export function fill(args: usize, chunk: i32, _tid: i32): void {
  const out = argP(args, 0);
  const n = argI(args, 1);
  const bits = argI(args, 2);
  const size = argI(args, 3);
  const per = argI(args, 4);
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  if (size == 4) {
    const v = i32x4.splat(bits);
    let i = i0;
    for (; i + 4 <= i1; i += 4) v128.store(out + (<usize>i << 2), v);
    for (; i < i1; i++) store<i32>(out + (<usize>i << 2), bits);
  } else if (size == 2) {
    for (let i = i0; i < i1; i++) store<u16>(out + (<usize>i << 1), <u16>bits);
  } else {
    memory.fill(out + <usize>i0, <u8>bits, <usize>(i1 - i0));
  }
}

// ---- strided copy -----------------------------------------------------------------------

/**
 * dst[dstOffset + Σ idx·dstStrides] (+)= src[srcOffset + Σ idx·srcStrides] over `shape`.
 * The host has merged contiguous axes and dropped size-1 ones. The last axis is the inner
 * loop; chunks are ranges of the other axes' flattened index ("rows").
 * Args: 0 src, 1 dst, 2 element bytes, 3 accumulate (f32 only), 4 rank, 5 srcOffset,
 * 6 dstOffset, 7 rows, 8 rows per chunk, 10.. shape, 18.. src strides, 26.. dst strides.
 */
export function copy(args: usize, chunk: i32, _tid: i32): void {
  const src = argP(args, 0);
  const dst = argP(args, 1);
  const size = argI(args, 2);
  const acc = argI(args, 3) != 0;
  const rank = argI(args, 4);
  const rows = argI(args, 7);
  const per = argI(args, 8);
  const r0 = chunk * per;
  const r1 = min(rows, r0 + per);
  const inner = argI(args, 10 + rank - 1);
  const ss = argI(args, 18 + rank - 1);
  const ds = argI(args, 26 + rank - 1);
  for (let r = r0; r < r1; r++) {
    // offsets of row r: decompose its index over the outer axes
    let so = argI(args, 5);
    let dof = argI(args, 6);
    let rem = r;
    for (let ax = rank - 2; ax >= 0; ax--) {
      const s = argI(args, 10 + ax);
      const idx = rem % s;
      rem /= s;
      so += idx * argI(args, 18 + ax);
      dof += idx * argI(args, 26 + ax);
    }
    copyRow(src, so, ss, dst, dof, ds, inner, size, acc);
  }
}

function copyRow(src: usize, so: i32, ss: i32, dst: usize, dof: i32, ds: i32, n: i32, size: i32, acc: bool): void {
  if (acc) {
    const s = src + (<usize>so << 2);
    const d = dst + (<usize>dof << 2);
    if (ss == 1 && ds == 1) {
      let i = 0;
      for (; i + 4 <= n; i += 4) {
        const o = <usize>i << 2;
        v128.store(d + o, f32x4.add(v128.load(d + o), v128.load(s + o)));
      }
      for (; i < n; i++) store<f32>(d + (<usize>i << 2), load<f32>(d + (<usize>i << 2)) + load<f32>(s + (<usize>i << 2)));
    } else if (ds == 0) {
      let sum: f32 = 0;
      for (let i = 0; i < n; i++) sum += load<f32>(s + ((<usize>i * <usize>ss) << 2));
      store<f32>(d, load<f32>(d) + sum);
    } else {
      for (let i = 0; i < n; i++) {
        const dp = d + ((<usize>i * <usize>ds) << 2);
        store<f32>(dp, load<f32>(dp) + load<f32>(s + ((<usize>i * <usize>ss) << 2)));
      }
    }
    return;
  }
  if (ss == 1 && ds == 1) {
    memory.copy(dst + <usize>dof * <usize>size, src + <usize>so * <usize>size, <usize>n * <usize>size);
    return;
  }
  if (size == 4) {
    for (let i = 0; i < n; i++) store<u32>(dst + ((<usize>dof + <usize>i * <usize>ds) << 2), load<u32>(src + ((<usize>so + <usize>i * <usize>ss) << 2)));
  } else if (size == 2) {
    for (let i = 0; i < n; i++) store<u16>(dst + ((<usize>dof + <usize>i * <usize>ds) << 1), load<u16>(src + ((<usize>so + <usize>i * <usize>ss) << 1)));
  } else if (size == 8) {
    for (let i = 0; i < n; i++) store<u64>(dst + ((<usize>dof + <usize>i * <usize>ds) << 3), load<u64>(src + ((<usize>so + <usize>i * <usize>ss) << 3)));
  } else {
    for (let i = 0; i < n; i++) store<u8>(dst + <usize>dof + <usize>i * <usize>ds, load<u8>(src + <usize>so + <usize>i * <usize>ss));
  }
}

// ---- cast -------------------------------------------------------------------------------

// dtype codes shared with the host (src/backend/wasm/kernels.ts)
const F32 = 0, F16 = 1, BF16 = 2, I32 = 3, U8 = 4, F64 = 5;

function readAt(p: usize, i: i32, t: i32): f64 {
  switch (t) {
    case F32: return <f64>load<f32>(p + (<usize>i << 2));
    case F16: return <f64>f16ToF32(<u32>load<u16>(p + (<usize>i << 1)));
    case BF16: return <f64>reinterpret<f32>(<u32>load<u16>(p + (<usize>i << 1)) << 16);
    case I32: return <f64>load<i32>(p + (<usize>i << 2));
    case U8: return <f64>load<u8>(p + <usize>i);
    default: return load<f64>(p + (<usize>i << 3));
  }
}

function writeAt(p: usize, i: i32, t: i32, v: f64): void {
  switch (t) {
    case F32: store<f32>(p + (<usize>i << 2), <f32>v); break;
    case F16: store<u16>(p + (<usize>i << 1), <u16>f32ToF16(<f32>v)); break;
    case BF16: store<u16>(p + (<usize>i << 1), <u16>f32ToBf16(<f32>v)); break;
    case I32: store<i32>(p + (<usize>i << 2), <i32>v); break;
    case U8: store<u8>(p + <usize>i, <u8><i32>v); break;
    default: store<f64>(p + (<usize>i << 3), v);
  }
}

/** Args: 0 src, 1 dst, 2 src type, 3 dst type, 4 n, 5 per. */
export function cast(args: usize, chunk: i32, _tid: i32): void {
  const src = argP(args, 0);
  const dst = argP(args, 1);
  const st = argI(args, 2);
  const dt = argI(args, 3);
  const n = argI(args, 4);
  const per = argI(args, 5);
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  if (st == BF16 && dt == F32) { widenBf16(src + (<usize>i0 << 1), dst + (<usize>i0 << 2), i1 - i0); return; }
  if (st == F32 && dt == BF16) { narrowBf16(src + (<usize>i0 << 2), dst + (<usize>i0 << 1), i1 - i0, 1); return; }
  if (st == F16 && dt == F32) { widenF16(src + (<usize>i0 << 1), dst + (<usize>i0 << 2), i1 - i0); return; }
  if (st == F32 && dt == F16) { narrowF16(src + (<usize>i0 << 2), dst + (<usize>i0 << 1), i1 - i0, 1); return; }
  let i = i0;
  for (; i < i1; i++) writeAt(dst, i, dt, readAt(src, i, st));
}

// ---- unary ------------------------------------------------------------------------------

// op codes shared with the host
const NEG = 0, EXP = 1, LOG = 2, SILU = 3, SIGMOID = 4, SQUARE = 5, SQRT = 6, TANH = 7, RELU = 8;

// @ts-ignore: decorator
@inline function unaryOp(op: i32, x: v128): v128 {
  switch (op) {
    case NEG: return f32x4.neg(x);
    case EXP: return exp4(x);
    case LOG: return log4(x);
    case SILU: return f32x4.mul(x, sigmoid4(x));
    case SIGMOID: return sigmoid4(x);
    case SQUARE: return f32x4.mul(x, x);
    case SQRT: return f32x4.sqrt(x);
    case TANH: return tanh4(x);
    default: return v128.and(x, f32x4.gt(x, f32x4.splat(0))); // relu: x > 0 ? x : 0 (NaN → 0)
  }
}

/** dy · op'(x). */
// @ts-ignore: decorator
@inline function unaryGrad(op: i32, x: v128, dy: v128): v128 {
  switch (op) {
    case NEG: return f32x4.neg(dy);
    case EXP: return f32x4.mul(dy, exp4(x));
    case LOG: return f32x4.div(dy, x);
    case SILU: {
      const s = sigmoid4(x);
      return f32x4.mul(dy, f32x4.mul(s, madd(x, f32x4.sub(f32x4.splat(1), s), f32x4.splat(1))));
    }
    case SIGMOID: {
      const s = sigmoid4(x);
      return f32x4.mul(dy, f32x4.mul(s, f32x4.sub(f32x4.splat(1), s)));
    }
    case SQUARE: return f32x4.mul(dy, f32x4.add(x, x));
    case SQRT: return f32x4.div(f32x4.mul(dy, f32x4.splat(0.5)), f32x4.sqrt(x));
    case TANH: {
      const t = tanh4(x);
      return f32x4.mul(dy, f32x4.sub(f32x4.splat(1), f32x4.mul(t, t)));
    }
    default: return v128.and(dy, f32x4.gt(x, f32x4.splat(0))); // relu
  }
}

/**
 * Args: 0 op, 1 x, 2 out, 3 n, 4 per; 5, 6 whether x, out are bf16. The last vector may
 * run into the padding.
 */
export function unary(args: usize, chunk: i32, _tid: i32): void {
  const op = argI(args, 0);
  const x = argP(args, 1);
  const out = argP(args, 2);
  const n = argI(args, 3);
  const per = argI(args, 4);
  const xb = argI(args, 5) != 0, ob = argI(args, 6) != 0;
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  switch (op) {
    case NEG: unaryLoop(NEG, x, out, i0, i1, xb, ob); break;
    case EXP: unaryLoop(EXP, x, out, i0, i1, xb, ob); break;
    case LOG: unaryLoop(LOG, x, out, i0, i1, xb, ob); break;
    case SILU: unaryLoop(SILU, x, out, i0, i1, xb, ob); break;
    case SIGMOID: unaryLoop(SIGMOID, x, out, i0, i1, xb, ob); break;
    case SQUARE: unaryLoop(SQUARE, x, out, i0, i1, xb, ob); break;
    case SQRT: unaryLoop(SQRT, x, out, i0, i1, xb, ob); break;
    case TANH: unaryLoop(TANH, x, out, i0, i1, xb, ob); break;
    default: unaryLoop(RELU, x, out, i0, i1, xb, ob);
  }
}

// @ts-ignore: decorator
@inline function unaryLoop(op: i32, x: usize, out: usize, i0: i32, i1: i32, xb: bool, ob: bool): void {
  for (let i = i0; i < i1; i += 4) st4(out, i, ob, unaryOp(op, ld4(x, i, xb)));
}

/** Args: 0 op, 1 x, 2 dy, 3 dx, 4 n, 5 per; 6–8 whether x, dy, dx are bf16. */
export function unaryBackward(args: usize, chunk: i32, _tid: i32): void {
  const op = argI(args, 0);
  const x = argP(args, 1);
  const dy = argP(args, 2);
  const dx = argP(args, 3);
  const n = argI(args, 4);
  const per = argI(args, 5);
  const bf = (argI(args, 6) != 0 ? 1 : 0) | (argI(args, 7) != 0 ? 2 : 0) | (argI(args, 8) != 0 ? 4 : 0);
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  switch (op) {
    case NEG: gradLoop(NEG, x, dy, dx, i0, i1, bf); break;
    case EXP: gradLoop(EXP, x, dy, dx, i0, i1, bf); break;
    case LOG: gradLoop(LOG, x, dy, dx, i0, i1, bf); break;
    case SILU: gradLoop(SILU, x, dy, dx, i0, i1, bf); break;
    case SIGMOID: gradLoop(SIGMOID, x, dy, dx, i0, i1, bf); break;
    case SQUARE: gradLoop(SQUARE, x, dy, dx, i0, i1, bf); break;
    case SQRT: gradLoop(SQRT, x, dy, dx, i0, i1, bf); break;
    case TANH: gradLoop(TANH, x, dy, dx, i0, i1, bf); break;
    default: gradLoop(RELU, x, dy, dx, i0, i1, bf);
  }
}

// @ts-ignore: decorator
@inline function gradLoop(op: i32, x: usize, dy: usize, dx: usize, i0: i32, i1: i32, bf: i32): void {
  for (let i = i0; i < i1; i += 4) st4(dx, i, (bf & 4) != 0, unaryGrad(op, ld4(x, i, (bf & 1) != 0), ld4(dy, i, (bf & 2) != 0)));
}

// ---- binary -----------------------------------------------------------------------------

const ADD = 0, SUB = 1, MUL = 2, DIV = 3;

// @ts-ignore: decorator
@inline function binOp(op: i32, a: v128, b: v128): v128 {
  switch (op) {
    case ADD: return f32x4.add(a, b);
    case SUB: return f32x4.sub(a, b);
    case MUL: return f32x4.mul(a, b);
    default: return f32x4.div(a, b);
  }
}

// @ts-ignore: decorator
@inline function binScalar(op: i32, a: f32, b: f32): f32 {
  switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    default: return a / b;
  }
}

/**
 * out[i] = a[i] ∘ b[i mod nb]; out may be a. Args: 0 op, 1 a, 2 b, 3 out, 4 n, 5 nb, 6 per
 * (a multiple of nb when nb divides n, so a chunk holds whole repeats of b).
 */
export function binary(args: usize, chunk: i32, _tid: i32): void {
  const op = argI(args, 0);
  switch (op) {
    case ADD: binaryLoop(ADD, args, chunk); break;
    case SUB: binaryLoop(SUB, args, chunk); break;
    case MUL: binaryLoop(MUL, args, chunk); break;
    default: binaryLoop(DIV, args, chunk);
  }
}

// @ts-ignore: decorator
@inline function binaryLoop(op: i32, args: usize, chunk: i32): void {
  const a = argP(args, 1);
  const b = argP(args, 2);
  const out = argP(args, 3);
  const n = argI(args, 4);
  const nb = argI(args, 5);
  const per = argI(args, 6);
  const ab = argI(args, 7) != 0, bb = argI(args, 8) != 0, ob = argI(args, 9) != 0;
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  if (nb == n) {
    for (let i = i0; i < i1; i += 4) st4(out, i, ob, binOp(op, ld4(a, i, ab), ld4(b, i, bb)));
  } else if (nb == 1) {
    const vb = f32x4.splat(ld1(b, 0, bb));
    for (let i = i0; i < i1; i += 4) st4(out, i, ob, binOp(op, ld4(a, i, ab), vb));
  } else if (n % nb == 0 && (nb & 3) == 0) {
    // whole repeats of b: vectors never straddle a repeat
    for (let r = i0; r < i1; r += nb) {
      for (let j = 0; j < nb; j += 4) st4(out, r + j, ob, binOp(op, ld4(a, r + j, ab), ld4(b, j, bb)));
    }
  } else {
    let j = i0 % nb;
    for (let i = i0; i < i1; i++) {
      st1(out, i, ob, binScalar(op, ld1(a, i, ab), ld1(b, j, bb)));
      j = j + 1 == nb ? 0 : j + 1;
    }
  }
}

/** out = alpha·x + beta. Args: 0 x, 1 out, 2 alpha, 3 beta, 4 n, 5 per; 6, 7 whether x, out are bf16. */
export function affine(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const out = argP(args, 1);
  const va = f32x4.splat(<f32>argF(args, 2));
  const vb = f32x4.splat(<f32>argF(args, 3));
  const n = argI(args, 4);
  const per = argI(args, 5);
  const xb = argI(args, 6) != 0, ob = argI(args, 7) != 0;
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  for (let i = i0; i < i1; i += 4) st4(out, i, ob, madd(va, ld4(x, i, xb), vb));
}

// ---- reduceSum --------------------------------------------------------------------------

/**
 * x [outer, size, inner] → out [outer, inner], summed in f64 (as the reference does) so
 * long reductions (a loss over 32k tokens) keep f32 precision. A chunk is a block of
 * `rowsPer` outer rows × IB inner columns (a multiple of 4).
 * Args: 0 x, 1 out, 2 outer, 3 size, 4 inner, 5 IB, 6 rowsPer.
 */
export function reduceSum(args: usize, chunk: i32, _tid: i32): void {
  const x = argP(args, 0);
  const out = argP(args, 1);
  const outer = argI(args, 2);
  const size = argI(args, 3);
  const inner = argI(args, 4);
  const IB = argI(args, 5);
  const rowsPer = argI(args, 6);
  const blocks = (inner + IB - 1) / IB;
  const o0 = (chunk / blocks) * rowsPer;
  const o1 = min(outer, o0 + rowsPer);
  const c0 = (chunk % blocks) * IB;
  const c1 = min(inner, c0 + IB);
  for (let o = o0; o < o1; o++) {
    const base = x + ((<usize>o * <usize>size * <usize>inner) << 2);
    if (inner == 1) {
      store<f32>(out + (<usize>o << 2), <f32>sumRow(base, size));
      continue;
    }
    let c = c0;
    for (; c + 4 <= c1; c += 4) {
      let lo = f64x2.splat(0), hi = f64x2.splat(0);
      for (let r = 0; r < size; r++) {
        const v = v128.load(base + ((<usize>r * <usize>inner + <usize>c) << 2));
        lo = f64x2.add(lo, f64x2.promote_low_f32x4(v));
        hi = f64x2.add(hi, f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)));
      }
      v128.store(out + ((<usize>o * <usize>inner + <usize>c) << 2), v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
    }
    for (; c < c1; c++) {
      let s: f64 = 0;
      for (let r = 0; r < size; r++) s += <f64>load<f32>(base + ((<usize>r * <usize>inner + <usize>c) << 2));
      store<f32>(out + ((<usize>o * <usize>inner + <usize>c) << 2), <f32>s);
    }
  }
}

/** Σ of n contiguous f32 in f64. */
export function sumRow(p: usize, n: i32): f64 {
  let lo = f64x2.splat(0), hi = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(p + (<usize>i << 2));
    lo = f64x2.add(lo, f64x2.promote_low_f32x4(v));
    hi = f64x2.add(hi, f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)));
  }
  const t = f64x2.add(lo, hi);
  let s = f64x2.extract_lane(t, 0) + f64x2.extract_lane(t, 1);
  for (; i < n; i++) s += <f64>load<f32>(p + (<usize>i << 2));
  return s;
}

// ---- SwiGLU -----------------------------------------------------------------------------

/** out = silu(gate)·up. Args: 0 gate, 1 up, 2 out, 3 n, 4 per; 5–7 whether gate, up, out are bf16. */
export function swiglu(args: usize, chunk: i32, _tid: i32): void {
  const gate = argP(args, 0);
  const up = argP(args, 1);
  const out = argP(args, 2);
  const n = argI(args, 3);
  const per = argI(args, 4);
  const gBf = argI(args, 5) != 0, uBf = argI(args, 6) != 0, oBf = argI(args, 7) != 0;
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  for (let i = i0; i < i1; i += 4) {
    const x = ld4(gate, i, gBf);
    st4(out, i, oBf, f32x4.mul(f32x4.mul(x, sigmoid4(x)), ld4(up, i, uBf)));
  }
}

/**
 * dgate = dout·up·silu'(gate), dup = dout·silu(gate); a null (0) output is skipped.
 * Args: 0 gate, 1 up, 2 dout, 3 dgate, 4 dup, 5 n, 6 per; 7–11 whether gate, up, dout,
 * dgate, dup are bf16.
 */
export function swigluBackward(args: usize, chunk: i32, _tid: i32): void {
  const gate = argP(args, 0);
  const up = argP(args, 1);
  const dout = argP(args, 2);
  const dgate = argP(args, 3);
  const dup = argP(args, 4);
  const n = argI(args, 5);
  const per = argI(args, 6);
  const gBf = argI(args, 7) != 0, uBf = argI(args, 8) != 0, yBf = argI(args, 9) != 0, dgBf = argI(args, 10) != 0, duBf = argI(args, 11) != 0;
  const i0 = chunk * per;
  const i1 = min(n, i0 + per);
  const one = f32x4.splat(1);
  for (let i = i0; i < i1; i += 4) {
    const x = ld4(gate, i, gBf);
    const s = sigmoid4(x);
    const g = ld4(dout, i, yBf);
    if (dgate) st4(dgate, i, dgBf, f32x4.mul(f32x4.mul(g, ld4(up, i, uBf)), f32x4.mul(s, madd(x, f32x4.sub(one, s), one))));
    if (dup) st4(dup, i, duBf, f32x4.mul(g, f32x4.mul(x, s)));
  }
}
