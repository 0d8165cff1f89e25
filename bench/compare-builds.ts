/**
 * This build against another one (a checkout of an earlier commit, built), in one run, on
 * the decoding paths: one row through a 4096 × 4096 NF4 layer and dequantising it (nf4), one
 * token's attention over an f32, a bf16 and an f16 KV cache (32 query heads, 4 kv heads,
 * D 64) at 4k and 16k keys (attention), the sampling candidates (temperature 0.6, top-p 0.9)
 * at 32k and 128k vocabularies (sampling), and an f16 weight (f16): x·Wᵀ through a
 * 4096 × 4096 layer for 1 and 512 rows of x, and embedding rows from a 32000 × 4096 table;
 * and the loss of a small random Llama over 8192 tokens without gradients, as perplexity
 * runs it (forward): its time and the peak memory above the weights.
 * The two builds are measured alternately, `--rounds` times each, on Wasm backends of the
 * same threads, and each figure is a median.
 *
 *   git worktree add ../before <commit> && (cd ../before && npm ci && npm run build)
 *   npm run build && node dist/bench/compare-builds.js --before ../before [--rounds 2] [--parts nf4,attention,sampling,f16]
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const PARTS = ['nf4', 'attention', 'sampling', 'f16', 'forward'];
const { values } = parseArgs({ options: { before: { type: 'string' }, rounds: { type: 'string', default: '2' }, parts: { type: 'string', default: PARTS.join(',') } } });
if (!values.before) throw new Error('--before DIR: the root of the other build (a checkout with dist/ built)');
const parts = new Set(values.parts!.split(','));
for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--parts: unknown part ${JSON.stringify(p)}; choose from ${PARTS.join(', ')}`);
const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const roots: Record<string, string> = { before: path.resolve(values.before, 'dist'), after: here };

async function load(root: string): Promise<Record<string, any>> {
  const mod = (p: string): Promise<any> => import(pathToFileURL(path.join(root, p)).href);
  return { ...(await mod('src/backend/wasm/wasm.js')), ...(await mod('src/quant/nf4-weight.js')), ...(await mod('src/tensor/tensor.js')),
    ...(await mod('src/tensor/dtype.js')), ...(await mod('src/eval/sampling.js')), ...(await mod('src/tensor/random.js')),
    ...(await mod('src/models/llama/init.js')), ...(await mod('src/models/llama/config.js')), ...(await mod('src/tensor/autograd.js')),
    ...(await mod('src/tensor/scope.js')), ids: (await mod('src/tensor/ops/index.js')).ids };
}

function median(f: () => void, reps: number): number {
  f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); }
  return ts.sort((a, b) => a - b)[Math.floor(reps / 2)]!;
}

async function measure(m: Record<string, any>): Promise<Record<string, number>> {
  const be = await m.WasmBackend.create({ threads: 2 });
  const rng = new m.Rng(1);
  const out: Record<string, number> = {};
  const [N, K] = [4096, 4096];
  const buf = (dtype: string, n: number, data: Float32Array): unknown => { const b = be.alloc(dtype, n); be.upload(b, m.fromFloatArray(data, dtype)); return b; };
  const rnd = (n: number, s = 1): Float32Array => Float32Array.from({ length: n }, () => s * rng.normal());
  if (parts.has('nf4')) {
    const w = rnd(N * K, 0.02);
    const q = m.Nf4Weight.quantize(w, [N, K], { backend: be });
    const x = m.fromHost(rnd(K), [1, K], 'f32', be);
    out['NF4 4096 × 4096: one row (ms)'] = median(() => q.linear(x).dispose(), 10);
    out['NF4 4096 × 4096: dequantise (ms)'] = median(() => q.dequantize('f32').dispose(), 8);
    q.dispose(); x.dispose();
  }
  const [H, Hkv, D] = [32, 4, 64];
  for (const keys of parts.has('attention') ? [4096, 16384] : []) {
    for (const dt of ['f32', 'bf16', 'f16']) {
      const [qb, kb, vb] = [buf('f32', H * D, rnd(H * D)), buf(dt, keys * Hkv * D, rnd(keys * Hkv * D)), buf(dt, keys * Hkv * D, rnd(keys * Hkv * D))];
      const [ob, lb] = [be.alloc('f32', H * D), be.alloc('f32', H)];
      const args = { B: 1, Nq: 1, Nk: keys, kvStride: keys, H, Hkv, D, scale: 1 / 8, qOffset: keys - 1, mask: { kind: 'causal' } };
      out[`attention, ${keys} keys, ${dt} cache (ms)`] = median(() => be.attention(qb, kb, vb, ob, lb, args), 30);
      for (const b of [qb, kb, vb, ob, lb]) be.free(b);
    }
  }
  if (parts.has('f16')) {
    const wb = buf('f16', N * K, rnd(N * K, 0.02));
    for (const rows of [1, 512]) {
      const [xb, ob] = [buf('f32', rows * K, rnd(rows * K)), be.alloc('f32', rows * N)];
      const g = { batch: 1, m: rows, n: N, k: K, transA: false, transB: true, alpha: 1, beta: 0, strideA: 0, strideB: 0 };
      out[`x·Wᵀ, W f16 4096 × 4096, ${rows} row${rows === 1 ? '' : 's'} (ms)`] = median(() => be.matmul(xb, wb, ob, g), rows === 1 ? 20 : 3);
      be.free(xb); be.free(ob);
    }
    be.free(wb);
    const [V, C] = [32000, 4096];
    const tb = buf('f16', V * C, rnd(V * C, 0.02));
    for (const T of [1, 512]) {
      const [ib, ob] = [be.alloc('i32', T), be.alloc('f32', T * C)];
      be.upload(ib, Int32Array.from({ length: T }, (_, i) => (i * 7919) % V));
      out[`embedding, f16 table 32000 × 4096, ${T} row${T === 1 ? '' : 's'} (ms)`] = median(() => be.gather(tb, ib, ob, V, C, T), 5);
      be.free(ib); be.free(ob);
    }
    be.free(tb);
  }
  for (const V of parts.has('sampling') ? [32000, 128256] : []) {
    const logits = Float32Array.from({ length: V }, () => 3 * rng.normal());
    out[`sampling candidates, vocabulary ${V} (ms)`] = median(() => m.candidates(logits, { temperature: 0.6, topP: 0.9, topK: 0 }), 15);
  }
  if (parts.has('forward')) {
    const T = 8192;
    const config = m.parseLlamaConfig({
      model_type: 'llama', hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 2, num_attention_heads: 16, num_key_value_heads: 16,
      vocab_size: 32000, max_position_embeddings: T, rms_norm_eps: 1e-5, rope_theta: 10000,
    });
    const model = m.randomLlama(config, { seed: 1, backend: be });
    const tokens = Int32Array.from({ length: T }, () => rng.int(32000));
    const base = be.memory().bytes;
    let peak = 0;
    out[`forward without gradients, ${T} tokens (ms)`] = median(() => {
      be.resetPeak();
      const loss = m.noGrad(() => m.tidy(() => model.loss(m.ids(tokens, [1, T], be), tokens).loss));
      loss.dispose();
      peak = be.memory().peakBytes - base;
    }, 2);
    out[`forward without gradients, ${T} tokens: peak MiB above the weights`] = peak / 2 ** 20;
    model.dispose();
  }
  await be.dispose();
  return out;
}

const builds = { before: await load(roots.before!), after: await load(roots.after!) };
const runs: Record<string, Array<Record<string, number>>> = { before: [], after: [] };
for (let r = 0; r < Number(values.rounds); r++) {
  for (const name of ['before', 'after'] as const) runs[name]!.push(await measure(builds[name]));
}
console.log(`before: ${values.before}; ${Number(values.rounds)} rounds, alternating; medians per round`);
for (const key of Object.keys(runs.after![0]!)) {
  const b = runs.before!.map((x) => x[key]!), a = runs.after!.map((x) => x[key]!);
  const mean = (xs: number[]): number => xs.reduce((s, v) => s + v, 0) / xs.length;
  console.log(`${key.padEnd(52)} before ${b.map((v) => v.toFixed(2)).join(', ').padEnd(14)} after ${a.map((v) => v.toFixed(2)).join(', ').padEnd(14)} ${(mean(b) / mean(a)).toFixed(1)}×`);
}
process.exit(0);
