/**
 * RoPE scaling: inverse frequencies, attention factor and cos/sin tables of every scaling
 * type against golden values from scripts/golden/make_golden_rope.py (an independent
 * float64 torch re-implementation of Hugging Face's formulas), dynamic NTK below and above
 * max_position_embeddings, the YaRN attention factor, the LongLoRA context-extension rule,
 * and config.json parse → write → parse round trips.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cpuBackend } from '../../src/backend/registry.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { llamaConfigToHF, parseLlamaConfig, parseRopeScaling } from '../../src/models/llama/config.js';
import {
  describeRopeScaling, extendRopeScaling, ropeContextLength, ropeScalingToHF, yarnAttentionFactor,
  type RopeScaling, type YarnScaling,
} from '../../src/nn/rope-scaling.js';
import { ropeAngles, ropeFrequencies, ropeInvFreq, RotaryEmbedding } from '../../src/nn/rope.js';
import { assertClose } from '../helpers/compare.js';
import { throwsLL } from '../helpers/errors.js';
import { GOLDEN } from '../helpers/fixtures.js';

const RTOL = 1e-12;

interface GoldenCase {
  name: string;
  D: number;
  theta: number;
  max_position_embeddings: number;
  key: 'rope_scaling' | 'rope_parameters';
  block: Record<string, unknown> | null;
  offset: number;
  N: number;
}

/** Largest elementwise relative difference (inverse frequencies span many decades). */
function assertRelEach(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, label: string, log: (s: string) => void): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const r = Math.abs(actual[i]! - expected[i]!) / Math.abs(expected[i]!);
    if (!(r <= worst)) { worst = Number.isNaN(r) ? Infinity : r; at = i; }
  }
  log(`${label}: max elementwise rel ${worst.toExponential(2)} (tol ${rtol.toExponential(0)})`);
  assert.ok(worst <= rtol, `${label}: rel ${worst} at ${at}: ${actual[at]} vs ${expected[at]}`);
}

/** The config-file view of a golden case: what parseRopeScaling reads. */
function parseCase(c: GoldenCase): { scaling: RopeScaling; theta: number } {
  const j: Record<string, unknown> = { max_position_embeddings: c.max_position_embeddings, rope_theta: c.theta, [c.key]: c.block };
  const r = parseRopeScaling(j, `golden ${c.name}`);
  return { scaling: r.scaling, theta: r.theta ?? c.theta };
}

describe('RoPE scaling against the golden tables (rope.safetensors)', () => {
  const f = SafetensorsFile.open(path.join(GOLDEN, 'rope.safetensors'));
  const cases = JSON.parse(f.metadata.cases ?? '[]') as GoldenCase[];
  const read = (name: string): Float64Array => f.read(name, 'f64').data as Float64Array;

  it('covers every scaling type, at D = 8 and D = 128', () => {
    const kinds = new Set(cases.map((c) => parseCase(c).scaling.type));
    assert.deepEqual([...kinds].sort(), ['dynamic', 'linear', 'llama3', 'none', 'yarn']);
    assert.deepEqual([...new Set(cases.map((c) => c.D))].sort((a, b) => a - b), [8, 128]);
  });

  for (const c of cases) {
    it(`${c.name}: inv_freq, attention factor, cos/sin (${JSON.stringify(c.block)}, positions ${c.offset}..${c.offset + c.N - 1})`, async (t) => {
      const log = (s: string): void => t.diagnostic(s);
      const { scaling, theta } = parseCase(c);
      const maxPos = c.max_position_embeddings;
      const fr = ropeFrequencies(c.D, theta, scaling, c.offset + c.N, maxPos);
      assertRelEach(fr.invFreq, read(`${c.name}.inv_freq`), RTOL, 'inv_freq', log);
      const af = read(`${c.name}.attention_factor`)[0]!;
      assert.ok(Math.abs(fr.attentionFactor - af) <= RTOL * af, `attention factor ${fr.attentionFactor} vs ${af}`);
      const { cos, sin } = ropeAngles(c.N, c.D, theta, scaling, c.offset, maxPos);
      assertClose(cos, read(`${c.name}.cos`), RTOL, 'cos', log);
      assertClose(sin, read(`${c.name}.sin`), RTOL, 'sin', log);
      // the device tables RotaryEmbedding caches hold the same numbers
      const rot = new RotaryEmbedding(c.D, theta, scaling, maxPos);
      const tab = rot.tables(c.N, 'f64', cpuBackend(), c.offset);
      assert.deepEqual(tab.cos.shape, [c.N, c.D / 2]);
      assertClose(await tab.cos.floats(), read(`${c.name}.cos`), RTOL, 'RotaryEmbedding cos', log);
      assertClose(await tab.sin.floats(), read(`${c.name}.sin`), RTOL, 'RotaryEmbedding sin', log);
      rot.dispose();
    });
  }
});

describe('dynamic NTK', () => {
  const D = 128;
  const dyn: RopeScaling = { type: 'dynamic', factor: 2 };

  it('is plain RoPE while offset + N ≤ max_position_embeddings', () => {
    const plain = ropeInvFreq(D, 10000);
    for (const L of [1, 100, 4095, 4096]) assert.deepEqual(ropeFrequencies(D, 10000, dyn, L, 4096).invFreq, plain, `length ${L}`);
    const a = ropeAngles(16, D, 10000, dyn, 4080, 4096);
    const b = ropeAngles(16, D, 10000, { type: 'none' }, 4080);
    assert.deepEqual(a, b);
  });

  it('grows the base with the current length offset + N beyond max_position_embeddings', () => {
    const L = 8192; // factor·L/max − (factor − 1) = 3
    const base = 10000 * 3 ** (D / (D - 2));
    assertRelEach(ropeFrequencies(D, 10000, dyn, L, 4096).invFreq, ropeInvFreq(D, base), 1e-15, 'inv_freq at 8192', () => {});
    // the same last position through N or through offset gives the same table row
    const whole = ropeAngles(L, D, 10000, dyn, 0, 4096);
    const tail = ropeAngles(4, D, 10000, dyn, L - 4, 4096);
    assert.deepEqual(tail.cos, whole.cos.subarray((L - 4) * (D / 2)));
    // a shorter total length uses a smaller base: position 5000 rotates differently at 5001
    const shorter = ropeAngles(4, D, 10000, dyn, 4997, 4096); // length 5001
    assert.notDeepEqual(shorter.cos.subarray(3 * 64), whole.cos.subarray(5000 * 64, 5001 * 64));
    const base5001 = 10000 * ((2 * 5001) / 4096 - 1) ** (D / (D - 2));
    assertRelEach(ropeFrequencies(D, 10000, dyn, 5001, 4096).invFreq, ropeInvFreq(D, base5001), 1e-15, 'inv_freq at 5001', () => {});
  });

  it('RotaryEmbedding caches per (N, offset): each length gets its own frequencies', async () => {
    const rot = new RotaryEmbedding(8, 10000, { type: 'dynamic', factor: 4 }, 16);
    const short = await rot.tables(4, 'f64', cpuBackend(), 12).cos.floats(); // length 16: plain
    const long = await rot.tables(4, 'f64', cpuBackend(), 60).cos.floats(); // length 64: scaled
    assert.deepEqual(short, ropeAngles(4, 8, 10000, { type: 'none' }, 12).cos);
    assert.deepEqual(long, ropeAngles(4, 8, 10000, { type: 'dynamic', factor: 4 }, 60, 16).cos);
    rot.dispose();
  });

  it('needs max_position_embeddings', () => {
    throwsLL(() => ropeAngles(4, 8, 10000, { type: 'dynamic', factor: 2 }), 'dynamic', 'max_position_embeddings');
    throwsLL(() => new RotaryEmbedding(8, 10000, { type: 'dynamic', factor: 2 }), 'max_position_embeddings');
  });
});

describe('YaRN attention factor', () => {
  const yarn = (over: Partial<YarnScaling> = {}): YarnScaling => ({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096, ...over });

  it('defaults to 0.1·ln(factor) + 1, and 1 for factor 1', () => {
    assert.equal(yarnAttentionFactor(yarn()), 0.1 * Math.log(4) + 1);
    assert.equal(yarnAttentionFactor(yarn({ factor: 1 })), 1);
  });

  it('uses mscale / mscale_all_dim when both are set (DeepSeek), else ignores them', () => {
    const m = (s: number, k: number): number => 0.1 * k * Math.log(s) + 1;
    assert.equal(yarnAttentionFactor(yarn({ factor: 40, mscale: 0.707, mscaleAllDim: 1 })), m(40, 0.707) / m(40, 1));
    assert.equal(yarnAttentionFactor(yarn({ factor: 40, mscale: 1, mscaleAllDim: 1 })), 1);
    assert.equal(yarnAttentionFactor(yarn({ factor: 40, mscale: 0.707 })), m(40, 1));
  });

  it('an explicit attention_factor wins, and it multiplies cos and sin', () => {
    assert.equal(yarnAttentionFactor(yarn({ attentionFactor: 1.25, mscale: 2, mscaleAllDim: 1 })), 1.25);
    const { cos, sin } = ropeAngles(3, 8, 10000, yarn({ attentionFactor: 1.25 }), 7);
    for (let i = 0; i < cos.length; i++) assert.ok(Math.abs(cos[i]! ** 2 + sin[i]! ** 2 - 1.5625) < 1e-14);
    const plainAf = ropeAngles(3, 8, 10000, yarn({ attentionFactor: 1 }), 7);
    assert.ok(Math.abs(cos[0]! - 1.25 * plainAf.cos[0]!) < 1e-15);
  });
});

describe('extendRopeScaling (SPEC §3)', () => {
  const llama2 = { ropeScaling: { type: 'none' } as RopeScaling, maxPositionEmbeddings: 4096 };

  it('plain Llama-2 (4096): 8192→2, 16384→4, 32768→8, 65536→16, 100000→25', () => {
    for (const [target, factor] of [[8192, 2], [16384, 4], [32768, 8], [65536, 16], [100000, 25]] as const) {
      const r = extendRopeScaling(llama2, target);
      assert.deepEqual(r.scaling, { type: 'linear', factor }, `target ${target}`);
      assert.match(r.explanation, new RegExp(`ceil\\(${target} / 4096\\) = ${factor}`));
    }
  });

  it('a target within the original context keeps the config scaling', () => {
    for (const target of [1, 2048, 4096]) {
      const r = extendRopeScaling(llama2, target);
      assert.equal(r.scaling, llama2.ropeScaling);
      assert.match(r.explanation, /unchanged/);
    }
    const llama31 = { ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as RopeScaling, maxPositionEmbeddings: 131072 };
    assert.equal(extendRopeScaling(llama31, 100000).scaling, llama31.ropeScaling);
  });

  it('a pre-scaled model compounds its factor (the official script would drop it)', () => {
    const pre = { ropeScaling: { type: 'linear', factor: 2 } as RopeScaling, maxPositionEmbeddings: 4096 }; // covers 8192
    assert.equal(extendRopeScaling(pre, 8192).scaling, pre.ropeScaling);
    assert.deepEqual(extendRopeScaling(pre, 10000).scaling, { type: 'linear', factor: 4 });
    const r = extendRopeScaling(pre, 32768);
    assert.deepEqual(r.scaling, { type: 'linear', factor: 8 }); // 32768 / 8 = 4096: inside the trained range
    assert.match(r.explanation, /2 × ceil\(32768 \/ 8192\) = 8/);
    assert.match(r.explanation, /official LongLoRA script would write ceil\(32768 \/ 8192\) = 4/);
    // a LongLoRA-extended checkpoint (linear 8 written into its config) needs nothing more at 32768
    assert.equal(extendRopeScaling({ ropeScaling: { type: 'linear', factor: 8 }, maxPositionEmbeddings: 4096 }, 32768).scaling.type, 'linear');
    assert.deepEqual(extendRopeScaling({ ropeScaling: { type: 'linear', factor: 8 }, maxPositionEmbeddings: 4096 }, 65536).scaling, { type: 'linear', factor: 16 });
  });

  it('an explicit override wins, even within the original context', () => {
    assert.deepEqual(extendRopeScaling(llama2, 2048, { type: 'linear', factor: 3 }).scaling, { type: 'linear', factor: 3 });
    assert.deepEqual(extendRopeScaling(llama2, 16384, { type: 'dynamic', factor: 4 }).scaling, { type: 'dynamic', factor: 4 });
    const y = extendRopeScaling(llama2, 16384, { type: 'yarn', factor: 4 });
    assert.deepEqual(y.scaling, { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096 });
    assert.match(y.explanation, /override: yarn ×4/);
    assert.match(extendRopeScaling(llama2, 16384, { type: 'linear', factor: 2 }).explanation, /covers 8192 positions, fewer than the target 16384/);
  });

  it('refuses bad targets and factors with the problem and the fix', () => {
    for (const bad of [0, -8192, Number.NaN, Number.POSITIVE_INFINITY, 1000.5]) {
      throwsLL(() => extendRopeScaling(llama2, bad), 'target length', 'positive integer', String(bad));
    }
    throwsLL(() => extendRopeScaling(llama2, 8192, { type: 'linear', factor: 0.5 }), 'override', 'factor', '0.5', '≥ 1');
    throwsLL(() => extendRopeScaling(llama2, 8192, { type: 'yarn', factor: Number.NaN }), 'override', 'factor', 'NaN');
    throwsLL(() => extendRopeScaling(llama2, 8192, { type: 'longrope' } as unknown as RopeScaling), 'override', '"longrope"', 'linear');
  });

  it('asks for an override when a yarn / llama3 / dynamic model must go beyond its context', () => {
    const yarn = { ropeScaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096 } as RopeScaling, maxPositionEmbeddings: 4096 };
    assert.equal(ropeContextLength(yarn.ropeScaling, 4096), 16384);
    assert.equal(extendRopeScaling(yarn, 16384).scaling, yarn.ropeScaling);
    throwsLL(() => extendRopeScaling(yarn, 32768), 'yarn ×4', '16384', '32768', 'override');
    throwsLL(() => extendRopeScaling({ ropeScaling: { type: 'dynamic', factor: 2 }, maxPositionEmbeddings: 4096 }, 8192), 'dynamic', 'override');
  });

  it('an override of the model\'s own yarn or llama3 type keeps the fields it leaves out (original length, bands, betas)', () => {
    const yarn = { ropeScaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 2048, betaFast: 16 } as RopeScaling, maxPositionEmbeddings: 4096 };
    // the hint names the same type with a compounded factor, not linear interpolation over plain RoPE
    throwsLL(() => extendRopeScaling(yarn, 16384), 'of type yarn with a larger factor (e.g. 8', '--rope-type yarn');
    assert.deepEqual(extendRopeScaling(yarn, 16384, { type: 'yarn', factor: 8 }).scaling,
      { type: 'yarn', factor: 8, originalMaxPositionEmbeddings: 2048, betaFast: 16 });
    const l31 = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;
    const llama3 = { ropeScaling: l31 as RopeScaling, maxPositionEmbeddings: 65536 };
    throwsLL(() => extendRopeScaling(llama3, 131072), 'of type llama3 with a larger factor (e.g. 16');
    assert.deepEqual(extendRopeScaling(llama3, 131072, { type: 'llama3', factor: 16 } as RopeScaling).scaling, { ...l31, factor: 16 });
    // another type, or a model without that scaling: as before
    assert.deepEqual(extendRopeScaling(llama2, 16384, { type: 'yarn', factor: 4 }).scaling, { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096 });
    // another type over a yarn or llama3 model (--rope-factor is linear) is taken, and says what it replaces
    const linear = extendRopeScaling(llama3, 131072, { type: 'linear', factor: 2 });
    assert.deepEqual(linear.scaling, { type: 'linear', factor: 2 });
    assert.match(linear.explanation, /Note: it replaces the model's own llama3 .* scaling, so positions no longer get the frequencies the model was trained with; an override of type llama3 with a larger factor keeps them\./);
    assert.doesNotMatch(extendRopeScaling(llama2, 16384, { type: 'linear', factor: 4 }).explanation, /replaces/);
  });
});

describe('config.json round trip (parse → write → parse) for every type', () => {
  const base = {
    model_type: 'llama', vocab_size: 96, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, max_position_embeddings: 4096, torch_dtype: 'float32',
  };
  const blocks: Record<string, unknown>[] = [
    { type: 'linear', factor: 4 },
    { rope_type: 'dynamic', factor: 2 },
    { rope_type: 'yarn', factor: 4 },
    { type: 'yarn', factor: 40, original_max_position_embeddings: 1024, beta_fast: 16, beta_slow: 2, mscale: 0.707, mscale_all_dim: 1, truncate: false },
    { rope_type: 'yarn', factor: 8, attention_factor: 1.2 },
    { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 1024 },
  ];
  for (const block of blocks) {
    it(`${JSON.stringify(block)}`, () => {
      const c = parseLlamaConfig({ ...base, rope_scaling: block }, 'config.json');
      const hf = JSON.parse(JSON.stringify(llamaConfigToHF(c))) as Record<string, unknown>;
      const again = parseLlamaConfig(hf, 'saved/config.json');
      assert.deepEqual(again, c);
      assert.deepEqual(llamaConfigToHF(again), llamaConfigToHF(c));
      // both spellings written; the same tables before and after
      const rs = hf.rope_scaling as Record<string, unknown>;
      assert.equal(rs.type, rs.rope_type);
      assert.deepEqual(ropeAngles(4, 8, 10000, again.ropeScaling, 5000, 4096), ropeAngles(4, 8, 10000, c.ropeScaling, 5000, 4096));
    });
  }

  it('inside rope_parameters too, keeping rope_theta', () => {
    const c = parseLlamaConfig({ ...base, rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } }, 'config.json');
    const again = parseLlamaConfig(JSON.parse(JSON.stringify(llamaConfigToHF(c))) as unknown, 'saved/config.json');
    assert.deepEqual(again, c);
    assert.equal(again.ropeTheta, 1e6);
  });

  it('writes the original length a yarn / llama3 scaling left to its default', () => {
    assert.deepEqual(ropeScalingToHF({ type: 'yarn', factor: 2 }, 2048), { rope_type: 'yarn', type: 'yarn', factor: 2, original_max_position_embeddings: 2048 });
    assert.equal(ropeScalingToHF({ type: 'none' }), null);
    assert.equal(describeRopeScaling({ type: 'yarn', factor: 2, originalMaxPositionEmbeddings: 2048 }), 'yarn ×2 (original 2048)');
  });
});
