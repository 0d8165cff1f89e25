/**
 * Fused flash-style attention, forward and backward, for dense causal attention and the
 * three S²-Attn forms (mask.ts), with grouped-query attention and a query offset.
 *
 * Layout: q, out, dout [B, Nq, H, D]; k, v [B, kvStride, Hkv, D] of which the first Nk
 * rows are keys; lse [B, H, Nq]. Query head h reads kv head ⌊h / (H/Hkv)⌋.
 *
 * Forward (one chunk = one query block of BQ rows of one (b, h); heaviest blocks first):
 * the block walks the key blocks of BK keys inside its mask cover only, so S²-Attn costs
 * O(N·G) and memory is O(BQ·(BK + D)) per thread. Per key block: pack Kᵀ [D × BK];
 * S = scale·Q·Kᵀ [BQ × BK] with 4×8 register tiles; mask the rows of blocks the mask cuts
 * (−inf); online softmax: m' = max(m, rowmax S), P = e^(S−m'), l ← l·e^(m−m') + ΣP,
 * O ← O·e^(m−m') + P·V. At the end out = O / l and lse = m + log l. One query row
 * (decoding over a KV cache) runs the query heads of a kv group as the rows of one block
 * instead (attentionRows).
 *
 * Backward (FlashAttention-2 order; one chunk = the key blocks kb ≡ s (mod slices) of one
 * (b, kv head)): per key block, dK and dV accumulate in scratch over every query head of
 * the group and every query block that can see the block, recomputing
 * P = e^(scale·Q·Kᵀ − lse) from the saved lse: dV += Pᵀ·dO; dP = dO·Vᵀ;
 * dS = scale·P ⊙ (dP − δ) with δ = rowsum(dO ⊙ O) (precomputed, attnDelta);
 * dK += dSᵀ·Q; dQ += dS·K. dK and dV rows are written once; dQ rows are accumulated in
 * place — into dq itself when slices = 1 (each (b, kv head) owns its query heads' rows),
 * else into one partial buffer per slice, summed by the host afterwards.
 *
 * 16-bit operands (mixed precision, a 16-bit KV cache): q, k, v, out, dout, dk and dv may
 * each be bf16, and in the forward pass q, k, v and out may be f16 (dtype flags in slots
 * 29–35: 0 f32, 1 bf16, 2 f16). The rows a block reads are widened into per-thread f32
 * scratch as the block is loaded, and the rows it writes are rounded as they are stored, so
 * no f32 copy of a whole tensor is made. dq and lse are always f32 (dq accumulates).
 */
import { argF, argI, argP } from './simd';
import { expf, exp4, logf } from './math';
import { blockFull, blockRanges, hi1, hi2, keyRanges, lo1, lo2, queryCover, ROLL } from './mask';
import { dotRow, expShiftSum, rowMax, scaleRow } from './norm';
import { packT, tile } from './tile';
import { ld1, narrowBf16, narrowF16, widenRows } from './half';

// Forward args
const Q = 0, K = 1, V = 2, OUT = 3, LSE = 4, B_ = 5, NQ = 6, NK = 7, KVS = 8, H_ = 9, HKV = 10, D_ = 11,
  SCALE = 12, QOFF = 13, KIND = 14, G_ = 15, SCR = 16, SCRT = 17, BQ_ = 18, BK_ = 19;
// Extra backward args
const DOUT = 20, DQ = 21, DK = 22, DV = 23, DELTA = 24, SLICES = 25, PARTIAL = 26;
// The operands' dtypes: 0 f32, 1 bf16, 2 f16 (forward only)
const Q_BF = 29, K_BF = 30, V_BF = 31, OUT_BF = 32, DOUT_BF = 33, DK_BF = 34, DV_BF = 35;

/** Byte shift of an element: 1 for bf16 or f16, 2 for f32. */
// @ts-ignore: decorator
@inline function shiftOf(args: usize, slot: i32): usize { return argI(args, slot) != 0 ? 1 : 2; }

/**
 * Rows [0, rows) of n values at p (`rs` bytes apart, dtype flag t) as f32: p itself when
 * they are f32, else widened into `stage`, rows n·4 bytes apart (stagedRow gives the stride
 * to use).
 */
function staged(t: i32, p: usize, rs: usize, rows: i32, n: i32, stage: usize): usize {
  if (t == 0) return p;
  widenRows(p, rs, rows, n, stage, <usize>n << 2, t == 2);
  return stage;
}

/** The row stride of what `staged` returned for rows of n values `rs` bytes apart. */
// @ts-ignore: decorator
@inline function stagedRow(t: i32, rs: usize, n: i32): usize { return t != 0 ? <usize>n << 2 : rs; }

/** Stores n f32 values times s at dst as f32, bf16 (t = 1) or f16 (t = 2). */
function storeRow(t: i32, src: usize, dst: usize, n: i32, s: f32): void {
  if (t == 1) { narrowBf16(src, dst, n, s); return; }
  if (t == 2) { narrowF16(src, dst, n, s); return; }
  const vs = f32x4.splat(s);
  let d = 0;
  for (; d + 4 <= n; d += 4) v128.store(dst + (<usize>d << 2), f32x4.mul(v128.load(src + (<usize>d << 2)), vs));
  for (; d < n; d++) store<f32>(dst + (<usize>d << 2), load<f32>(src + (<usize>d << 2)) * s);
}

/** Rows of S for queries [p0, p0+nq) × keys [j0, j0+nk) of head h: −inf outside the mask and in the padding. */
function maskBlock(S: usize, BK: i32, nq: i32, p0: i32, j0: i32, nk: i32, pad: i32,
  kind: i32, G: i32, H: i32, h: i32, Nk: i32, full: bool): void {
  for (let r = 0; r < nq; r++) {
    const row = S + ((<usize>r * <usize>BK) << 2);
    if (!full) {
      keyRanges(kind, G, H, h, p0 + r, Nk);
      const a1 = lo1 - j0, b1 = hi1 - j0, a2 = lo2 - j0, b2 = hi2 - j0;
      for (let j = 0; j < nk; j++) {
        if (!((j >= a1 && j < b1) || (j >= a2 && j < b2))) store<f32>(row + (<usize>j << 2), -Infinity);
      }
    }
    for (let j = nk; j < pad; j++) store<f32>(row + (<usize>j << 2), -Infinity);
  }
}

/**
 * Writes to `out` (i32) the start of every key block (aligned to BK) that meets
 * [lo1, hi1) ∪ [lo2, hi2) — each block once — and returns how many there are.
 */
function coverBlocks(BK: i32, Nk: i32, out: usize): i32 {
  let a0 = 0, a1 = 0, b0 = 0, b1 = 0;
  if (lo1 < hi1) { a0 = lo1 / BK; a1 = (min(hi1, Nk) + BK - 1) / BK; }
  if (lo2 < hi2) { b0 = lo2 / BK; b1 = (min(hi2, Nk) + BK - 1) / BK; }
  if (a1 > a0 && b1 > b0 && b0 <= a1 && a0 <= b1) { a0 = min(a0, b0); a1 = max(a1, b1); b0 = 0; b1 = 0; }
  let n = 0;
  for (let j = a0; j < a1; j++) store<i32>(out + (<usize>(n++) << 2), j * BK);
  for (let j = b0; j < b1; j++) store<i32>(out + (<usize>(n++) << 2), j * BK);
  return n;
}

export function attention(args: usize, chunk: i32, tid: i32): void {
  const Nq = argI(args, NQ), Nk = argI(args, NK), kvs = argI(args, KVS);
  const H = argI(args, H_), Hkv = argI(args, HKV), D = argI(args, D_);
  const scale = <f32>argF(args, SCALE);
  const qOff = argI(args, QOFF), kind = argI(args, KIND), G = argI(args, G_);
  const BQ = argI(args, BQ_), BK = argI(args, BK_);
  if (Nq == 1) {
    attentionRows(args, chunk, tid);
    return;
  }
  const nqb = (Nq + BQ - 1) / BQ;
  const qb = nqb - 1 - chunk / (argI(args, B_) * H); // heaviest (last) query blocks first
  const bh = chunk % (argI(args, B_) * H);
  const b = bh / H, h = bh % H;
  const kvh = h / (H / Hkv);
  const i0 = qb * BQ, nq = min(BQ, Nq - i0);
  const p0 = qOff + i0;

  // scratch: Kt [D × BK] | S [BQ × BK] | O [BQ × D] | m [BQ] | l [BQ] | block list [nkb + 2]
  //          | bf16 staging: Q [BQ × D] | K [BK × D] | V [BK × D]
  const Kt = argP(args, SCR) + <usize>tid * argP(args, SCRT);
  const S = Kt + ((<usize>D * <usize>BK) << 2);
  const O = S + ((<usize>BQ * <usize>BK) << 2);
  const M = O + ((<usize>BQ * <usize>D) << 2);
  const L = M + (<usize>BQ << 2);
  const blocks = L + (<usize>BQ << 2);
  const Qs = blocks + (<usize>((Nk + BK - 1) / BK + 2) << 2);
  const Ks = Qs + ((<usize>BQ * <usize>D) << 2);
  const Vs = Ks + ((<usize>BK * <usize>D) << 2);

  const qt = argI(args, Q_BF), kt = argI(args, K_BF), vt = argI(args, V_BF), ot = argI(args, OUT_BF);
  const qs = shiftOf(args, Q_BF), ks = shiftOf(args, K_BF), vs = shiftOf(args, V_BF), os = shiftOf(args, OUT_BF);
  const qRowE = <usize>H * <usize>D; // elements between query rows
  const kvRowE = <usize>Hkv * <usize>D;
  const kRow = kvRowE << ks, vRow = kvRowE << vs;
  const qAt = ((<usize>b * <usize>Nq + <usize>i0) * <usize>H + <usize>h) * <usize>D;
  const kvAt = (<usize>b * <usize>kvs * <usize>Hkv + <usize>kvh) * <usize>D;
  const kBase = argP(args, K) + (kvAt << ks);
  const vBase = argP(args, V) + (kvAt << vs);
  const q = staged(qt, argP(args, Q) + (qAt << qs), qRowE << qs, nq, D, Qs);
  const qRow = stagedRow(qt, qRowE << qs, D);

  memory.fill(O, 0, (<usize>nq * <usize>D) << 2);
  for (let r = 0; r < nq; r++) { store<f32>(M + (<usize>r << 2), -Infinity); store<f32>(L + (<usize>r << 2), 0); }

  blockRanges(kind, G, H, h, p0, p0 + nq, Nk);
  const nblocks = coverBlocks(BK, Nk, blocks);
  for (let bi = 0; bi < nblocks; bi++) {
    const j0 = load<i32>(blocks + (<usize>bi << 2));
    const nk = min(BK, Nk - j0);
    const pad = (nk + 7) & ~7;
    const full = blockFull(kind, G, H, h, p0, p0 + nq, j0, j0 + nk, Nk);
    packT(staged(kt, kBase + <usize>j0 * kRow, kRow, nk, D, Ks), stagedRow(kt, kRow, D), nk, D, Kt, <usize>BK << 2, pad);
    // S = scale · Q · Kᵀ
    tile(nq, pad, D, q, qRow, 4, Kt, <usize>BK << 2, S, <usize>BK << 2, scale, false);
    maskBlock(S, BK, nq, p0, j0, nk, pad, kind, G, H, h, Nk, full);
    // online softmax, row by row
    for (let r = 0; r < nq; r++) softmaxStep(S + ((<usize>r * <usize>BK) << 2), pad, M, L, O, r, D);
    // O += P · V
    const vb = staged(vt, vBase + <usize>j0 * vRow, vRow, nk, D, Vs);
    tile(nq, D, nk, S, <usize>BK << 2, 4, vb, stagedRow(vt, vRow, D), O, <usize>D << 2, 1, true);
  }

  finishRows(O, M, L, nq, D, argP(args, OUT) + (qAt << os), qRowE << os, ot,
    argP(args, LSE) + (((<usize>b * <usize>H + <usize>h) * <usize>Nq + <usize>i0) << 2));
}

/**
 * One online-softmax step for row r of a block of scores (pad values at `row`): m' =
 * max(m, rowmax), the row becomes P = e^(S − m'), l ← l·e^(m − m') + ΣP, and row r of O is
 * scaled by e^(m − m'). A row the mask hides entirely becomes zeros.
 */
function softmaxStep(row: usize, pad: i32, M: usize, L: usize, O: usize, r: i32, D: i32): void {
  const mBlock = rowMax(row, pad);
  if (mBlock == -Infinity) { memory.fill(row, 0, <usize>pad << 2); return; }
  const mOld = load<f32>(M + (<usize>r << 2));
  const mNew = max(mOld, mBlock);
  const sum = expShiftSum(row, row, pad, mNew);
  const alpha = mOld == -Infinity ? <f32>0 : expf(mOld - mNew);
  store<f32>(L + (<usize>r << 2), load<f32>(L + (<usize>r << 2)) * alpha + sum);
  store<f32>(M + (<usize>r << 2), mNew);
  if (alpha != 1) scaleRow(O + ((<usize>r * <usize>D) << 2), D, alpha);
}

/** out row r (`rowBytes` apart, dtype flag t) = O_r / l_r and lse[r] = m_r + log l_r, for `rows` rows. */
function finishRows(O: usize, M: usize, L: usize, rows: i32, D: i32, out: usize, rowBytes: usize, t: i32, lse: usize): void {
  for (let r = 0; r < rows; r++) {
    const l = load<f32>(L + (<usize>r << 2));
    storeRow(t, O + ((<usize>r * <usize>D) << 2), out + <usize>r * rowBytes, D, 1 / l);
    store<f32>(lse + (<usize>r << 2), load<f32>(M + (<usize>r << 2)) + logf(l));
  }
}

/**
 * One query row (decoding over a KV cache: Nq = 1) for `hg` query heads that share a kv
 * head (slot 36; one chunk per (b, kv head, group of hg heads)). The block path would run
 * each head as a BQ-row block holding one row (a quarter of each 4-row register tile used)
 * and load the group's keys and values again for every head; here the group's heads are
 * the rows of the block, so each key block is loaded (and transposed) once per group and
 * the register tiles are full: S = scale·Q_group·Kᵀ, online softmax per head, O += P·V.
 * All the group's heads see the same keys (the host sends S² masks one head per chunk).
 * Scratch: as the block path's, with hg rows in place of BQ.
 */
function attentionRows(args: usize, chunk: i32, tid: i32): void {
  const Nk = argI(args, NK), kvs = argI(args, KVS);
  const H = argI(args, H_), Hkv = argI(args, HKV), D = argI(args, D_);
  const scale = <f32>argF(args, SCALE);
  const qOff = argI(args, QOFF), kind = argI(args, KIND), G = argI(args, G_);
  const BK = argI(args, BK_);
  const hg = argI(args, 36);
  const rep = H / Hkv, parts = rep / hg;
  const b = chunk / (Hkv * parts), kvh = (chunk / parts) % Hkv, h0 = kvh * rep + (chunk % parts) * hg;
  const qt = argI(args, Q_BF), kt = argI(args, K_BF), vt = argI(args, V_BF), ot = argI(args, OUT_BF);
  const qs = shiftOf(args, Q_BF), ks = shiftOf(args, K_BF), vs = shiftOf(args, V_BF), os = shiftOf(args, OUT_BF);
  const kRow = (<usize>Hkv * <usize>D) << ks, vRow = (<usize>Hkv * <usize>D) << vs;
  const kvAt = (<usize>b * <usize>kvs * <usize>Hkv + <usize>kvh) * <usize>D;
  const kBase = argP(args, K) + (kvAt << ks), vBase = argP(args, V) + (kvAt << vs);
  const qAt = (<usize>b * <usize>H + <usize>h0) * <usize>D; // Nq = 1: the group's query rows are contiguous

  // scratch: Kt [D × BK] | S [hg × BK] | O [hg × D] | m [hg] | l [hg] | bf16 staging: Q [hg × D] | K, V [BK × D]
  const Kt = argP(args, SCR) + <usize>tid * argP(args, SCRT);
  const S = Kt + ((<usize>D * <usize>BK) << 2);
  const O = S + ((<usize>hg * <usize>BK) << 2);
  const M = O + ((<usize>hg * <usize>D) << 2);
  const L = M + (<usize>hg << 2);
  const Qs = L + (<usize>hg << 2);
  const Ks = Qs + ((<usize>hg * <usize>D) << 2);
  const Vs = Ks + ((<usize>BK * <usize>D) << 2);
  const q = staged(qt, argP(args, Q) + (qAt << qs), <usize>D << qs, hg, D, Qs);

  memory.fill(O, 0, (<usize>hg * <usize>D) << 2);
  for (let t = 0; t < hg; t++) { store<f32>(M + (<usize>t << 2), -Infinity); store<f32>(L + (<usize>t << 2), 0); }
  keyRanges(kind, G, H, h0, qOff, Nk);
  const r0 = lo1, r1 = hi1, r2 = lo2, r3 = hi2; // keyRanges' results are globals: keep them
  for (let part = 0; part < 2; part++) {
    const a = part == 0 ? r0 : r2, e = min(Nk, part == 0 ? r1 : r3);
    for (let j0 = a; j0 < e; j0 += BK) {
      const nk = min(BK, e - j0);
      const pad = (nk + 7) & ~7;
      packT(staged(kt, kBase + <usize>j0 * kRow, kRow, nk, D, Ks), stagedRow(kt, kRow, D), nk, D, Kt, <usize>BK << 2, pad);
      tile(hg, pad, D, q, <usize>D << 2, 4, Kt, <usize>BK << 2, S, <usize>BK << 2, scale, false);
      for (let t = 0; t < hg; t++) {
        const row = S + ((<usize>t * <usize>BK) << 2);
        for (let j = nk; j < pad; j++) store<f32>(row + (<usize>j << 2), -Infinity);
        softmaxStep(row, pad, M, L, O, t, D);
      }
      const vb = staged(vt, vBase + <usize>j0 * vRow, vRow, nk, D, Vs);
      tile(hg, D, nk, S, <usize>BK << 2, 4, vb, stagedRow(vt, vRow, D), O, <usize>D << 2, 1, true);
    }
  }
  finishRows(O, M, L, hg, D, argP(args, OUT) + (qAt << os), <usize>D << os, ot, argP(args, LSE) + ((<usize>b * <usize>H + <usize>h0) << 2));
}

/**
 * Backward phase 0, per query row (b, i) over all heads: δ[b, h, i] = dout·out, and the
 * rows of dq and of every partial dQ buffer zeroed. Chunks of `per` rows.
 * Args as attentionBackward; slot 27 = rows per chunk.
 */
export function attnDelta(args: usize, chunk: i32, _tid: i32): void {
  const Nq = argI(args, NQ), H = argI(args, H_), D = argI(args, D_);
  const rows = argI(args, B_) * Nq;
  const per = argI(args, 27);
  const slices = argI(args, SLICES);
  const out = argP(args, OUT), dout = argP(args, DOUT), delta = argP(args, DELTA);
  const os = shiftOf(args, OUT_BF), ds = shiftOf(args, DOUT_BF);
  const rowBytes = <usize>H * <usize>D << 2;
  const total = <usize>rows * rowBytes;
  const r1 = min(rows, chunk * per + per);
  for (let r = chunk * per; r < r1; r++) {
    const b = r / Nq, i = r % Nq;
    for (let h = 0; h < H; h++) {
      const o = (<usize>r * <usize>H + <usize>h) * <usize>D;
      const d = os == 2 && ds == 2 ? dotRow(dout + (o << 2), out + (o << 2), D) : dotMixed(dout + (o << ds), ds == 1, out + (o << os), os == 1, D);
      store<f32>(delta + (((<usize>b * <usize>H + <usize>h) * <usize>Nq + <usize>i) << 2), d);
    }
    memory.fill(argP(args, DQ) + <usize>r * rowBytes, 0, rowBytes);
    for (let s = 1; s < slices; s++) memory.fill(argP(args, PARTIAL) + <usize>(s - 1) * total + <usize>r * rowBytes, 0, rowBytes);
  }
}

/** Σ a[i]·b[i] over n values, each array f32 or (flag) bf16. */
function dotMixed(a: usize, aBf: bool, b: usize, bBf: bool, n: i32): f32 {
  let s: f32 = 0;
  for (let i = 0; i < n; i++) s += ld1(a, i, aBf) * ld1(b, i, bBf);
  return s;
}

export function attentionBackward(args: usize, chunk: i32, tid: i32): void {
  const Nq = argI(args, NQ), Nk = argI(args, NK), kvs = argI(args, KVS);
  const H = argI(args, H_), Hkv = argI(args, HKV), D = argI(args, D_);
  const scale = <f32>argF(args, SCALE);
  const qOff = argI(args, QOFF), kind = argI(args, KIND), G = argI(args, G_);
  const BQ = argI(args, BQ_), BK = argI(args, BK_);
  const slices = argI(args, SLICES);
  const s = chunk % slices;
  const bk = chunk / slices;
  const b = bk / Hkv, kvh = bk % Hkv;
  const rep = H / Hkv;
  const nkb = (Nk + BK - 1) / BK;

  // scratch: Kt, Vt [D × BK] | dK, dV [BK × D] | P, dS [BQ × BK] | bf16 staging: K, V [BK × D] | Q, dO [BQ × D]
  const Kt = argP(args, SCR) + <usize>tid * argP(args, SCRT);
  const Vt = Kt + ((<usize>D * <usize>BK) << 2);
  const dKa = Vt + ((<usize>D * <usize>BK) << 2);
  const dVa = dKa + ((<usize>BK * <usize>D) << 2);
  const P = dVa + ((<usize>BK * <usize>D) << 2);
  const dS = P + ((<usize>BQ * <usize>BK) << 2);
  const Ks = dS + ((<usize>BQ * <usize>BK) << 2);
  const Vs = Ks + ((<usize>BK * <usize>D) << 2);
  const Qs = Vs + ((<usize>BK * <usize>D) << 2);
  const dOs = Qs + ((<usize>BQ * <usize>D) << 2);

  const qt = argI(args, Q_BF), kt = argI(args, K_BF), vt = argI(args, V_BF), gt = argI(args, DOUT_BF), dkt = argI(args, DK_BF), dvt = argI(args, DV_BF);
  const qs = shiftOf(args, Q_BF), ks = shiftOf(args, K_BF), vs = shiftOf(args, V_BF);
  const gs = shiftOf(args, DOUT_BF), dks = shiftOf(args, DK_BF), dvs = shiftOf(args, DV_BF);
  const qRowE = <usize>H * <usize>D;
  const qRow = qRowE << 2; // dq (f32)
  const kvRowE = <usize>Hkv * <usize>D;
  const kRow = kvRowE << ks, vRow = kvRowE << vs;
  const kvAt = (<usize>b * <usize>kvs * <usize>Hkv + <usize>kvh) * <usize>D;
  const kBase = argP(args, K) + (kvAt << ks), vBase = argP(args, V) + (kvAt << vs);
  const dkBase = argP(args, DK) + (kvAt << dks), dvBase = argP(args, DV) + (kvAt << dvs);
  const dqBuf = s == 0 ? argP(args, DQ) : argP(args, PARTIAL) + <usize>(s - 1) * ((<usize>argI(args, B_) * <usize>Nq * <usize>H * <usize>D) << 2);
  const BKb = <usize>BK << 2;

  for (let kb = s; kb < nkb; kb += slices) {
    const j0 = kb * BK, nk = min(BK, Nk - j0);
    const pad = (nk + 7) & ~7;
    // the block's K rows as f32 (packed for Q·Kᵀ, and read as they are for dQ += dS·K)
    const kp = staged(kt, kBase + <usize>j0 * kRow, kRow, nk, D, Ks);
    const kpRow = stagedRow(kt, kRow, D);
    packT(kp, kpRow, nk, D, Kt, BKb, pad);
    packT(staged(vt, vBase + <usize>j0 * vRow, vRow, nk, D, Vs), stagedRow(vt, vRow, D), nk, D, Vt, BKb, pad);
    memory.fill(dKa, 0, (<usize>nk * <usize>D) << 2);
    memory.fill(dVa, 0, (<usize>nk * <usize>D) << 2);
    for (let h = kvh * rep; h < kvh * rep + rep; h++) {
      queryCover(kind, G, H, h, j0, j0 + nk, qOff, Nq);
      if (hi1 <= lo1) continue;
      const qb0 = (lo1 - qOff) / BQ, qb1 = (hi1 - qOff + BQ - 1) / BQ;
      for (let qb = qb0; qb < qb1; qb++) {
        const i0 = qb * BQ, nq = min(BQ, Nq - i0);
        const p0 = qOff + i0;
        if (kind == ROLL) {
          // skip query blocks whose cover misses this key block
          blockRanges(kind, G, H, h, p0, p0 + nq, Nk);
          if (!((lo1 < j0 + nk && hi1 > j0) || (lo2 < j0 + nk && hi2 > j0))) continue;
        }
        const full = blockFull(kind, G, H, h, p0, p0 + nq, j0, j0 + nk, Nk);
        const rowAt = ((<usize>b * <usize>Nq + <usize>i0) * <usize>H + <usize>h) * <usize>D;
        const q = staged(qt, argP(args, Q) + (rowAt << qs), qRowE << qs, nq, D, Qs);
        const qr = stagedRow(qt, qRowE << qs, D);
        const dout = staged(gt, argP(args, DOUT) + (rowAt << gs), qRowE << gs, nq, D, dOs);
        const gr = stagedRow(gt, qRowE << gs, D);
        const dq = dqBuf + (rowAt << 2);
        const lse = argP(args, LSE) + (((<usize>b * <usize>H + <usize>h) * <usize>Nq + <usize>i0) << 2);
        const delta = argP(args, DELTA) + (((<usize>b * <usize>H + <usize>h) * <usize>Nq + <usize>i0) << 2);
        // P = e^(scale·Q·Kᵀ − lse), 0 outside the mask
        tile(nq, pad, D, q, qr, 4, Kt, BKb, P, BKb, scale, false);
        maskBlock(P, BK, nq, p0, j0, nk, pad, kind, G, H, h, Nk, full);
        for (let r = 0; r < nq; r++) {
          const row = P + <usize>r * BKb;
          const vl = f32x4.splat(load<f32>(lse + (<usize>r << 2)));
          for (let j = 0; j < pad; j += 4) v128.store(row + (<usize>j << 2), exp4(f32x4.sub(v128.load(row + (<usize>j << 2)), vl)));
        }
        // dV += Pᵀ · dO
        tile(nk, D, nq, P, 4, BKb, dout, gr, dVa, <usize>D << 2, 1, true);
        // dP = dO · Vᵀ, then dS = scale · P ⊙ (dP − δ)
        tile(nq, pad, D, dout, gr, 4, Vt, BKb, dS, BKb, 1, false);
        const vs = f32x4.splat(scale);
        for (let r = 0; r < nq; r++) {
          const pr = P + <usize>r * BKb, dr = dS + <usize>r * BKb;
          const vd = f32x4.splat(load<f32>(delta + (<usize>r << 2)));
          for (let j = 0; j < pad; j += 4) {
            const o = <usize>j << 2;
            v128.store(dr + o, f32x4.mul(vs, f32x4.mul(v128.load(pr + o), f32x4.sub(v128.load(dr + o), vd))));
          }
        }
        // dK += dSᵀ · Q ; dQ += dS · K
        tile(nk, D, nq, dS, 4, BKb, q, qr, dKa, <usize>D << 2, 1, true);
        tile(nq, D, nk, dS, BKb, 4, kp, kpRow, dq, qRow, 1, true);
      }
    }
    for (let j = 0; j < nk; j++) {
      storeRow(dkt, dKa + ((<usize>j * <usize>D) << 2), dkBase + ((<usize>(j0 + j) * kvRowE) << dks), D, 1);
      storeRow(dvt, dVa + ((<usize>j * <usize>D) << 2), dvBase + ((<usize>(j0 + j) * kvRowE) << dvs), D, 1);
    }
  }
}

/** dq += partial[0] + … + partial[slices−2], chunks of `per` floats. Args as backward; 27 = per, 28 = n. */
export function attnReduce(args: usize, chunk: i32, _tid: i32): void {
  const slices = argI(args, SLICES);
  const per = argI(args, 27);
  const n = argI(args, 28);
  const dq = argP(args, DQ), part = argP(args, PARTIAL);
  const i0 = chunk * per, i1 = min(n, i0 + per);
  for (let s = 1; s < slices; s++) {
    const src = part + ((<usize>(s - 1) * <usize>n) << 2);
    let i = i0;
    for (; i + 4 <= i1; i += 4) {
      const o = <usize>i << 2;
      v128.store(dq + o, f32x4.add(v128.load(dq + o), v128.load(src + o)));
    }
    for (; i < i1; i++) store<f32>(dq + (<usize>i << 2), load<f32>(dq + (<usize>i << 2)) + load<f32>(src + (<usize>i << 2)));
  }
}
