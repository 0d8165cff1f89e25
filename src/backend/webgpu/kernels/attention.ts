/**
 * Fused flash-style attention, forward and backward, for dense causal attention and the
 * three S²-Attn forms, with O(N·D) memory (no N×N scores ever exist).
 *
 * Layout (backend.ts): q, out [B, Nq, H, D]; k, v [B, kvStride, Hkv, D] of which the first
 * Nk rows are keys; lse [B, H, Nq]. Query head h reads kv head ⌊h / (H/Hkv)⌋.
 *
 * The masks are the WGSL twins of attention/mask.ts: `keyRanges(h, qpos)` gives the keys
 * a query sees as two half-open ranges (the second is empty except for the roll form's
 * wrapped group), `queryRanges(h, j)` the queries that see key j. A workgroup first forms
 * the hull of its rows' ranges, visits only the tiles inside it, and checks each (query,
 * key) pair against the exact ranges, so S² costs O(N·G), not O(N²).
 *
 * - forward: a workgroup owns BQ query rows of one (b, h), one thread per row; K/V tiles
 *   of BK keys go through workgroup memory; online softmax in registers.
 * - backward (FlashAttention-2 split, no atomics): δ = rowsum(dO ∘ O); dK/dV with one
 *   thread per key row looping over the query tiles (and every query head of the GQA
 *   group) that can see it; dQ like the forward pass.
 */
import type { AttentionArgs, AttentionMask } from '../../backend.js';
import type { KernelSpec, Launch } from '../wgsl.js';
import { InternalError } from '../../../errors.js';
import { grid1, HALF_CONV, NEG_BIG } from '../wgsl.js';
import { spec } from './elementwise.js';
import { type FStore, loadExpr, pack16 } from './operand.js';

export interface AttentionTiles {
  /** Query rows (= threads) per workgroup in the forward and dQ kernels. */
  BQ: number;
  /** Keys per workgroup-memory tile in the forward and dQ kernels. */
  BK: number;
  /** Key rows (= threads) per workgroup in the dK/dV kernel. */
  BKV: number;
  /** Query rows per workgroup-memory tile in the dK/dV kernel. */
  BQ2: number;
  /**
   * Lanes of head-dim vectors (1, 2 or 4; reduced to one that divides D). Default 1:
   * Mesa's lavapipe takes minutes to compile private arrays of vec4 at D = 64, so vec4 is
   * an option to measure on real GPUs (bench/webgpu.ts --attn-lanes 4).
   */
  W: number;
}

const pow2floor = (x: number): number => 2 ** Math.floor(Math.log2(Math.max(1, x)));

/** Tile sizes that fit `storage` bytes of workgroup memory for head dim D. */
export function attentionTiles(D: number, storage: number): AttentionTiles {
  const room = storage - 512;
  return {
    BQ: 64,
    BK: Math.max(1, Math.min(32, pow2floor(room / (8 * D)))),
    BKV: 64,
    BQ2: Math.max(1, Math.min(32, pow2floor(room / (8 * D + 32)))),
    W: 1,
  };
}

function maskCode(mask: AttentionMask): number {
  if (mask.kind === 'causal') return 0;
  return mask.form === 'segmented' ? 1 : mask.form === 'roll' ? 2 : 3;
}

export const FIELDS = [
  ['B', 'u32'], ['Nq', 'u32'], ['Nk', 'u32'], ['S', 'u32'], ['H', 'u32'], ['Hkv', 'u32'],
  ['qOff', 'u32'], ['G', 'u32'], ['scale', 'f32'], ['mask', 'u32'],
] as const;

export function argValues(g: AttentionArgs): number[] {
  return [g.B, g.Nq, g.Nk, g.kvStride, g.H, g.Hkv, g.qOffset, g.mask.kind === 's2' ? g.mask.group : 1, g.scale, maskCode(g.mask)];
}

/**
 * The mask functions (mask.ts in WGSL); a.mask: 0 causal, 1 segmented, 2 roll, 3 short.
 * The form is an argument, not a constant: the branches are uniform, and one pipeline per
 * head dim serves every form.
 */
export const MASK_FNS = `
fn keyRanges(h: u32, qpos: u32) -> vec4u {
  let end = min(qpos + 1u, a.Nk);
  if (a.mask == 0u) { return vec4u(0u, end, 0u, 0u); }
  let G = a.G;
  let shifted = h >= a.H / 2u;
  if (a.mask == 3u || !shifted) { return vec4u((qpos / G) * G, end, 0u, 0u); }
  let half = G / 2u;
  if (a.mask == 1u) {
    let st = ((qpos + half) / G) * G;
    return vec4u(select(0u, st - half, st >= half), end, 0u, 0u);
  }
  let N = a.Nk;
  let p = (qpos + N - half) % N;
  let lo = (p / G) * G + half;
  let hi = p + half + 1u;
  if (hi <= N) { return vec4u(lo, hi, 0u, 0u); }
  if (lo >= N) { return vec4u(lo - N, hi - N, 0u, 0u); }
  return vec4u(lo, N, 0u, hi - N);
}
fn queryRanges(h: u32, j: u32) -> vec4u {
  let qend = a.qOff + a.Nq;
  if (j >= a.Nk) { return vec4u(0u, 0u, 0u, 0u); }
  if (a.mask == 0u) { return vec4u(max(j, a.qOff), qend, 0u, 0u); }
  let G = a.G;
  let shifted = h >= a.H / 2u;
  if (a.mask == 3u || !shifted) { return vec4u(j, min((j / G + 1u) * G, qend), 0u, 0u); }
  let half = G / 2u;
  if (a.mask == 1u) {
    let st = ((j + half) / G) * G;
    return vec4u(j, min(st + half, qend), 0u, 0u);
  }
  let N = a.Nk;
  let pj = (j + N - half) % N;
  let st = pj + half;
  let en = (pj / G + 1u) * G + half;
  if (st >= N) { return vec4u(st - N, en - N, 0u, 0u); }
  if (en <= N) { return vec4u(st, en, 0u, 0u); }
  return vec4u(st, N, 0u, en - N);
}
fn inRanges(j: u32, r: vec4u) -> bool {
  return (j >= r.x && j < r.y) || (j >= r.z && j < r.w);
}`;

/** Workgroup hull of per-thread ranges: call in uniform control flow; returns [lo, hi). */
export const HULL = `
var<workgroup> hullLo: atomic<u32>;
var<workgroup> hullHi: atomic<u32>;
var<workgroup> hullOut: vec2u;
fn hull(r: vec4u, li: u32) -> vec2u {
  if (li == 0u) { atomicStore(&hullLo, 0xffffffffu); atomicStore(&hullHi, 0u); }
  workgroupBarrier();
  if (r.y > r.x) { atomicMin(&hullLo, r.x); atomicMax(&hullHi, r.y); }
  if (r.w > r.z) { atomicMin(&hullLo, r.z); atomicMax(&hullHi, r.w); }
  workgroupBarrier();
  if (li == 0u) { hullOut = vec2u(atomicLoad(&hullLo), atomicLoad(&hullHi)); }
  let v = workgroupUniformLoad(&hullOut);
  return vec2u(v.x, max(v.x, v.y));
}`;

/**
 * Head-dim vectors are handled W lanes at a time (vec4 or vec2 when that divides D and the
 * tiles allow it, else scalars): `V` is the lane type, `DV = D / W` vectors per row, `vdot`
 * their dot.
 */
function width(D: number, lanes: number): number {
  return lanes >= 4 && D % 4 === 0 ? 4 : lanes >= 2 && D % 2 === 0 ? 2 : 1;
}

export function header(D: number, W: number, consts: Record<string, number>): string {
  const V = W === 1 ? 'f32' : `vec${W}<f32>`;
  return [
    `const D = ${D}u;`, `const DV = ${D / W}u;`, `alias V = ${V};`,
    `fn vdot(x: V, y: V) -> f32 { return ${W === 1 ? 'x * y' : 'dot(x, y)'}; }`,
    ...Object.entries(consts).map(([k, v]) => `const ${k} = ${v}u;`),
  ].join('\n');
}

/** How an operand is stored: f32, or 16 bits read and written directly (mixed precision). */
export type AttnStore = FStore;
/** The storage of each operand: q, k, v, out and dO (read), out, dq, dk and dv (written). */
export interface AttnStores { qb: AttnStore; kb: AttnStore; vb: AttnStore; ob: AttnStore; dob: AttnStore; dqb: AttnStore; dkb: AttnStore; dvb: AttnStore }
export const F32_STORES: AttnStores = { qb: 'f32', kb: 'f32', vb: 'f32', ob: 'f32', dob: 'f32', dqb: 'f32', dkb: 'f32', dvb: 'f32' };
type Operand = 'qb' | 'kb' | 'vb' | 'ob' | 'dob';
export type Written = 'ob' | 'dqb' | 'dkb' | 'dvb';
const READ_FN: Record<Operand, string> = { qb: 'LQ', kb: 'LK', vb: 'LV', ob: 'LO', dob: 'LDO' };

/** WGSL `fn name(i) -> V`: vector i (W lanes) of `buf`, which holds `st` values, as f32 lanes. */
function reader(name: string, buf: string, W: number, st: AttnStore): string {
  if (st === 'f32') return `fn ${name}(i: u32) -> V { return ${buf}[i]; }`;
  const pair = (w: string): string => (st === 'f16' ? `unpack2x16float(${w})` : `vec2<f32>(bitcast<f32>(${w} << 16u), bitcast<f32>(${w} & 0xffff0000u))`);
  if (W === 1) return `fn ${name}(i: u32) -> V { return ${loadExpr(st, buf, 'i')}; }`;
  if (W === 2) return `fn ${name}(i: u32) -> V { return ${pair(`${buf}[i]`)}; }`;
  return `fn ${name}(i: u32) -> V { return vec4<f32>(${pair(`${buf}[2u * i]`)}, ${pair(`${buf}[2u * i + 1u]`)}); }`;
}

/**
 * What a kernel that reads `names` needs of them: each one's binding (an array of V, or of
 * raw words when 16-bit), their read functions (LQ, LK, LV, LO, LDO) and the part of the
 * kernel's key their storage decides.
 */
function operands(W: number, st: AttnStores, names: readonly Operand[]): { bind: (n: Operand) => ReturnType<typeof IN>; read: string; key: string } {
  return {
    bind: (n) => IN(n, st[n] === 'f32' ? vtype(W) : 'u32'),
    read: names.map((n) => reader(READ_FN[n], n, W, st[n])).join('\n'),
    key: names.map((n) => st[n]).join(','),
  };
}

/**
 * A written row operand: its binding (an array of V, or of raw words when 16-bit), the
 * key part, HALF_CONV when 16-bit, and `row(base, val)`, WGSL storing the DV vectors
 * `val(d)` from vector index `base`. 16-bit values are written a whole word at a time:
 * pairs of scalars (W = 1, which needs an even D), one vec2 or two words per vec4.
 */
export function written(W: number, D: number, st: AttnStores, n: Written): { bind: ReturnType<typeof OUT>; key: string; conv: string; row: (base: string, val: (d: string) => string) => string } {
  const s = st[n];
  const loop = (step: number, body: string): string => `for (var d = 0u; d < DV; d = d + ${step}u) { ${body} }`;
  if (s === 'f32') return { bind: OUT(n, vtype(W)), key: s, conv: '', row: (base, val) => loop(1, `${n}[${base} + d] = ${val('d')};`) };
  if (W === 1 && D % 2 !== 0) throw new InternalError(`webgpu attention: a 16-bit ${n} needs an even head dim, got ${D}`);
  const row = (base: string, val: (d: string) => string): string => {
    if (W === 1) return loop(2, `${n}[(${base} + d) >> 1u] = ${pack16(s, val('d'), val('(d + 1u)'))};`);
    if (W === 2) return loop(1, `let v = ${val('d')}; ${n}[${base} + d] = ${pack16(s, 'v.x', 'v.y')};`);
    return loop(1, `let v = ${val('d')}; ${n}[2u * (${base} + d)] = ${pack16(s, 'v.x', 'v.y')}; ${n}[2u * (${base} + d) + 1u] = ${pack16(s, 'v.z', 'v.w')};`);
  };
  return { bind: OUT(n, 'u32'), key: s, conv: HALF_CONV, row };
}

export const IN = (name: string, type = 'f32') => ({ name, access: 'read' as const, type });
export const OUT = (name: string, type = 'f32') => ({ name, access: 'rw' as const, type });
const vtype = (W: number): string => (W === 1 ? 'f32' : `vec${W}<f32>`);

/**
 * The start of the two kernels that run one query row per invocation (forward and dQ):
 * shared K/V tiles, and the row's head, batch, kv head, index, key ranges and their hull.
 */
function queryRowPrelude(D: number, W: number, t: AttentionTiles, read: string): string {
  return `${header(D, W, { BQ: t.BQ, BK: t.BK })}
${read}
${MASK_FNS}
${HULL}
var<workgroup> Ks: array<V, ${(t.BK * D) / W}>;
var<workgroup> Vs: array<V, ${(t.BK * D) / W}>;
@compute @workgroup_size(${t.BQ})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (a.H / a.Hkv);
  let i = wid.x * BQ + li;
  let valid = i < a.Nq;
  var r = vec4u(0u);
  if (valid) { r = keyRanges(h, a.qOff + i); }
  let hv = hull(r, li);`;
}

/** Inside a loop over key blocks from t0: the workgroup loads the block's K and V rows into Ks, Vs. */
const LOAD_KV_TILE = `    for (var e = li; e < BK * DV; e = e + BQ) {
      let j = t0 + e / DV;
      if (j < hv.y) {
        let ko = ((b * a.S + j) * a.Hkv + kvh) * DV + e % DV;
        Ks[e] = LK(ko);
        Vs[e] = LV(ko);
      }
    }
    workgroupBarrier();`;

function forwardSpec(D: number, t: AttentionTiles, st: AttnStores): KernelSpec {
  const W = width(D, t.W);
  const op = operands(W, st, ['qb', 'kb', 'vb']);
  const o = written(W, D, st, 'ob');
  return spec(`attn:${D}:${t.BQ}:${t.BK}:${W}:${op.key}:${o.key}`, () => ({
    buffers: [op.bind('qb'), op.bind('kb'), op.bind('vb'), o.bind, OUT('lse')],
    fields: FIELDS,
    body: `${o.conv}
${queryRowPrelude(D, W, t, op.read)}
  var q: array<V, DV>;
  var acc = array<V, DV>();
  var m = ${NEG_BIG};
  var l = 0.0;
  let qo = ((b * a.Nq + i) * a.H + h) * DV;
  if (valid) { for (var d = 0u; d < DV; d = d + 1u) { q[d] = LQ(qo + d) * a.scale; } }
  for (var t0 = hv.x; t0 < hv.y; t0 = t0 + BK) {
${LOAD_KV_TILE}
    if (valid) {
      var sv: array<f32, BK>;
      var mt = m;
      for (var jj = 0u; jj < BK; jj = jj + 1u) {
        let j = t0 + jj;
        var s = ${NEG_BIG};
        if (j < hv.y && inRanges(j, r)) {
          var dot = 0.0;
          for (var d = 0u; d < DV; d = d + 1u) { dot = dot + vdot(q[d], Ks[jj * DV + d]); }
          s = dot;
          mt = max(mt, s);
        }
        sv[jj] = s;
      }
      if (mt > m) {
        let corr = exp(m - mt);
        l = l * corr;
        for (var d = 0u; d < DV; d = d + 1u) { acc[d] = acc[d] * corr; }
        m = mt;
      }
      for (var jj = 0u; jj < BK; jj = jj + 1u) {
        if (sv[jj] > -1.0e38) {
          let p = exp(sv[jj] - m);
          l = l + p;
          for (var d = 0u; d < DV; d = d + 1u) { acc[d] = fma(V(p), Vs[jj * DV + d], acc[d]); }
        }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let inv = 1.0 / l;
    ${o.row('qo', (d) => `acc[${d}] * inv`)}
    lse[(b * a.H + h) * a.Nq + i] = m + log(l);
  }
}`,
  }));
}

export function attention(g: AttentionArgs, t: AttentionTiles, st: AttnStores = F32_STORES): Launch {
  return {
    spec: forwardSpec(g.D, t, st),
    args: argValues(g),
    grid: [Math.ceil(g.Nq / t.BQ), g.H, g.B],
  };
}

/** Threads of the decoding kernel; keys per tile are the same number. */
const DECODE_WG = 256;

/** Whether `attentionDecode` takes this call: one query row (a decoding step), a head dim that divides its threads. */
export function decodeApplies(g: AttentionArgs): boolean {
  return g.Nq === 1 && g.D <= DECODE_WG && DECODE_WG % g.D === 0;
}

/**
 * The forward pass for one query row per (b, h) — a decoding step over the KV cache. The
 * general kernel runs a row per thread, so there one thread of each head's workgroup would
 * walk every key alone; here a workgroup of 256 threads shares one row: each tile of 256
 * keys is scored a key per thread (online softmax, max and sum reduced in workgroup
 * memory), and the weighted sum of V is split over the threads, 256 / D keys at a time per
 * head-dim column. Any mask (the ranges of `keyRanges`); out and lse as the general kernel.
 */
function decodeSpec(D: number, st: AttnStores): KernelSpec {
  const op = operands(1, st, ['qb', 'kb', 'vb']);
  const o = written(1, D, st, 'ob');
  return spec(`attnDecode:${D}:${op.key}:${o.key}`, () => ({
    buffers: [op.bind('qb'), op.bind('kb'), op.bind('vb'), o.bind, OUT('lse')],
    fields: FIELDS,
    body: `${o.conv}
${header(D, 1, { WG: DECODE_WG, GR: DECODE_WG / D })}
${op.read}
${MASK_FNS}
var<workgroup> qs: array<f32, D>;
var<workgroup> ps: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> part: array<f32, WG>;
var<workgroup> outs: array<f32, D>;
/** Max (op 0) or sum (op 1) of every thread's x; call in uniform control flow. */
fn reduce(x: f32, li: u32, op: u32) -> f32 {
  red[li] = x;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = select(red[li] + red[li + s], max(red[li], red[li + s]), op == 0u); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(${DECODE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let b = wid.y;
  let kvh = h / (a.H / a.Hkv);
  let qo = (b * a.H + h) * D;
  if (li < D) { qs[li] = LQ(qo + li) * a.scale; }
  workgroupBarrier();
  let r = keyRanges(h, a.qOff);
  let lo = select(r.x, min(r.x, r.z), r.w > r.z);
  let hi = max(r.y, r.w);
  let g = li / D;
  let dcol = li % D;
  var m = ${NEG_BIG};
  var l = 0.0;
  var acc = 0.0;
  for (var t0 = lo; t0 < hi; t0 = t0 + WG) {
    let j = t0 + li;
    var s = ${NEG_BIG};
    if (j < hi && inRanges(j, r)) {
      let kb = ((b * a.S + j) * a.Hkv + kvh) * D;
      var dot = 0.0;
      for (var d = 0u; d < D; d = d + 1u) { dot = fma(qs[d], LK(kb + d), dot); }
      s = dot;
    }
    let mNew = max(m, reduce(s, li, 0u));
    var p = 0.0;
    if (s > -1.0e38) { p = exp(s - mNew); }
    ps[li] = p;
    let corr = exp(m - mNew);
    l = l * corr + reduce(p, li, 1u);
    acc = acc * corr;
    for (var jj = g; jj < WG; jj = jj + GR) {
      let pj = ps[jj];
      if (pj != 0.0) { acc = fma(pj, LV(((b * a.S + t0 + jj) * a.Hkv + kvh) * D + dcol), acc); }
    }
    m = mNew;
    workgroupBarrier();
  }
  part[li] = acc;
  workgroupBarrier();
  if (li < D) {
    var sum = 0.0;
    for (var gg = 0u; gg < GR; gg = gg + 1u) { sum = sum + part[gg * D + li]; }
    outs[li] = sum / l;
  }
  workgroupBarrier();
  if (li == 0u) {
    ${o.row('qo', (d) => `outs[${d}]`)}
    lse[b * a.H + h] = m + log(l);
  }
}`,
  }));
}

/** A decoding step's attention (see `decodeSpec`); `decodeApplies` must hold. */
export function attentionDecode(g: AttentionArgs, st: AttnStores = F32_STORES): Launch {
  if (!decodeApplies(g)) throw new InternalError(`webgpu attentionDecode: needs one query row and a head dim dividing ${DECODE_WG}, got Nq ${g.Nq}, D ${g.D}`);
  return { spec: decodeSpec(g.D, st), args: argValues(g), grid: [g.H, g.B, 1] };
}

/** δ[b, h, i] = Σ_d dO·O. */
export function attentionDelta(g: AttentionArgs, t: AttentionTiles, st: AttnStores = F32_STORES): Launch {
  const W = width(g.D, t.W);
  const op = operands(W, st, ['ob', 'dob']);
  return {
    spec: spec(`attnDelta:${g.D}:${W}:${op.key}`, () => ({
      buffers: [op.bind('ob'), op.bind('dob'), OUT('delta')],
      fields: [['n', 'u32'], ['Nq', 'u32'], ['H', 'u32']],
      body: `${header(g.D, W, {})}
${op.read}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let x = (wid.y * nwg.x + wid.x) * 256u + li;
  if (x >= a.n) { return; }
  var s = 0.0;
  for (var d = 0u; d < DV; d = d + 1u) { s = s + vdot(LDO(x * DV + d), LO(x * DV + d)); }
  let h = x % a.H;
  let bi = x / a.H;
  let b = bi / a.Nq;
  let i = bi % a.Nq;
  delta[(b * a.H + h) * a.Nq + i] = s;
}`,
    })),
    args: [g.B * g.Nq * g.H, g.Nq, g.H],
    grid: grid1(g.B * g.Nq * g.H),
  };
}

export function attentionDq(g: AttentionArgs, t: AttentionTiles, st: AttnStores = F32_STORES): Launch {
  const D = g.D;
  const W = width(D, t.W);
  const op = operands(W, st, ['qb', 'kb', 'vb', 'dob']);
  const o = written(W, D, st, 'dqb');
  return {
    spec: spec(`attnDq:${D}:${t.BQ}:${t.BK}:${W}:${op.key}:${o.key}`, () => ({
      buffers: [op.bind('qb'), op.bind('kb'), op.bind('vb'), IN('lse'), IN('delta'), op.bind('dob'), o.bind],
      fields: FIELDS,
      body: `${o.conv}
${queryRowPrelude(D, W, t, op.read)}
  var q: array<V, DV>;
  var dO: array<V, DV>;
  var dq = array<V, DV>();
  var lrow = 0.0;
  var drow = 0.0;
  let qo = ((b * a.Nq + i) * a.H + h) * DV;
  if (valid) {
    for (var d = 0u; d < DV; d = d + 1u) { q[d] = LQ(qo + d) * a.scale; dO[d] = LDO(qo + d); }
    lrow = lse[(b * a.H + h) * a.Nq + i];
    drow = delta[(b * a.H + h) * a.Nq + i];
  }
  for (var t0 = hv.x; t0 < hv.y; t0 = t0 + BK) {
${LOAD_KV_TILE}
    if (valid) {
      for (var jj = 0u; jj < BK; jj = jj + 1u) {
        let j = t0 + jj;
        if (j >= hv.y) { break; }
        if (!inRanges(j, r)) { continue; }
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < DV; d = d + 1u) {
          s = s + vdot(q[d], Ks[jj * DV + d]);
          dp = dp + vdot(dO[d], Vs[jj * DV + d]);
        }
        let ds = V(exp(s - lrow) * (dp - drow));
        for (var d = 0u; d < DV; d = d + 1u) { dq[d] = fma(ds, Ks[jj * DV + d], dq[d]); }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    ${o.row('qo', (d) => `dq[${d}] * a.scale`)}
  }
}`,
    })),
    args: argValues(g),
    grid: [Math.ceil(g.Nq / t.BQ), g.H, g.B],
  };
}

/**
 * WGSL inside the dK/dV kernels' loop over query tiles from t0 (rows below rhi): the lse,
 * δ and key ranges of head h's query rows t0 + e, e < count, into the workgroup arrays L,
 * Dl and R (empty ranges past rhi), `step` rows apart per thread.
 */
export function queryRowState(count: string, step: string, L: string, Dl: string, R: string): string {
  return `      for (var e = li; e < ${count}; e = e + ${step}) {
        let i = t0 + e;
        if (i < rhi) {
          ${L}[e] = lse[(b * a.H + h) * a.Nq + i];
          ${Dl}[e] = delta[(b * a.H + h) * a.Nq + i];
          ${R}[e] = keyRanges(h, a.qOff + i);
        } else {
          ${R}[e] = vec4u(0u);
        }
      }`;
}

export function attentionDkv(g: AttentionArgs, t: AttentionTiles, st: AttnStores = F32_STORES): Launch {
  const D = g.D;
  const W = width(D, t.W);
  const op = operands(W, st, ['qb', 'kb', 'vb', 'dob']);
  const ok = written(W, D, st, 'dkb');
  const ov = written(W, D, st, 'dvb');
  return {
    spec: spec(`attnDkv:${D}:${t.BKV}:${t.BQ2}:${W}:${op.key}:${ok.key},${ov.key}`, () => ({
      buffers: [op.bind('qb'), op.bind('kb'), op.bind('vb'), IN('lse'), IN('delta'), op.bind('dob'), ok.bind, ov.bind],
      fields: FIELDS,
      body: `${ok.conv || ov.conv}
${header(D, W, { BKV: t.BKV, BQ2: t.BQ2 })}
${op.read}
${MASK_FNS}
${HULL}
var<workgroup> Qs: array<V, ${(t.BQ2 * D) / W}>;
var<workgroup> dOs: array<V, ${(t.BQ2 * D) / W}>;
var<workgroup> Ls: array<f32, BQ2>;
var<workgroup> Ds: array<f32, BQ2>;
var<workgroup> Rs: array<vec4u, BQ2>;
@compute @workgroup_size(${t.BKV})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let kvh = wid.y;
  let b = wid.z;
  let j = wid.x * BKV + li;
  let valid = j < a.Nk;
  let ko = ((b * a.S + j) * a.Hkv + kvh) * DV;
  var k: array<V, DV>;
  var v: array<V, DV>;
  var dk = array<V, DV>();
  var dv = array<V, DV>();
  if (valid) { for (var d = 0u; d < DV; d = d + 1u) { k[d] = LK(ko + d) * a.scale; v[d] = LV(ko + d); } }
  let rep = a.H / a.Hkv;
  let qend = a.qOff + a.Nq;
  for (var hh = 0u; hh < rep; hh = hh + 1u) {
    let h = kvh * rep + hh;
    var qr = vec4u(0u);
    if (valid) { qr = queryRanges(h, j); }
    let hv = hull(qr, li);
    // positions → query rows
    let rlo = max(hv.x, a.qOff) - a.qOff;
    let rhi = max(min(hv.y, qend), a.qOff) - a.qOff;
    for (var t0 = rlo; t0 < rhi; t0 = t0 + BQ2) {
      for (var e = li; e < BQ2 * DV; e = e + BKV) {
        let i = t0 + e / DV;
        if (i < rhi) {
          let qo = ((b * a.Nq + i) * a.H + h) * DV + e % DV;
          Qs[e] = LQ(qo);
          dOs[e] = LDO(qo);
        }
      }
${queryRowState('BQ2', 'BKV', 'Ls', 'Ds', 'Rs')}
      workgroupBarrier();
      if (valid) {
        for (var ii = 0u; ii < BQ2; ii = ii + 1u) {
          if (!inRanges(j, Rs[ii])) { continue; }
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < DV; d = d + 1u) {
            s = s + vdot(Qs[ii * DV + d], k[d]);
            dp = dp + vdot(dOs[ii * DV + d], v[d]);
          }
          let p = exp(s - Ls[ii]);
          let pv = V(p);
          let ds = V(p * (dp - Ds[ii]));
          for (var d = 0u; d < DV; d = d + 1u) {
            dv[d] = fma(pv, dOs[ii * DV + d], dv[d]);
            dk[d] = fma(ds, Qs[ii * DV + d], dk[d]);
          }
        }
      }
      workgroupBarrier();
    }
  }
  if (j < a.S) {
    ${ok.row('ko', (d) => `dk[${d}] * a.scale`)}
    ${ov.row('ko', (d) => `dv[${d}]`)}
  }
}`,
    })),
    args: argValues(g),
    grid: [Math.ceil(g.kvStride / t.BKV), g.Hkv, g.B],
  };
}
