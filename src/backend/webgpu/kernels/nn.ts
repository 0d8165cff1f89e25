/**
 * Row kernels (softmax, RMSNorm, cross-entropy: one workgroup per row, reductions in
 * workgroup memory), RoPE, embedding gather/scatter-add and AdamW.
 */
import type { AdamWArgs } from '../../backend.js';
import { InternalError } from '../../../errors.js';
import type { Launch } from '../wgsl.js';
import { grid1, gridRows, main1d, mainRows, NEG_BIG, STATUS_BAD_TARGET, STATUS_BAD_TOKEN, WG_REDUCE } from '../wgsl.js';
import { spec, type Stores } from './elementwise.js';
import { accessors, type FStore, words } from './operand.js';

const IN = (name: string, type = 'f32') => ({ name, access: 'read' as const, type });
const OUT = (name: string, type = 'f32') => ({ name, access: 'rw' as const, type });

export function softmax(rows: number, cols: number): Launch {
  return {
    spec: spec('softmax', () => ({
      buffers: [IN('x'), OUT('o')],
      fields: [['rows', 'u32'], ['cols', 'u32']],
      body: `${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  let base = row * a.cols;
  var m = ${NEG_BIG};
  for (var c = li; c < a.cols; c = c + 256u) { m = max(m, x[base + c]); }
  m = wg_max(m, li);
  var s = 0.0;
  for (var c = li; c < a.cols; c = c + 256u) { s = s + exp(x[base + c] - m); }
  s = wg_sum(s, li);
  let l = m + log(s);
  for (var c = li; c < a.cols; c = c + 256u) { o[base + c] = exp(x[base + c] - l); }
}`,
    })),
    args: [rows, cols],
    grid: gridRows(rows),
  };
}

export function softmaxBackward(rows: number, cols: number): Launch {
  return {
    spec: spec('softmaxBackward', () => ({
      buffers: [IN('y'), IN('dy'), OUT('dx')],
      fields: [['rows', 'u32'], ['cols', 'u32']],
      body: `${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  let base = row * a.cols;
  var d = 0.0;
  for (var c = li; c < a.cols; c = c + 256u) { d = d + dy[base + c] * y[base + c]; }
  d = wg_sum(d, li);
  for (var c = li; c < a.cols; c = c + 256u) { dx[base + c] = y[base + c] * (dy[base + c] - d); }
}`,
    })),
    args: [rows, cols],
    grid: gridRows(rows),
  };
}

/**
 * A loop over a row's columns c of `out` (threads li of 256): by pairs when `pair` (even
 * rows, so 16-bit outputs write whole words), else one at a time (f32 outputs only).
 * `val(c)` is the WGSL value of column c.
 */
function rowStore(pair: boolean, out: string, base: string, val: (c: string) => string): string {
  return pair
    ? `for (var c = 2u * li; c < a.C; c = c + 512u) { put_${out}(${base} + c, ${val('c')}, ${val('(c + 1u)')}, true); }`
    : `for (var c = li; c < a.C; c = c + 256u) { put_${out}(${base} + c, ${val('c')}, 0.0, false); }`;
}

/** Operand storage of a kernel, all f32 unless given; a 16-bit output needs `pair` mode. */
function stores<K extends string>(kernel: string, names: readonly K[], outs: readonly K[], st: Stores, pair: boolean): Record<K, FStore> {
  const r = {} as Record<K, FStore>;
  for (const n of names) r[n] = st[n] ?? 'f32';
  for (const o of outs) if (!pair && r[o] !== 'f32') throw new InternalError(`webgpu.${kernel}: a 16-bit ${o} needs an even row length`);
  return r;
}

export function rmsnorm(rows: number, C: number, eps: number, st: Stores = {}): Launch {
  const pair = C % 2 === 0;
  const S = stores('rmsnorm', ['x', 'w', 'o'], ['o'], st, pair);
  return {
    spec: spec(`rmsnorm:${pair}:${S.x},${S.w},${S.o}`, () => ({
      buffers: [words('x', 'read'), words('w', 'read'), words('o', 'rw'), OUT('rstd')],
      fields: [['rows', 'u32'], ['C', 'u32'], ['eps', 'f32']],
      body: `${accessors(S, ['o'])}
${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  let base = row * a.C;
  var ss = 0.0;
  for (var c = li; c < a.C; c = c + 256u) { let v = ld_x(base + c); ss = ss + v * v; }
  ss = wg_sum(ss, li);
  let s = 1.0 / sqrt(ss / f32(a.C) + a.eps);
  if (li == 0u) { rstd[row] = s; }
  ${rowStore(pair, 'o', 'base', (c) => `ld_x(base + ${c}) * s * ld_w(${c})`)}
}`,
    })),
    args: [rows, C, eps],
    grid: gridRows(rows),
  };
}

/** dx = s·(dy·w − x̂·mean(dy·w·x̂)) per row. */
export function rmsnormBackwardDx(rows: number, C: number, st: Stores = {}): Launch {
  const pair = C % 2 === 0;
  const S = stores('rmsnormBackward', ['x', 'w', 'dy', 'dx'], ['dx'], st, pair);
  return {
    spec: spec(`rmsnormBackwardDx:${pair}:${S.x},${S.w},${S.dy},${S.dx}`, () => ({
      buffers: [words('x', 'read'), words('w', 'read'), IN('rstd'), words('dy', 'read'), words('dx', 'rw')],
      fields: [['rows', 'u32'], ['C', 'u32']],
      body: `${accessors(S, ['dx'])}
${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  let base = row * a.C;
  let s = rstd[row];
  var d = 0.0;
  for (var c = li; c < a.C; c = c + 256u) { d = d + ld_dy(base + c) * ld_w(c) * ld_x(base + c) * s; }
  d = wg_sum(d, li);
  let m = d / f32(a.C);
  ${rowStore(pair, 'dx', 'base', (c) => `s * (ld_dy(base + ${c}) * ld_w(${c}) - (ld_x(base + ${c}) * s) * m)`)}
}`,
    })),
    args: [rows, C],
    grid: gridRows(rows),
  };
}

/** dw[c] += Σ_rows dy·x̂ (dw f32): one thread per channel, so no two threads add into one element. */
export function rmsnormBackwardDw(rows: number, C: number, st: Stores = {}): Launch {
  const S = stores('rmsnormBackward', ['x', 'dy'], [], st, true);
  return {
    spec: spec(`rmsnormBackwardDw:${S.x},${S.dy}`, () => ({
      buffers: [words('x', 'read'), IN('rstd'), words('dy', 'read'), OUT('dw')],
      fields: [['rows', 'u32'], ['C', 'u32']],
      body: `${accessors(S, [])}
${main1d()}
  if (i >= a.C) { return; }
  var acc = 0.0;
  for (var r = 0u; r < a.rows; r = r + 1u) { acc = acc + ld_dy(r * a.C + i) * ld_x(r * a.C + i) * rstd[r]; }
  dw[i] = dw[i] + acc;
}`,
    })),
    args: [rows, C],
    grid: grid1(C),
  };
}

/** RoPE over x [B, N, H, D] with tables [N, D/2]; pairs of d per thread when D/2 is even. */
export function rope(B: number, N: number, H: number, D: number, inverse: boolean, st: Stores = {}): Launch {
  const half = D / 2;
  const pair = half % 2 === 0;
  const P = pair ? 2 : 1;
  const S = stores('rope', ['x', 'cs', 'sn', 'o'], ['o'], st, pair);
  const n = (B * N * H * half) / P;
  const rot = (k: string): string => `let c${k} = ld_cs(t + ${k}u);
  let s${k} = a.sgn * ld_sn(t + ${k}u);
  let x${k} = ld_x(o0 + d + ${k}u);
  let y${k} = ld_x(o0 + d + ${k}u + a.half);`;
  return {
    spec: spec(`rope:${pair}:${S.x},${S.cs},${S.sn},${S.o}`, () => ({
      buffers: [words('x', 'read'), words('cs', 'read'), words('sn', 'read'), words('o', 'rw')],
      fields: [['n', 'u32'], ['N', 'u32'], ['H', 'u32'], ['half', 'u32'], ['sgn', 'f32']],
      body: `${accessors(S, ['o'])}
${main1d()}
  if (i >= a.n) { return; }
  let per = a.half / ${P}u;
  let d = (i % per) * ${P}u;
  let r = i / per;
  let h = r % a.H;
  let bn = r / a.H;
  let tok = bn % a.N;
  let o0 = (bn * a.H + h) * 2u * a.half;
  let t = tok * a.half + d;
  ${rot('0')}${pair ? `
  ${rot('1')}
  put_o(o0 + d, x0 * c0 - y0 * s0, x1 * c1 - y1 * s1, true);
  put_o(o0 + d + a.half, y0 * c0 + x0 * s0, y1 * c1 + x1 * s1, true);` : `
  put_o(o0 + d, x0 * c0 - y0 * s0, 0.0, false);
  put_o(o0 + d + a.half, y0 * c0 + x0 * s0, 0.0, false);`}
}`,
    })),
    args: [n, N, H, half, inverse ? -1 : 1],
    grid: grid1(n),
  };
}

/** Rows of the table [V, C] for ids [T] → out [T, C]; pairs of columns per thread when C is even. */
export function gather(V: number, C: number, T: number, st: Stores = {}): Launch {
  const pair = C % 2 === 0;
  const P = pair ? 2 : 1;
  const S = stores('gather', ['table', 'o'], ['o'], st, pair);
  return {
    spec: spec(`gather:${pair}:${S.table},${S.o}`, () => ({
      status: true,
      buffers: [words('table', 'read'), IN('ids', 'i32'), words('o', 'rw')],
      fields: [['n', 'u32'], ['V', 'u32'], ['C', 'u32']],
      body: `${accessors(S, ['o'])}
${main1d()}
  let e = i * ${P}u;
  if (e >= a.n) { return; }
  let t = e / a.C;
  let c = e % a.C;
  let id = ids[t];
  if (id < 0 || u32(id) >= a.V) {
    if (c == 0u) { report(${STATUS_BAD_TOKEN}u, t, id, a.V); }
    put_o(e, 0.0, 0.0, ${pair});
    return;
  }
  let src = u32(id) * a.C + c;
  put_o(e, ld_table(src), ${pair ? 'ld_table(src + 1u)' : '0.0'}, ${pair});
}`,
    })),
    args: [T * C, V, C],
    grid: grid1((T * C) / P),
  };
}

/**
 * dtable[ids[t]] += dy[t]: one thread per channel walks the tokens in order, so repeated
 * ids never race and the sum order equals the reference's.
 */
export function scatterAdd(V: number, C: number, T: number): Launch {
  return {
    spec: spec('scatterAdd', () => ({
      status: true,
      buffers: [IN('dy'), IN('ids', 'i32'), OUT('dt')],
      fields: [['T', 'u32'], ['V', 'u32'], ['C', 'u32']],
      body: `${main1d()}
  if (i >= a.C) { return; }
  for (var t = 0u; t < a.T; t = t + 1u) {
    let id = ids[t];
    if (id < 0 || u32(id) >= a.V) {
      if (i == 0u) { report(${STATUS_BAD_TOKEN}u, t, id, a.V); }
      continue;
    }
    let k = u32(id) * a.C + i;
    dt[k] = dt[k] + dy[t * a.C + i];
  }
}`,
    })),
    args: [T, V, C],
    grid: grid1(C),
  };
}

export function crossEntropy(T: number, V: number, ignoreIndex: number): Launch {
  return {
    spec: spec('crossEntropy', () => ({
      status: true,
      buffers: [IN('x'), IN('tg', 'i32'), OUT('loss'), OUT('lse')],
      fields: [['rows', 'u32'], ['V', 'u32'], ['ignore', 'i32']],
      body: `${WG_REDUCE}
${mainRows()}
  if (row >= a.rows) { return; }
  let base = row * a.V;
  var m = ${NEG_BIG};
  for (var c = li; c < a.V; c = c + 256u) { m = max(m, x[base + c]); }
  m = wg_max(m, li);
  var s = 0.0;
  for (var c = li; c < a.V; c = c + 256u) { s = s + exp(x[base + c] - m); }
  s = wg_sum(s, li);
  if (li != 0u) { return; }
  let l = m + log(s);
  lse[row] = l;
  let y = tg[row];
  if (y == a.ignore) { loss[row] = 0.0; return; }
  if (y < 0 || u32(y) >= a.V) { report(${STATUS_BAD_TARGET}u, row, y, a.V); loss[row] = 0.0; return; }
  loss[row] = l - x[base + u32(y)];
}`,
    })),
    args: [T, V, ignoreIndex],
    grid: gridRows(T),
  };
}

export function crossEntropyBackward(T: number, V: number, ignoreIndex: number): Launch {
  return {
    spec: spec('crossEntropyBackward', () => ({
      buffers: [IN('x'), IN('tg', 'i32'), IN('lse'), IN('dl'), OUT('dx')],
      fields: [['n', 'u32'], ['V', 'u32'], ['ignore', 'i32']],
      body: `${main1d()}
  if (i >= a.n) { return; }
  let t = i / a.V;
  let v = i % a.V;
  let y = tg[t];
  if (y == a.ignore) { dx[i] = 0.0; return; }
  let hot = select(0.0, 1.0, y >= 0 && u32(y) == v);
  dx[i] = dl[t] * (exp(x[i] - lse[t]) - hot);
}`,
    })),
    args: [T * V, V, ignoreIndex],
    grid: grid1(T * V),
  };
}

export function adamw(n: number, g: AdamWArgs): Launch {
  const bc1 = 1 - g.beta1 ** g.step;
  const bc2 = Math.sqrt(1 - g.beta2 ** g.step);
  return {
    spec: spec('adamw', () => ({
      buffers: [OUT('p'), IN('g'), OUT('m'), OUT('v')],
      fields: [['n', 'u32'], ['b1', 'f32'], ['c1', 'f32'], ['b2', 'f32'], ['c2', 'f32'], ['eps', 'f32'], ['decay', 'f32'], ['step', 'f32'], ['bc2', 'f32']],
      body: `${main1d()}
  if (i >= a.n) { return; }
  let gi = g[i];
  let mi = a.b1 * m[i] + a.c1 * gi;
  let vi = a.b2 * v[i] + a.c2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / a.bc2 + a.eps;
  p[i] = p[i] * a.decay - a.step * (mi / denom);
}`,
    })),
    args: [n, g.beta1, 1 - g.beta1, g.beta2, 1 - g.beta2, g.eps, 1 - g.lr * g.weightDecay, g.lr / bc1, bc2],
    grid: grid1(n),
  };
}

/**
 * NF4 dequantisation (backend.ts `Dequantize4bitArgs`): one thread per output element.
 * Each product and sum is a separate float32 operation, as the contract asks.
 */
export function dequantize4bit(n: number, blockSize: number, scaleBlockSize: number, scaleOffset: number): Launch {
  return {
    spec: spec('dequantize4bit', () => ({
      buffers: [IN('packed', 'u32'), IN('code4'), IN('scodes', 'u32'), IN('code8'), IN('absmax'), OUT('o')],
      fields: [['n', 'u32'], ['bs', 'u32'], ['sbs', 'u32'], ['off', 'f32'], ['zero', 'u32']],
      body: `${main1d()}
  if (i >= a.n) { return; }
  let byteIndex = i >> 1u;
  let byte = (packed[byteIndex >> 2u] >> ((byteIndex & 3u) * 8u)) & 0xffu;
  let nib = select(byte & 0xfu, byte >> 4u, (i & 1u) == 0u);
  let b = i / a.bs;
  let code = (scodes[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
  // The XOR with a uniform zero makes the rounded product opaque to the compiler, so it
  // cannot contract the product and the sum into one fused multiply-add.
  let prod = bitcast<f32>(bitcast<u32>(code8[code] * absmax[b / a.sbs]) ^ a.zero);
  let scale = prod + a.off;
  o[i] = code4[nib] * scale;
}`,
    })),
    args: [n, blockSize, scaleBlockSize, scaleOffset, 0],
    grid: grid1(n),
  };
}
