/**
 * Tiled batched matmul, out[b] = alpha · op(A[b]) · op(B[b]) + beta · out[b], every
 * transpose variant. A workgroup computes a BM×BN tile of out, walking k in steps of BK
 * through workgroup-memory tiles of A and B; each thread owns TM×TN outputs in registers.
 * Transposes only change how tiles are loaded (always along the contiguous axis).
 *
 * Operands and out may be stored as f32, f16 or bf16 and are read and written directly (16-bit
 * weights and activations need no cast pass); arithmetic is f32. A 16-bit out is written a
 * word (two adjacent columns) at a time, so then each thread owns pairs of adjacent columns
 * and n must be even. With `f16` compute (the shader-f16 feature), the
 * tiles are held in f16 and products are summed over each BK slice in f16 before being
 * added to f32 accumulators: half the memory traffic, less precision.
 */
import type { Linear4bitArgs, MatmulArgs } from '../../backend.js';
import type { DType } from '../../../tensor/dtype.js';
import { InternalError } from '../../../errors.js';
import type { BufferBinding, KernelSpec, Launch } from '../wgsl.js';
import { MAX_GROUPS } from '../wgsl.js';
import { spec } from './elementwise.js';
import { accessors, fstore, loadExpr, words } from './operand.js';

export interface Tile { BM: number; BN: number; BK: number; TM: number; TN: number }

/** Small problems: 64×64 tiles, 4×4 per thread. */
export const TILE_SMALL: Tile = { BM: 64, BN: 64, BK: 8, TM: 4, TN: 4 };
/** Large problems: 128×128 tiles, 8×8 per thread. */
export const TILE_LARGE: Tile = { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 };
/**
 * Software adapters (lavapipe): 32×32 tiles, 2×2 per thread. Same code, less unrolling:
 * lavapipe's LLVM spends seconds per kernel on the larger tiles, and its speed is not the point.
 */
export const TILE_LIGHT: Tile = { BM: 32, BN: 32, BK: 8, TM: 2, TN: 2 };

export function chooseTile(m: number, n: number): Tile {
  return m >= 256 && n >= 256 ? TILE_LARGE : TILE_SMALL;
}

export function matmul(g: MatmulArgs, aType: DType, bType: DType, tile: Tile = chooseTile(g.m, g.n), f16Compute = false, oType: DType = 'f32'): Launch[] {
  const [sa, sb, so] = [fstore(aType, 'matmul'), fstore(bType, 'matmul'), fstore(oType, 'matmul')];
  const pairs = so !== 'f32';
  if (pairs && g.n % 2 !== 0) throw new InternalError(`webgpu.matmul: a 16-bit output needs an even n, got ${g.n}`);
  if (f16Compute && (aType !== 'f16' || bType !== 'f16')) throw new InternalError('webgpu.matmul: f16 compute needs f16 operands');
  // f16 compute packs 4 output columns per vec4<f16>: widen TN (and BN, same threads) to 4.
  if (f16Compute && tile.TN % 4 !== 0) tile = { ...tile, BN: (tile.BN / tile.TN) * 4, TN: 4 };
  const { BM, BN, BK, TM, TN } = tile;
  const WX = BN / TN;
  const WY = BM / TM;
  const key = `matmul:${g.transA}:${g.transB}:${aType}:${bType}:${oType}:${BM}x${BN}x${BK}/${TM}x${TN}${f16Compute ? ':h' : ''}`;
  const s = spec(key, () => {
    const elem = f16Compute ? 'f16' : 'f32';
    const aBuf = f16Compute ? 'f16' : 'u32';
    const bBuf = f16Compute ? 'f16' : 'u32';
    const la = f16Compute ? 'fn LA(idx: u32) -> f16 { return A[idx]; }' : `fn LA(idx: u32) -> f32 { return ${loadExpr(sa, 'A', 'idx')}; }`;
    const lb = f16Compute ? 'fn LB(idx: u32) -> f16 { return B[idx]; }' : `fn LB(idx: u32) -> f32 { return ${loadExpr(sb, 'B', 'idx')}; }`;
    const inner = f16Compute
      ? `    // Products in packed f16 (vec4 lanes over j) summed over this BK slice, then added to
    // the f32 accumulators. Explicitly zeroed: some drivers do not re-initialise a var
    // declared inside a loop.
    var part = array<vec4<f16>, ${(TM * TN) / 4}>();
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
      var br: array<vec4<f16>, ${TN / 4}>;
      for (var t = 0u; t < TN / 4u; t = t + 1u) {
        let c = kk * BN;
        br[t] = vec4<f16>(Bs[c + col(4u * t)], Bs[c + col(4u * t + 1u)], Bs[c + col(4u * t + 2u)], Bs[c + col(4u * t + 3u)]);
      }
      for (var i = 0u; i < TM; i = i + 1u) {
        let av = vec4<f16>(As[kk * BM + lid.y + i * WY]);
        for (var t = 0u; t < TN / 4u; t = t + 1u) { part[i * (TN / 4u) + t] = fma(av, br[t], part[i * (TN / 4u) + t]); }
      }
    }
    for (var i = 0u; i < TM; i = i + 1u) {
      for (var t = 0u; t < TN / 4u; t = t + 1u) {
        let pv = vec4<f32>(part[i * (TN / 4u) + t]);
        for (var l = 0u; l < 4u; l = l + 1u) { acc[i * TN + 4u * t + l] = acc[i * TN + 4u * t + l] + pv[l]; }
      }
    }`
      : `    for (var kk = 0u; kk < BK; kk = kk + 1u) {
      var ar: array<f32, TM>;
      var br: array<f32, TN>;
      for (var t = 0u; t < TM; t = t + 1u) { ar[t] = As[kk * BM + lid.y + t * WY]; }
      for (var t = 0u; t < TN; t = t + 1u) { br[t] = Bs[kk * BN + col(t)]; }
      for (var i = 0u; i < TM; i = i + 1u) {
        for (var j = 0u; j < TN; j = j + 1u) { acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]); }
      }
    }`;
    return {
      f16: f16Compute,
      buffers: matmulBuffers(aBuf, bBuf),
      fields: MATMUL_FIELDS,
      body: `const BM = ${BM}u;
const BN = ${BN}u;
const BK = ${BK}u;
const TM = ${TM}u;
const TN = ${TN}u;
const WX = ${WX}u;
const WY = ${WY}u;
const NT = ${WX * WY}u;
var<workgroup> As: array<${elem}, ${BK * BM}>;
var<workgroup> Bs: array<${elem}, ${BK * BN}>;
${la}
${lb}
${accessors({ o: so }, ['o'])}
var<private> lx: u32;
/** Column (within the tile) of this thread's j-th output: strided by WX, or in adjacent pairs. */
fn col(j: u32) -> u32 { return ${pairs ? '2u * (lx + (j >> 1u) * WX) + (j & 1u)' : 'lx + j * WX'}; }
@compute @workgroup_size(${WX}, ${WY})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  lx = lid.x;
  let bt = wid.z + a.b0;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let oa = bt * a.sa;
  let ob = bt * a.sb;
  let oc = bt * a.m * a.n;
  var acc: array<f32, ${TM * TN}>;
  for (var k0 = 0u; k0 < a.k; k0 = k0 + BK) {
${loadTiles(g, elem, 'LA(gi)', 'LB(gi)', 'kk * BM + r', 'kk * BN + c')}
    workgroupBarrier();
${inner}
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i = i + 1u) {
    let r = m0 + lid.y + i * WY;
    if (r >= a.m) { continue; }
    for (var j = 0u; j < TN; j = j + ${pairs ? 2 : 1}u) {
      let c = n0 + col(j);
      if (c >= a.n) { continue; }
      let idx = oc + r * a.n + c;
      ${storeOut(pairs, 'acc[i * TN + j]', 'acc[i * TN + j + 1u]')}
    }
  }
}`,
    };
  });
  return tileLaunches(g, s, BM, BN);
}

/**
 * WGSL: the loops that load one BK step of op(A) and op(B) into workgroup tiles As and Bs
 * (zero outside the matrices). Tile element e maps to its row r of op(A) (column c of
 * op(B)), kk along k and global index gi so that consecutive e read consecutive addresses
 * (along the contiguous axis of each transpose); `ld*` read element gi, `at*` place (r | c,
 * kk) in the tile. Uses BM, BN, BK, NT, li, m0, n0, k0, oa, ob.
 */
export function loadTiles(g: { transA: boolean; transB: boolean }, elem: string, ldA: string, ldB: string, atA: string, atB: string): string {
  const mapA = g.transA
    ? 'let r = e % BM; let kk = e / BM; let gi = oa + (k0 + kk) * a.m + m0 + r;'
    : 'let r = e / BK; let kk = e % BK; let gi = oa + (m0 + r) * a.k + k0 + kk;';
  const mapB = g.transB
    ? 'let c = e / BK; let kk = e % BK; let gi = ob + (n0 + c) * a.k + k0 + kk;'
    : 'let c = e % BN; let kk = e / BN; let gi = ob + (k0 + kk) * a.n + n0 + c;';
  return `    for (var e = li; e < BM * BK; e = e + NT) {
      ${mapA}
      var v = ${elem}(0);
      if (m0 + r < a.m && k0 + kk < a.k) { v = ${ldA}; }
      As[${atA}] = v;
    }
    for (var e = li; e < BN * BK; e = e + NT) {
      ${mapB}
      var v = ${elem}(0);
      if (n0 + c < a.n && k0 + kk < a.k) { v = ${ldB}; }
      Bs[${atB}] = v;
    }`;
}

/**
 * WGSL: writes result element idx (and idx + 1 for a 16-bit out, written as a pair) from the
 * products `p0` (`p1`): alpha · p + beta · out. Needs the `o` accessors.
 */
export function storeOut(pairs: boolean, p0: string, p1: string): string {
  return pairs
    ? `var v0 = a.alpha * ${p0};
      var v1 = a.alpha * ${p1};
      if (a.beta != 0.0) { v0 = v0 + a.beta * ld_o(idx); v1 = v1 + a.beta * ld_o(idx + 1u); }
      put_o(idx, v0, v1, true);`
    : `var v0 = a.alpha * ${p0};
      if (a.beta != 0.0) { v0 = v0 + a.beta * ld_o(idx); }
      put_o(idx, v0, 0.0, false);`;
}

/** The launches of a kernel with BM×BN output tiles: one workgroup per tile, batches split by batchLaunches. */
export function tileLaunches(g: MatmulArgs, s: KernelSpec, BM: number, BN: number): Launch[] {
  const gx = Math.ceil(g.n / BN);
  const gy = Math.ceil(g.m / BM);
  if (gx > MAX_GROUPS || gy > MAX_GROUPS) throw new InternalError(`webgpu: a ${g.m}×${g.n} matmul is too large for one dispatch`);
  return batchLaunches(g, s, gx, gy);
}

/** The bindings of the matmul kernels: A and B as arrays of `aType` and `bType` elements, out as words. */
export function matmulBuffers(aType: string, bType: string): BufferBinding[] {
  return [{ name: 'A', access: 'read', type: aType }, { name: 'B', access: 'read', type: bType }, words('o', 'rw')];
}

/** The uniform fields of the matmul kernels (tiled, matrix-vector, subgroup-matrix). */
export const MATMUL_FIELDS = [['m', 'u32'], ['n', 'u32'], ['k', 'u32'], ['sa', 'u32'], ['sb', 'u32'], ['b0', 'u32'], ['alpha', 'f32'], ['beta', 'f32']] as const;

/** One launch per MAX_GROUPS batch entries (the grid's z), each told its first entry b0. */
function batchLaunches(g: MatmulArgs, s: KernelSpec, gx: number, gy: number): Launch[] {
  const launches: Launch[] = [];
  for (let b0 = 0; b0 < g.batch; b0 += MAX_GROUPS) {
    const nb = Math.min(MAX_GROUPS, g.batch - b0);
    launches.push({ spec: s, args: [g.m, g.n, g.k, g.strideA, g.strideB, b0, g.alpha, g.beta], grid: [gx, gy, nb] });
  }
  return launches;
}

/** Rows of out the matrix-vector kernel takes: the few rows of x·Wᵀ while decoding. */
export const GEMV_MAX_M = 4;
/** Threads of a matrix-vector workgroup (they split k) and the output columns it computes. */
const GEMV_WG = 64;
const GEMV_COLS = 4;

/**
 * The end of a matrix-vector kernel: each thread's partial sums `acc` (T = C·M of them) are
 * added up in workgroup memory, then thread t < T holds the sum of column c = t / M, row
 * i = t % M and runs `store` with `sum` (when column n0 + c exists).
 */
function gemvReduce(store: string): string {
  return `  for (var t = 0u; t < T; t = t + 1u) { red[t * WG + lid.x] = acc[t]; }
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h = h >> 1u) {
    if (lid.x < h) {
      for (var t = 0u; t < T; t = t + 1u) { red[t * WG + lid.x] = red[t * WG + lid.x] + red[t * WG + lid.x + h]; }
    }
    workgroupBarrier();
  }
  if (lid.x < T) {
    let c = lid.x / M;
    let i = lid.x % M;
    let sum = red[lid.x * WG];
    if (n0 + c < a.n) {
      ${store}
    }
  }`;
}

/**
 * Whether `gemv` takes this matmul: at most GEMV_MAX_M rows of x·Wᵀ (W [n, k] row-major,
 * the layout of every linear layer) into an f32 out, without f16 compute.
 */
export function gemvApplies(g: MatmulArgs, oType: DType, f16Compute: boolean): boolean {
  return g.m >= 1 && g.m <= GEMV_MAX_M && g.transB && !g.transA && oType === 'f32' && !f16Compute && Math.ceil(g.n / GEMV_COLS) <= MAX_GROUPS;
}

/**
 * out[b] = alpha · A[b] · B[b]ᵀ + beta · out[b] for m ≤ GEMV_MAX_M rows (decoding). The
 * tiled kernel would run such a product in 64- or 128-row tiles, nearly all of them
 * padding, on only n / BN workgroups; here each workgroup computes GEMV_COLS columns of
 * every row, its 64 threads reading W's rows along k side by side (coalesced) and summing
 * their partial products in workgroup memory. W is read once, by n / 4 workgroups.
 */
export function gemv(g: MatmulArgs, aType: DType, bType: DType): Launch[] {
  if (!gemvApplies(g, 'f32', false)) throw new InternalError(`webgpu.gemv: not a matrix-vector product (m ${g.m}, transA ${g.transA}, transB ${g.transB})`);
  const [sa, sb] = [fstore(aType, 'matmul'), fstore(bType, 'matmul')];
  const M = g.m;
  const T = GEMV_COLS * M;
  const s = spec(`gemv:${aType}:${bType}:m${M}`, () => ({
    buffers: [words('A', 'read'), words('B', 'read'), words('o', 'rw')],
    fields: MATMUL_FIELDS,
    body: `const WG = ${GEMV_WG}u;
const C = ${GEMV_COLS}u;
const M = ${M}u;
const T = ${T}u;
var<workgroup> red: array<f32, ${T * GEMV_WG}>;
fn LA(idx: u32) -> f32 { return ${loadExpr(sa, 'A', 'idx')}; }
fn LB(idx: u32) -> f32 { return ${loadExpr(sb, 'B', 'idx')}; }
${accessors({ o: 'f32' }, ['o'])}
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let bt = wid.z + a.b0;
  let n0 = wid.x * C;
  let oa = bt * a.sa;
  let ob = bt * a.sb;
  let oc = bt * a.m * a.n;
  var acc: array<f32, T>;
  for (var k = lid.x; k < a.k; k = k + WG) {
    var xv: array<f32, M>;
    for (var i = 0u; i < M; i = i + 1u) { xv[i] = LA(oa + i * a.k + k); }
    for (var c = 0u; c < C; c = c + 1u) {
      if (n0 + c < a.n) {
        let w = LB(ob + (n0 + c) * a.k + k);
        for (var i = 0u; i < M; i = i + 1u) { acc[c * M + i] = fma(xv[i], w, acc[c * M + i]); }
      }
    }
  }
${gemvReduce(`let idx = oc + i * a.n + n0 + c;
      var v = a.alpha * sum;
      if (a.beta != 0.0) { v = v + a.beta * ld_o(idx); }
      put_o(idx, v, 0.0, false);`)}
}`,
  }));
  return batchLaunches(g, s, Math.ceil(g.n / GEMV_COLS), 1);
}

/** Whether `linear4bit` takes these arguments: at most GEMV_MAX_M rows, words of 8 elements inside one block. */
export function linear4bitApplies(g: Linear4bitArgs): boolean {
  return g.m >= 1 && g.m <= GEMV_MAX_M && g.n > 0 && g.k > 0 && g.k % 8 === 0 && g.blockSize % 8 === 0 && Math.ceil(g.n / GEMV_COLS) <= MAX_GROUPS;
}

/**
 * out [m, n] = x [m, k] · Ŵᵀ (f32 x and out) for m ≤ GEMV_MAX_M rows, Ŵ the 4-bit weight of
 * `dequantize4bit` read packed: `gemv`'s schedule (GEMV_COLS columns per workgroup, its
 * threads splitting k), each thread taking a word of 8 nibbles at a time. An element is
 * code4[nibble]·scale with the scale rounded as `dequantize4bit` rounds it (the same XOR
 * keeps the compiler from fusing it into a multiply-add), so only the order of the sums
 * differs from dequantising and then multiplying.
 */
export function linear4bit(g: Linear4bitArgs): Launch {
  if (!linear4bitApplies(g)) throw new InternalError(`webgpu.linear4bit: not a 4-bit matrix-vector product (m ${g.m}, k ${g.k}, block ${g.blockSize})`);
  const M = g.m;
  const T = GEMV_COLS * M;
  const s = spec(`linear4bit:m${M}`, () => ({
    buffers: [words('x', 'read'), { name: 'packed', access: 'read', type: 'u32' }, { name: 'code4', access: 'read', type: 'f32' },
      { name: 'scodes', access: 'read', type: 'u32' }, { name: 'code8', access: 'read', type: 'f32' },
      { name: 'absmax', access: 'read', type: 'f32' }, words('o', 'rw')],
    fields: [['n', 'u32'], ['k', 'u32'], ['bs', 'u32'], ['sbs', 'u32'], ['off', 'f32'], ['zero', 'u32']],
    body: `const WG = ${GEMV_WG}u;
const C = ${GEMV_COLS}u;
const M = ${M}u;
const T = ${T}u;
var<workgroup> red: array<f32, ${T * GEMV_WG}>;
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n0 = wid.x * C;
  var acc: array<f32, T>;
  for (var p = lid.x * 8u; p < a.k; p = p + WG * 8u) {
    var xv: array<f32, ${8 * M}>;
    for (var i = 0u; i < M; i = i + 1u) {
      for (var e = 0u; e < 8u; e = e + 1u) { xv[i * 8u + e] = bitcast<f32>(x[i * a.k + p + e]); }
    }
    for (var c = 0u; c < C; c = c + 1u) {
      if (n0 + c < a.n) {
        let f = (n0 + c) * a.k + p;
        let word = packed[f >> 3u];
        let b = f / a.bs;
        let code = (scodes[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
        let scale = bitcast<f32>(bitcast<u32>(code8[code] * absmax[b / a.sbs]) ^ a.zero) + a.off;
        for (var e = 0u; e < 8u; e = e + 1u) {
          // Element e of the word: byte e / 2, its high nibble for even e.
          let nib = (word >> ((e >> 1u) * 8u + select(0u, 4u, (e & 1u) == 0u))) & 0xfu;
          let w = code4[nib] * scale;
          for (var i = 0u; i < M; i = i + 1u) { acc[c * M + i] = fma(xv[i * 8u + e], w, acc[c * M + i]); }
        }
      }
    }
  }
${gemvReduce('o[i * a.n + n0 + c] = bitcast<u32>(sum);')}
}`,
  }));
  return { spec: s, args: [g.n, g.k, g.blockSize, g.scaleBlockSize, g.scaleOffset, 0], grid: [Math.ceil(g.n / GEMV_COLS), 1, 1] };
}
