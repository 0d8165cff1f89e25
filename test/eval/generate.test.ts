/**
 * Generation: with the KV cache it gives the same tokens as recomputing the full sequence
 * (greedy and seeded sampling), the sampling warpers, stopping on EOS and stop strings,
 * streamed text, and reuse of a cached conversation prefix.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generate, Generator } from '../../src/eval/generate.js';
import { argmax, candidates, sampleToken } from '../../src/eval/sampling.js';
import { Rng } from '../../src/tensor/random.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { tinyModel } from '../helpers/model.js';
import { assertClose } from '../helpers/compare.js';
import { testBackends } from '../helpers/backends.js';
import { setBackend } from '../../src/backend/registry.js';
import type { KVCache } from '../../src/models/llama/cache.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { fromFloatArray, toFloatArray } from '../../src/tensor/dtype.js';
import { tidy } from '../../src/tensor/scope.js';
import { fromHost } from '../../src/tensor/tensor.js';
import { TINY_96 } from '../tokenizer/fixtures.js';

describe('sampling', () => {
  it('greedy takes the first maximum; temperature, top-k and top-p as Hugging Face', () => {
    assert.equal(argmax([1, 3, 3, 2]), 1);
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    const all = candidates(logits, { temperature: 1, topP: 1, topK: 0 });
    assert.deepEqual(all.ids, [0, 1, 2, 3]);
    assert.ok(Math.abs(all.probs[0]! - 0.5) < 1e-12);
    assert.deepEqual(candidates(logits, { temperature: 1, topP: 0.79, topK: 0 }).ids, [0, 1], '0.5 + 0.3 reaches 0.79');
    assert.deepEqual(candidates(logits, { temperature: 1, topP: 0.81, topK: 0 }).ids, [0, 1, 2]);
    assert.deepEqual(candidates(logits, { temperature: 1, topP: 0.01, topK: 0 }).ids, [0], 'at least one token');
    assert.deepEqual(candidates(logits, { temperature: 1, topP: 1, topK: 2 }).probs.map((p) => +p.toFixed(4)), [0.625, 0.375]);
    const hot = candidates(logits, { temperature: 2, topP: 1, topK: 0 }).probs;
    assert.ok(hot[0]! < 0.5 && hot[3]! > 0.05, 'a higher temperature flattens');
  });

  it('the candidates equal the full-sort definition (random logits: ties, −∞, flat and peaked; top-k, top-p)', () => {
    // The definition: every token sorted (logit descending, lower id first), the top k kept,
    // softmax over them, the shortest head whose probability reaches top-p, renormalised.
    const definition = (logits: Float32Array, s: { temperature: number; topP: number; topK: number }): { ids: number[]; probs: number[] } => {
      const order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
      const ids = order.slice(0, s.topK > 0 ? s.topK : logits.length);
      const w = ids.map((i) => Math.exp((logits[i]! - logits[ids[0]!]!) / s.temperature));
      const z = w.reduce((a, b) => a + b, 0);
      let probs = w.map((x) => x / z);
      if (s.topP < 1) {
        let cum = 0, n = 0;
        while (n < probs.length && (n === 0 || cum < s.topP)) cum += probs[n++]!;
        ids.length = n;
        probs = probs.slice(0, n).map((p) => p / cum);
      }
      return { ids, probs };
    };
    const r = new Rng(5);
    for (let c = 0; c < 600; c++) {
      const V = [1, 2, 5, 37, 1000, 32000][c % 6]!;
      const kind = Math.floor(c / 6) % 5;
      const logits = Float32Array.from({ length: V }, () => [r.normal() * 3, Math.round(r.normal() * 2), r.normal() * 0.01, r.uniform() < 0.3 ? -Infinity : r.normal() * 5, r.normal() * 30][kind]!);
      if (logits.every((x) => x === -Infinity)) logits[0] = 0;
      const s = { temperature: [0.1, 0.6, 1, 2.5][c % 4]!, topP: [1, 0.9, 0.5, 0.99, 0.01][c % 5]!, topK: [0, 0, 1, 5, 50][(c >> 3) % 5]! };
      const want = definition(logits, s);
      const got = candidates(logits, s);
      assert.deepEqual(got.ids, want.ids, `case ${c}: V ${V}, ${JSON.stringify(s)}`);
      got.probs.forEach((p, i) => assert.ok(Math.abs(p - want.probs[i]!) <= 1e-12 * want.probs[i]!, `case ${c}: probability ${i}: ${p} vs ${want.probs[i]}`));
    }
  });

  it('seeded draws are reproducible and follow the probabilities', () => {
    const logits = [Math.log(0.7), Math.log(0.2), Math.log(0.1)];
    const s = { temperature: 1, topP: 1, topK: 0 };
    const draw = (seed: number): number[] => { const r = new Rng(seed); return Array.from({ length: 2000 }, () => sampleToken(logits, s, r)); };
    assert.deepEqual(draw(3), draw(3));
    const counts = [0, 0, 0];
    for (const t of draw(4)) counts[t]!++;
    assert.ok(Math.abs(counts[0]! / 2000 - 0.7) < 0.04 && Math.abs(counts[2]! / 2000 - 0.1) < 0.03, String(counts));
  });

  it('logits with no finite choice are an error, not an undefined or made-up token', () => {
    const r = new Rng(0);
    const nan = [NaN, NaN, NaN];
    for (const s of [{ temperature: 0, topP: 1, topK: 0 }, { temperature: 0.6, topP: 0.9, topK: 0 }, { temperature: 1, topP: 1, topK: 2 }]) {
      assert.throws(() => sampleToken(nan, s, r), /no token can be chosen: 3 of 3 logits are NaN or infinite/, JSON.stringify(s));
      assert.throws(() => sampleToken([-Infinity, -Infinity], s, r), /2 of 2 logits/);
    }
    assert.equal(sampleToken([NaN, -Infinity, 1], { temperature: 0.6, topP: 0.9, topK: 0 }, r), 2, 'the finite logits are sampled');
    assert.equal(sampleToken([-Infinity, 1], { temperature: 0, topP: 1, topK: 0 }, r), 1);
  });
});

describe('generate()', () => {
  const prompt = [1, 17, 3, 88, 41, 9];
  for (const variant of ['tiny-llama', 'tiny-llama-tied']) {
    for (const [name, s] of [['greedy', { temperature: 0 }], ['seeded top-k/top-p sampling', { temperature: 0.9, topP: 0.9, topK: 20, seed: 7 }]] as const) {
      it(`${variant}, ${name}: the KV cache gives the tokens that recomputing the full sequence gives`, async () => {
        const before = cpuBackend().memory().buffers;
        const { model } = await tinyModel(variant);
        const opts = { ...s, maxNewTokens: 24 };
        const cached = await generate(model, prompt, opts);
        const full = await generate(model, prompt, { ...opts, useCache: false });
        assert.deepEqual(cached.ids, full.ids);
        assert.equal(cached.ids.length, 24, 'runs past max_position_embeddings (16) as well');
        assert.equal(cached.stopReason, 'length');
        assert.ok(cached.tokensPerSecond > 0);
        model.dispose();
        assert.equal(cpuBackend().memory().buffers, before, 'the cache and temporaries are freed');
      });
    }
  }

  it('stops on an EOS id (kept in the ids) and on a stop string (cut from the text); streams the text', async () => {
    const { model } = await tinyModel();
    const tok = Tokenizer.load(TINY_96);
    const free = await generate(model, prompt, { temperature: 0, maxNewTokens: 30, tokenizer: tok });
    assert.ok(free.text.length > 4, free.text);
    const eos = free.ids[5]!;
    const e = await generate(model, prompt, { temperature: 0, maxNewTokens: 30, stopIds: [eos] });
    assert.equal(e.stopReason, 'eos');
    assert.deepEqual(e.ids, free.ids.slice(0, free.ids.indexOf(eos) + 1));
    const stop = free.text.slice(3, 5);
    const shown: string[] = [];
    const s = await generate(model, prompt, { temperature: 0, maxNewTokens: 30, tokenizer: tok, stopStrings: [stop], onText: (t) => shown.push(t) });
    assert.equal(s.stopReason, 'stop-string');
    assert.equal(s.text, free.text.slice(0, free.text.indexOf(stop)));
    assert.equal(shown.join(''), s.text, 'the stream never shows the stop string');
    const streamed: string[] = [];
    const all = await generate(model, prompt, { temperature: 0, maxNewTokens: 30, tokenizer: tok, onText: (t) => streamed.push(t) });
    assert.equal(streamed.join(''), all.text);
    // the text continues the prompt's: what decoding both adds to decoding the prompt alone
    const whole = tok.decode([...prompt, ...all.ids], { skipSpecialTokens: true });
    assert.equal(all.text, whole.slice(tok.decode(prompt, { skipSpecialTokens: true }).length));
    await assert.rejects(generate(model, [1, 500], {}), /prompt token 500 is outside the model's vocabulary \(96\)/);
    model.dispose();
  });

  it('a 16-bit KV cache: half the bytes, keys and values rounded as they are written, logits close to the f32 cache (every backend)', async (t) => {
    for (const tb of await testBackends()) {
      if (!tb.backend) { t.diagnostic(`${tb.name}: skipped (${tb.skip})`); continue; }
      await setBackend(tb.name);
      const { model } = await tinyModel('tiny-llama', { backend: tb.backend });
      const ids = [1, 17, 3, 88, 41, 9, 23, 5];
      // Prefill the first 7 tokens into a cache, then one decoding step: the logits of the last.
      const logitsWith = async (dtype: 'f32' | 'bf16' | 'f16'): Promise<{ logits: Float32Array; cache: KVCache; k16: Float32Array }> => {
        const cache = model.createCache(1, 16, dtype);
        const out = noGrad(() => tidy(() => {
          const pre = model.hidden(fromHost(Int32Array.from(ids.slice(0, 7)), [1, 7], 'i32', tb.backend!), { cache });
          pre.dispose();
          return model.head(model.hidden(fromHost(Int32Array.from(ids.slice(7)), [1, 1], 'i32', tb.backend!), { cache }));
        }));
        const logits = (await out.floats()) as Float32Array;
        out.dispose();
        return { logits, cache, k16: (await cache.k[0]!.floats()) as Float32Array };
      };
      const full = noGrad(() => tidy(() => model.head(model.hidden(fromHost(Int32Array.from(ids), [1, 8], 'i32', tb.backend!)))));
      const fullLogits = ((await full.floats()) as Float32Array).slice(7 * 96);
      full.dispose();
      const f32 = await logitsWith('f32');
      assertClose(f32.logits, fullLogits, 1e-5, `${tb.name}: f32 cache vs the whole sequence`, (s) => t.diagnostic(s));
      for (const dtype of ['bf16', 'f16'] as const) {
        const h = await logitsWith(dtype);
        assert.equal(h.cache.k[0]!.dtype, dtype);
        assert.equal(h.cache.bytes * 2, f32.cache.bytes, 'half the bytes');
        // The cached keys are the f32 ones rounded to 16 bits.
        const rounded = toFloatArray(fromFloatArray(f32.k16, dtype), dtype, 'f32');
        assert.deepEqual(h.k16, rounded, `${tb.name} ${dtype}: cached keys are the f32 keys rounded`);
        const d = assertClose(h.logits, f32.logits, dtype === 'bf16' ? 2e-2 : 2e-3, `${tb.name}: ${dtype} cache vs f32 cache`, (s) => t.diagnostic(s));
        assert.ok(d.maxAbs > 0, `${tb.name} ${dtype}: the rounding shows in the logits`);
        h.cache.dispose();
      }
      f32.cache.dispose();
      model.dispose();
    }
    await setBackend('cpu');
  });

  it('a prompt longer than the prefill chunk goes through in pieces: the same logits, less memory, progress after each piece', async () => {
    const { model } = await tinyModel();
    const be = cpuBackend();
    const long = Array.from({ length: 30 }, (_, i) => (i * 37 + 5) % 96);
    const run = async (prefillChunk: number): Promise<{ ids: number[]; peak: number; progress: number[] }> => {
      const progress: number[] = [];
      const base = be.memory().bytes;
      be.resetPeak();
      const r = await generate(model, long, { temperature: 0, maxNewTokens: 6, prefillChunk, onPrefill: (done, total) => { progress.push(done); assert.equal(total, 30); } });
      return { ids: r.ids, peak: be.memory().peakBytes - base, progress };
    };
    const whole = await run(1000);
    const pieces = await run(7);
    assert.deepEqual(pieces.ids, whole.ids, 'the same greedy tokens (the CPU backend sums each row the same way at any length)');
    assert.deepEqual(pieces.progress, [7, 14, 21, 28, 30]);
    assert.deepEqual(whole.progress, [30]);
    assert.ok(pieces.peak < whole.peak, `peak ${pieces.peak} bytes in pieces, ${whole.peak} at once`);
    assert.throws(() => new Generator(model, { prefillChunk: 0 }), /--prefill-chunk must be an integer ≥ 1, got 0/);
    model.dispose();
  });

  it('an abort signal stops the generation: between tokens with what it made so far, or while the prompt is read', async () => {
    const { model } = await tinyModel();
    const free = await generate(model, prompt, { temperature: 0, maxNewTokens: 20 });
    const stop = new AbortController();
    let n = 0;
    const r = await generate(model, prompt, { temperature: 0, maxNewTokens: 20, signal: stop.signal, onToken: () => { if (++n === 5) stop.abort(); } });
    assert.equal(r.stopReason, 'aborted');
    assert.deepEqual(r.ids, free.ids.slice(0, 5), 'the tokens before the abort, as without a signal');
    // aborted from a timer, as a Stop button or a Ctrl-C handler would: the loop lets it run
    // (within a token or two: Node runs a timer and an immediate in either order)
    const timer = new AbortController();
    let made = 0;
    const late = await generate(model, prompt, { temperature: 0, maxNewTokens: 20, signal: timer.signal, onToken: () => { if (++made === 5) setTimeout(() => timer.abort(), 0); } });
    assert.equal(late.stopReason, 'aborted');
    assert.ok(late.ids.length >= 5 && late.ids.length <= 8, `stopped after ${late.ids.length} tokens`);
    assert.deepEqual(late.ids, free.ids.slice(0, late.ids.length));
    const long = Array.from({ length: 30 }, (_, i) => (i * 37 + 5) % 96);
    const early = new AbortController();
    const p = await generate(model, long, { temperature: 0, maxNewTokens: 5, prefillChunk: 7, signal: early.signal, onPrefill: (done) => { if (done === 14) early.abort(); } });
    assert.deepEqual({ reason: p.stopReason, ids: p.ids }, { reason: 'aborted', ids: [] });
    const gen = new Generator(model);
    const done = new AbortController();
    done.abort();
    assert.equal((await gen.generate(prompt, { temperature: 0, maxNewTokens: 3, signal: done.signal })).ids.length, 0);
    assert.deepEqual((await gen.generate(prompt, { temperature: 0, maxNewTokens: 5 })).ids, free.ids.slice(0, 5), 'the Generator goes on after an abort');
    gen.dispose();
    model.dispose();
  });

  it('a Generator reuses the cached prefix of a conversation and gives the fresh result', async () => {
    const { model } = await tinyModel();
    const g = new Generator(model);
    const first = await g.generate(prompt, { temperature: 0, maxNewTokens: 5 });
    const turn2 = [...prompt, ...first.ids, 30, 31, 32];
    const second = await g.generate(turn2, { temperature: 0, maxNewTokens: 300 }); // grows the cache, keeping its contents
    assert.equal(second.prefillTokens, 4, 'only the last generated token and the 3 new ones run');
    const fresh = await generate(model, turn2, { temperature: 0, maxNewTokens: 300 });
    assert.deepEqual(second.ids, fresh.ids);
    g.reset();
    const again = await g.generate(turn2, { temperature: 0, maxNewTokens: 300 });
    assert.equal(again.prefillTokens, turn2.length);
    assert.deepEqual(again.ids, fresh.ids);
    g.dispose();
    // The same with a bf16 cache, grown (and copied) the same way, and the prompt in pieces.
    const h = new Generator(model, { kvCacheDtype: 'bf16', prefillChunk: 4 });
    const first16 = await h.generate(prompt, { temperature: 0, maxNewTokens: 5 });
    const turn2b = [...prompt, ...first16.ids, 30, 31, 32];
    const second16 = await h.generate(turn2b, { temperature: 0, maxNewTokens: 300 });
    assert.equal(second16.prefillTokens, 4);
    const fresh16 = await generate(model, turn2b, { temperature: 0, maxNewTokens: 300, kvCacheDtype: 'bf16', prefillChunk: 4 });
    assert.deepEqual(second16.ids, fresh16.ids);
    h.dispose();
    model.dispose();
  });
});
