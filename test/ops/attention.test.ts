/**
 * The attention kernel (dense causal and S²-Attn) against plain masked attention built
 * from basic ops with the SPEC's mask definitions, forward and gradients, plus a host
 * reference of dense causal attention.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AttentionMask } from '../../src/backend/backend.js';
import { attention } from '../../src/attention/attention.js';
import { keyRanges } from '../../src/attention/mask.js';
import { allowedByDefinition, referenceAttention } from '../../src/attention/reference.js';
import { checkOp } from '../helpers/optest.js';
import { zeros } from '../../src/tensor/ops/index.js';

/** Host dense causal attention with GQA; q [B,Nq,H,D], k/v [B,Nk,Hkv,D]. */
function hostCausal(q: Float64Array, k: Float64Array, v: Float64Array, B: number, Nq: number, Nk: number, H: number, Hkv: number, D: number, qOffset: number): Float64Array {
  const out = new Float64Array(q.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < Nq; i++) {
    const g = Math.floor(h / (H / Hkv));
    const qo = ((b * Nq + i) * H + h) * D;
    const s: number[] = [];
    for (let j = 0; j <= qOffset + i; j++) {
      let d = 0;
      for (let e = 0; e < D; e++) d += q[qo + e]! * k[((b * Nk + j) * Hkv + g) * D + e]!;
      s.push(d / Math.sqrt(D));
    }
    const m = Math.max(...s);
    const p = s.map((x) => Math.exp(x - m));
    const z = p.reduce((a, x) => a + x, 0);
    for (let e = 0; e < D; e++) {
      let acc = 0;
      p.forEach((pj, j) => { acc += pj * v[((b * Nk + j) * Hkv + g) * D + e]!; });
      out[qo + e] = acc / z;
    }
  }
  return out;
}

interface Case { B: number; Nq: number; Nk: number; H: number; Hkv: number; D: number; qOffset?: number; mask?: AttentionMask; capacity?: number }

function attnCase(name: string, c: Case): Parameters<typeof checkOp>[0] {
  const rows = c.capacity ?? c.Nk;
  const opts = { mask: c.mask ?? { kind: 'causal' as const }, qOffset: c.qOffset ?? 0, kvLength: c.Nk };
  return {
    name,
    inputs: [{ shape: [c.B, c.Nq, c.H, c.D] }, { shape: [c.B, rows, c.Hkv, c.D] }, { shape: [c.B, rows, c.Hkv, c.D] }],
    fn: (q, k, v) => attention(q, k, v, opts),
    twin: (q, k, v) => referenceAttention(q, k, v, opts),
    ...(opts.mask.kind === 'causal' ? { reference: (q: Float64Array, k: Float64Array, v: Float64Array) => hostCausal(q, k, v, c.B, c.Nq, rows, c.H, c.Hkv, c.D, opts.qOffset) } : {}),
    fdSamples: 24,
  };
}

describe('attention', () => {
  it('dense causal, multi-head', (t) => checkOp(attnCase('causal MHA', { B: 1, Nq: 6, Nk: 6, H: 2, Hkv: 2, D: 4 }), (s) => t.diagnostic(s)));
  it('dense causal, GQA (H=4, Hkv=2), B=2', (t) => checkOp(attnCase('causal GQA', { B: 2, Nq: 5, Nk: 5, H: 4, Hkv: 2, D: 4 }), (s) => t.diagnostic(s)));
  it('dense causal with a query offset (KV-cache decoding)', (t) => checkOp(attnCase('causal offset', { B: 1, Nq: 2, Nk: 7, H: 2, Hkv: 1, D: 4, qOffset: 5 }), (s) => t.diagnostic(s)));
  it('dense causal over a preallocated cache with unused rows, B=2', (t) => checkOp(attnCase('causal cache', { B: 2, Nq: 3, Nk: 6, capacity: 9, H: 4, Hkv: 2, D: 4, qOffset: 3 }), (s) => t.diagnostic(s)));

  for (const form of ['segmented', 'roll', 'short'] as const) {
    it(`S²-Attn ${form}, GQA, B=2`, (t) => checkOp(attnCase(`s2 ${form}`, {
      B: 2, Nq: 8, Nk: 8, H: 4, Hkv: 2, D: 4, mask: { kind: 's2', form, group: 4 },
    }), (s) => t.diagnostic(s)));
  }
  it('S²-Attn segmented with a length that is not a multiple of the group', (t) => checkOp(attnCase('s2 segmented odd N', {
    B: 1, Nq: 11, Nk: 11, H: 4, Hkv: 4, D: 4, mask: { kind: 's2', form: 'segmented', group: 4 },
  }), (s) => t.diagnostic(s)));
});

describe('attention masks', () => {
  it('the kernels\' key ranges equal the SPEC definitions for every form, head and position', () => {
    let checked = 0;
    for (const form of ['segmented', 'roll', 'short'] as const) {
      for (const G of [2, 4, 6, 8]) {
        for (const N of [G, 2 * G, 3 * G, 3 * G + 1, 5 * G - 1]) {
          if (form === 'roll' && N % G !== 0) continue;
          for (const H of [1, 2, 3, 4]) {
            const mask: AttentionMask = { kind: 's2', form, group: G };
            for (let h = 0; h < H; h++) for (let i = 0; i < N; i++) {
              const allowed = new Set<number>();
              for (const [lo, hi] of keyRanges(mask, H, h, i, N)) for (let j = lo; j < hi; j++) allowed.add(j);
              for (let j = 0; j < N; j++) {
                assert.equal(allowed.has(j), allowedByDefinition(mask, H, h, i, j, N), `${form} G=${G} N=${N} H=${H} h=${h} i=${i} j=${j}`);
                checked++;
              }
            }
          }
        }
      }
    }
    assert.ok(checked > 10000);
  });

  it('the roll form leaks: in a shifted head the first token sees the last ones', () => {
    const mask: AttentionMask = { kind: 's2', form: 'roll', group: 4 };
    assert.ok(allowedByDefinition(mask, 2, 1, 0, 7, 8), 'token 0 sees token 7 under roll');
    assert.ok(!allowedByDefinition({ ...mask, form: 'segmented' }, 2, 1, 0, 7, 8), 'segmented does not leak');
  });

  it('a mask that is not one of the documented ones is refused, not run as something else', () => {
    const q = zeros([1, 8, 2, 4]);
    const bad: Array<[unknown, RegExp]> = [
      [{ kind: 'full' }, /unknown attention mask \{"kind":"full"\}; use \{ kind: 'causal' \}/],
      ['causal', /unknown attention mask "causal"/],
      [{ kind: 's2', form: 'shifted', group: 4 }, /unknown S²-Attn form "shifted"; use one of segmented, roll, short/],
      [{ kind: 's2', group: 4 }, /unknown S²-Attn form undefined/],
    ];
    for (const [mask, message] of bad) {
      assert.throws(() => attention(q, q, q, { mask: mask as AttentionMask }), message, JSON.stringify(mask));
    }
    q.dispose();
  });
});
