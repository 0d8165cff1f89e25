/**
 * parseLlamaConfig: the spellings Hugging Face has used over the years, the defaults it
 * fills in, and one clear LongLoraError (naming the file and the key) for every input this
 * implementation cannot run. llamaConfigToHF must write what parseLlamaConfig reads back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LongLoraError } from '../../src/errors.js';
import { llamaConfigToHF, parseLlamaConfig, type LlamaConfig } from '../../src/models/llama/config.js';

const FILE = '/models/some-llama/config.json';

/** A minimal valid config.json (the tiny-llama fixture's numbers). */
function base(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'llama',
    vocab_size: 96,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    ...over,
  };
}

/** Removes `keys` from a config. */
function without(j: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  const out = { ...j };
  for (const k of keys) delete out[k];
  return out;
}

/** Parsing must throw one LongLoraError whose message names the file and every `parts`. */
function rejects(json: unknown, ...parts: string[]): string {
  let message = '';
  assert.throws(() => parseLlamaConfig(json, FILE), (err: unknown) => {
    assert.ok(err instanceof LongLoraError, `expected a LongLoraError, got ${String(err)}`);
    assert.ok(!(err instanceof AggregateError), 'one error, not an aggregate');
    assert.ok(err.message.includes(FILE), `message lacks the file: ${err.message}`);
    for (const p of parts) assert.ok(err.message.includes(p), `message lacks "${p}": ${err.message}`);
    message = err.message;
    return true;
  });
  return message;
}

describe('parseLlamaConfig: rope scaling spellings', () => {
  it('reads rope_scaling {type: "linear"} (older transformers)', () => {
    const c = parseLlamaConfig(base({ rope_theta: 10000, rope_scaling: { type: 'linear', factor: 2 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'linear', factor: 2 });
    assert.equal(c.ropeTheta, 10000);
  });

  it('reads rope_scaling {rope_type: "linear"} (newer transformers)', () => {
    const c = parseLlamaConfig(base({ rope_scaling: { rope_type: 'linear', factor: 8 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'linear', factor: 8 });
  });

  it('reads the rope_parameters block, with rope_theta inside it', () => {
    const c = parseLlamaConfig(base({ rope_parameters: { rope_type: 'linear', factor: 4, rope_theta: 500000 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'linear', factor: 4 });
    assert.equal(c.ropeTheta, 500000);
  });

  it('reads rope_parameters {rope_type: "default"} as no scaling, keeping its theta', () => {
    const c = parseLlamaConfig(base({ rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'none' });
    assert.equal(c.ropeTheta, 1e6);
  });

  it('reads dynamic, yarn and llama3 with Hugging Face defaults', () => {
    assert.deepEqual(parseLlamaConfig(base({ rope_scaling: { type: 'dynamic', factor: 2 } }), FILE).ropeScaling, { type: 'dynamic', factor: 2 });
    // yarn: original_max_position_embeddings defaults to max_position_embeddings
    assert.deepEqual(parseLlamaConfig(base({ max_position_embeddings: 4096, rope_scaling: { rope_type: 'yarn', factor: 4 } }), FILE).ropeScaling,
      { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096 });
    // yarn: a null factor is max_position_embeddings / original (DeepSeek-V3 style)
    assert.deepEqual(parseLlamaConfig(base({ max_position_embeddings: 163840, rope_scaling: { type: 'yarn', factor: null, original_max_position_embeddings: 4096, beta_fast: 0, mscale: 1, mscale_all_dim: 1 } }), FILE).ropeScaling,
      { type: 'yarn', factor: 40, originalMaxPositionEmbeddings: 4096, mscale: 1, mscaleAllDim: 1 });
    const c = parseLlamaConfig(base({ max_position_embeddings: 131072, rope_parameters: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, rope_theta: 500000 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 131072 });
    assert.equal(c.ropeTheta, 500000);
  });

  it('prefers a non-empty rope_scaling over rope_parameters, as transformers 5 does', () => {
    const c = parseLlamaConfig(base({ rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'linear', factor: 4 } }), FILE);
    assert.deepEqual(c.ropeScaling, { type: 'linear', factor: 2 });
    assert.deepEqual(parseLlamaConfig(base({ rope_scaling: {}, rope_parameters: { rope_type: 'linear', factor: 4 } }), FILE).ropeScaling, { type: 'linear', factor: 4 });
  });

  it('treats rope_scaling null or absent as plain RoPE', () => {
    assert.deepEqual(parseLlamaConfig(base({ rope_scaling: null }), FILE).ropeScaling, { type: 'none' });
    assert.deepEqual(parseLlamaConfig(base(), FILE).ropeScaling, { type: 'none' });
  });
});

describe('parseLlamaConfig: defaults', () => {
  it('num_key_value_heads defaults to num_attention_heads, head_dim to hidden_size / heads', () => {
    const c = parseLlamaConfig(without(base(), 'num_key_value_heads'), FILE);
    assert.equal(c.numKvHeads, 4);
    assert.equal(c.headDim, 8);
  });

  it('an explicit head_dim wins over hidden_size / heads', () => {
    const c = parseLlamaConfig(base({ head_dim: 12 }), FILE);
    assert.equal(c.headDim, 12);
  });

  it('fills the optional keys as transformers does, and ignores unknown keys', () => {
    const c = parseLlamaConfig(base({ transformers_version: '4.44.0', use_cache: true, pretraining_tp: 1 }), FILE);
    assert.equal(c.rmsNormEps, 1e-6);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.maxPositionEmbeddings, 2048);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.bosTokenId, null);
    assert.equal(c.eosTokenId, null);
    assert.equal(c.torchDtype, null);
  });

  it('reads eos_token_id as an array (Llama 3 style) and torch_dtype or dtype', () => {
    const c = parseLlamaConfig(base({ eos_token_id: [128001, 128008, 128009], bos_token_id: 128000, dtype: 'bfloat16' }), FILE);
    assert.deepEqual(c.eosTokenId, [128001, 128008, 128009]);
    assert.equal(c.bosTokenId, 128000);
    assert.equal(c.torchDtype, 'bfloat16');
    assert.equal(parseLlamaConfig(base({ torch_dtype: 'float16' }), FILE).torchDtype, 'float16');
  });
});

describe('parseLlamaConfig: Mistral', () => {
  it('reads sliding_window with transformers\' default (4096 when absent, none when null); Llama has none', () => {
    assert.equal(parseLlamaConfig(base({ model_type: 'mistral' }), FILE).slidingWindow, 4096);
    assert.equal(parseLlamaConfig(base({ model_type: 'mistral', sliding_window: null }), FILE).slidingWindow, null);
    assert.equal(parseLlamaConfig(base({ model_type: 'mistral', sliding_window: 32768 }), FILE).slidingWindow, 32768);
    assert.equal(parseLlamaConfig(base({ sliding_window: 4096 }), FILE).slidingWindow, null);
    rejects(base({ model_type: 'mistral', sliding_window: 0 }), '"sliding_window" must be a positive integer');
  });

  it('writes MistralForCausalLM with its sliding_window, and reads it back', () => {
    for (const w of [null, 4096]) {
      const c = parseLlamaConfig(base({ model_type: 'mistral', sliding_window: w, rope_theta: 1e6, torch_dtype: 'bfloat16' }), FILE);
      const hf = llamaConfigToHF(c);
      assert.deepEqual([hf.architectures, hf.model_type, hf.sliding_window, hf.attention_bias], [['MistralForCausalLM'], 'mistral', w, undefined]);
      assert.deepEqual(parseLlamaConfig(hf, FILE), c);
    }
    assert.deepEqual(llamaConfigToHF(parseLlamaConfig(base(), FILE)).architectures, ['LlamaForCausalLM']);
  });
});

describe('parseLlamaConfig: biases', () => {
  it('Qwen 2 has q/k/v biases; Llama\'s attention_bias adds q/k/v/o biases; written back as read', () => {
    const q = parseLlamaConfig(base({ model_type: 'qwen2', use_sliding_window: false, sliding_window: 4096 }), FILE);
    assert.deepEqual([q.qkvBias, q.oBias, q.slidingWindow], [true, false, null]);
    assert.deepEqual(llamaConfigToHF(q).architectures, ['Qwen2ForCausalLM']);
    assert.deepEqual(parseLlamaConfig(llamaConfigToHF(q), FILE), { ...q, torchDtype: 'float32' });
    const l = parseLlamaConfig(base({ attention_bias: true }), FILE);
    assert.deepEqual([l.qkvBias, l.oBias, llamaConfigToHF(l).attention_bias], [true, true, true]);
    assert.deepEqual([parseLlamaConfig(base(), FILE).qkvBias, parseLlamaConfig(base(), FILE).oBias], [false, false]);
  });
});

describe('parseLlamaConfig: one clear error per bad input', () => {
  it('an unsupported model_type, listing the supported ones', () => {
    rejects(base({ model_type: 'gemma' }), 'model_type', '"gemma"', 'supported: llama, mistral, qwen2, qwen3');
    rejects(without(base(), 'model_type'), 'model_type', 'supported: llama, mistral, qwen2, qwen3');
  });

  it('a missing hidden_size', () => {
    rejects(without(base(), 'hidden_size'), '"hidden_size"', 'missing');
  });

  it('a non-integer value', () => {
    rejects(base({ num_hidden_layers: 2.5 }), '"num_hidden_layers"', '2.5');
    rejects(base({ vocab_size: '96' }), '"vocab_size"', '"96"');
    rejects(base({ intermediate_size: 0 }), '"intermediate_size"', 'positive integer');
  });

  it('heads not a multiple of kv heads', () => {
    rejects(base({ num_key_value_heads: 3 }), 'num_attention_heads', 'num_key_value_heads', '(3)');
  });

  it('an odd head_dim', () => {
    rejects(base({ head_dim: 7 }), 'head_dim', '(7)', 'even');
  });

  it('hidden_size not divisible by heads, without head_dim', () => {
    rejects(base({ hidden_size: 30 }), 'hidden_size', 'num_attention_heads', 'head_dim');
  });

  it('an unsupported rope type (longrope), naming the block it came from and the supported list', () => {
    rejects(base({ rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [2] } }), 'rope_scaling', '"longrope"', 'default, linear, dynamic, yarn, llama3');
    rejects(base({ rope_scaling: { type: 'ntk', factor: 2 } }), 'rope_scaling', '"ntk"');
    rejects(base({ rope_parameters: { rope_type: 'proportional', rope_theta: 500000 } }), 'rope_parameters', '"proportional"');
  });

  it('a bad yarn / llama3 / dynamic field, naming the key', () => {
    rejects(base({ rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4 } }), 'rope_scaling.low_freq_factor');
    rejects(base({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1 } }), 'high_freq_factor', 'low_freq_factor');
    rejects(base({ rope_scaling: { rope_type: 'yarn' } }), 'rope_scaling.factor', 'missing');
    rejects(base({ rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 40.5 } }), 'rope_scaling.original_max_position_embeddings', '40.5');
    rejects(base({ rope_scaling: { rope_type: 'yarn', factor: 4, truncate: 'no' } }), 'rope_scaling.truncate');
    rejects(base({ rope_scaling: { rope_type: 'yarn', factor: 4, attention_factor: -1 } }), 'rope_scaling.attention_factor', '-1');
    rejects(base({ rope_parameters: { rope_type: 'dynamic', rope_theta: 10000 } }), 'rope_parameters.factor');
    rejects(base({ rope_parameters: { rope_type: 'default', rope_theta: 'big' } }), 'rope_parameters.rope_theta', '"big"');
    rejects(base({ partial_rotary_factor: 0.5 }), 'partial_rotary_factor', '0.5');
  });

  it('a linear factor below 1 or missing', () => {
    rejects(base({ rope_scaling: { type: 'linear' } }), 'rope_scaling.factor');
    rejects(base({ rope_scaling: { type: 'linear', factor: 0.5 } }), 'rope_scaling.factor', '0.5');
  });

  it('mlp_bias true, and Qwen 2 with sliding-window attention on', () => {
    rejects(base({ mlp_bias: true }), '"mlp_bias"');
    rejects(base({ model_type: 'qwen2', use_sliding_window: true }), '"use_sliding_window": true is not supported');
  });

  it('a bad eos_token_id entry, and a config that is not an object', () => {
    rejects(base({ eos_token_id: [2, 'x'] }), 'eos_token_id[1]');
    rejects([base()], 'JSON object');
  });
});

describe('llamaConfigToHF', () => {
  const roundTrip = (c: LlamaConfig): LlamaConfig =>
    parseLlamaConfig(JSON.parse(JSON.stringify(llamaConfigToHF(c))) as unknown, FILE);

  it('writes what parseLlamaConfig reads back (linear scaling, GQA, explicit head_dim, eos list)', () => {
    const c = parseLlamaConfig(base({
      head_dim: 12, rms_norm_eps: 1e-5, rope_theta: 500000, rope_scaling: { rope_type: 'linear', factor: 4 },
      max_position_embeddings: 8192, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: [2, 3], torch_dtype: 'bfloat16',
    }), FILE);
    assert.deepEqual(roundTrip(c), c);
  });

  it('round-trips a config without scaling (rope_scaling written as null)', () => {
    const c = parseLlamaConfig(base({ torch_dtype: 'float32', eos_token_id: 2 }), FILE);
    const hf = llamaConfigToHF(c);
    assert.equal(hf.rope_scaling, null);
    assert.deepEqual(roundTrip(c), c);
  });

  it('writes rope_scaling with the factor, under both spellings of the type', () => {
    const c = parseLlamaConfig(base({ rope_scaling: { type: 'linear', factor: 16 } }), FILE);
    const hf = llamaConfigToHF(c);
    assert.deepEqual(hf.rope_scaling, { rope_type: 'linear', type: 'linear', factor: 16 });
    assert.equal(hf.model_type, 'llama');
    assert.equal(hf.attention_bias, false);
  });
});
