/**
 * GGUF export of a Llama checkpoint, read back with an independent parser
 * (@huggingface/gguf): names, dims and types of every tensor and its data against the
 * checkpoint; attention scores with llama.cpp's interleaved RoPE on the exported q/k equal
 * Hugging Face's rotate-half on the originals; llama.cpp's SentencePiece tokenizer
 * algorithm over the exported vocabulary reproduces the Hugging Face tokenization; RoPE
 * scaling metadata (linear, llama3 frequency factors by llama.cpp's converter formula);
 * refusals.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { openCheckpoint, writeCheckpoint } from '../../src/io/checkpoint.js';
import { EMBED_TOKENIZER_MAX_BYTES, embeddedTokenizer, exportGguf, exportGgufAdapter, llamaCppRopeFlags } from '../../src/models/llama/gguf.js';
import { permuteRotary, ropeFreqFactors } from '../../src/models/llama/gguf-layout.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { describeGgufRopeScaling, ggufToFolder, ggufTokenizer, loadLlamaGguf, readGgufModel } from '../../src/models/llama/gguf-load.js';
import { readGgufHeader } from '../../src/io/gguf-read.js';
import { applyLora } from '../../src/lora/inject.js';
import { mergeAdapter } from '../../src/lora/adapted.js';
import { saveAdapter } from '../../src/io/peft.js';
import { Rng } from '../../src/tensor/random.js';
import { fromHost } from '../../src/tensor/tensor.js';
import { bf16BitsToF32, f16BitsToF32 } from '../../src/tensor/dtype.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { ropeScalingFromHF } from '../../src/nn/rope-scaling.js';
import { ROOT } from '../helpers/fixtures.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';
import { logitsOf } from '../helpers/model.js';
import { assertClose } from '../helpers/compare.js';
import { diff } from '../helpers/diff.js';
import { llama3FromRopeFreqs, llamaFromGguf } from '../../src/models/llama/gguf-model.js';

const fresh = tempFolders('gguf-export');
const TINY = path.join(ROOT, 'models', 'tiny-longlora');

type Parsed = Awaited<ReturnType<typeof gguf>>;

async function read(file: string): Promise<{ parsed: Parsed; meta: Record<string, unknown>; tensor: (name: string) => { shape: number[]; type: number; data: Float32Array } }> {
  const parsed = await gguf(file, { allowLocalFile: true });
  const buf = fs.readFileSync(file);
  const tensor = (name: string): { shape: number[]; type: number; data: Float32Array } => {
    const info = parsed.tensorInfos.find((t) => t.name === name);
    assert.ok(info, `GGUF has no tensor ${name}`);
    const shape = info.shape.map(Number).reverse();
    const n = shape.reduce((a, b) => a * b, 1);
    const at = Number(parsed.tensorDataOffset) + Number(info.offset);
    if (info.dtype === 8) { // Q8_0: blocks of an f16 scale and 32 int8 values
      const blocks = new DataView(buf.buffer, buf.byteOffset + at, (n / 32) * 34);
      const data = Float32Array.from({ length: n }, (_, i) => {
        const b = Math.floor(i / 32);
        return f16BitsToF32(blocks.getUint16(b * 34, true)) * blocks.getInt8(b * 34 + 2 + (i % 32));
      });
      return { shape, type: info.dtype, data };
    }
    const item = info.dtype === 0 ? 4 : 2;
    const bytes = new Uint8Array(buf.subarray(at, at + n * item)).slice();
    const data = info.dtype === 0 ? new Float32Array(bytes.buffer)
      : Float32Array.from(new Uint16Array(bytes.buffer), info.dtype === 1 ? f16BitsToF32 : bf16BitsToF32);
    return { shape, type: info.dtype, data };
  };
  return { parsed, meta: parsed.metadata as unknown as Record<string, unknown>, tensor };
}

/** A copy of the tiny model with config.json changed by `edit` (and tensors by `tensors`, plus `extra` ones). */
function variant(edit: (cfg: Record<string, unknown>) => void, tensors?: (name: string, data: Float32Array) => Float32Array | null,
  extra: Array<{ name: string; dtype: 'f32'; shape: number[]; data: Float32Array }> = []): string {
  const dir = path.join(fresh(), 'model');
  fs.cpSync(TINY, dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}data`) });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(cfg);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  if (tensors) {
    const ck = openCheckpoint(TINY);
    const entries = ck.names().flatMap((n) => {
      const t = ck.read(n, 'f32');
      const data = tensors(n, t.data as Float32Array);
      return data ? [{ name: n, dtype: 'f32' as const, shape: t.shape, data }] : [];
    }).concat(extra);
    ck.close();
    fs.rmSync(path.join(dir, 'model.safetensors'));
    writeCheckpoint(dir, entries);
  }
  return dir;
}

/** RoPE on one head vector at position p: HF's rotate-half pairs (i, i + D/2) or llama.cpp's (2i, 2i + 1). */
function rotate(x: Float64Array, p: number, invFreq: Float64Array, interleaved: boolean): Float64Array {
  const D = x.length;
  const out = new Float64Array(D);
  for (let i = 0; i < D / 2; i++) {
    const [a, b] = interleaved ? [2 * i, 2 * i + 1] : [i, i + D / 2];
    const c = Math.cos(p * invFreq[i]!);
    const s = Math.sin(p * invFreq[i]!);
    out[a] = x[a]! * c - x[b]! * s;
    out[b] = x[b]! * c + x[a]! * s;
  }
  return out;
}

/** Rows [h·D, (h+1)·D) of W [rows, C] times x. */
function headOf(W: Float32Array, C: number, h: number, D: number, x: Float64Array): Float64Array {
  const out = new Float64Array(D);
  for (let r = 0; r < D; r++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += W[(h * D + r) * C + c]! * x[c]!;
    out[r] = s;
  }
  return out;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm) as its source describes it: a
 * space prefix, spaces as "▁", UTF-8 characters as symbols, repeatedly join the adjacent
 * pair whose text is a token of highest score (leftmost on ties), then tokens or <0xNN>.
 */
function llamaCppSpm(text: string, tokens: string[], scores: number[], addSpacePrefix: boolean): number[] {
  const id = new Map(tokens.map((t, i) => [t, i]));
  const syms = [...((addSpacePrefix ? ' ' : '') + text).replaceAll(' ', '\u2581')];
  for (;;) {
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i + 1 < syms.length; i++) {
      const t = id.get(syms[i]! + syms[i + 1]!);
      if (t !== undefined && scores[t]! > bestScore) { best = i; bestScore = scores[t]!; }
    }
    if (best < 0) break;
    syms.splice(best, 2, syms[best]! + syms[best + 1]!);
  }
  return syms.flatMap((s) => {
    const t = id.get(s);
    if (t !== undefined) return [t];
    return [...new TextEncoder().encode(s)].map((b) => id.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)!);
  });
}

/**
 * A forward pass over a GGUF file as llama.cpp computes its llama, qwen2 and qwen3
 * architectures, written from their documented semantics and reading nothing but the file:
 * RMSNorm with the file's epsilon; q/k/v biases when the file has them (qwen2); an RMSNorm
 * over each q and k head when it has attn_q_norm / attn_k_norm (qwen3); RoPE at position ·
 * (1 / scaling factor) with the file's base, on interleaved pairs (2i, 2i + 1) for llama and
 * on halves (i, i + D/2) for the qwens; causal attention with grouped kv heads; SwiGLU; the
 * output head (or the token embeddings when there is none). Float64, for ids [N]; returns
 * logits [N, V].
 */
function llamaCppForward(meta: Record<string, unknown>, tensor: (name: string) => { shape: number[]; data: Float32Array }, ids: number[]): Float64Array {
  const arch = meta['general.architecture'] as string;
  const k = (key: string): number => meta[`${arch}.${key}`] as number;
  const optional = (name: string): Float32Array | null => { try { return tensor(name).data; } catch { return null; } };
  const [C, L, H, Hkv, D, eps, base] = [k('embedding_length'), k('block_count'), k('attention.head_count'), k('attention.head_count_kv'),
    k('rope.dimension_count'), k('attention.layer_norm_rms_epsilon'), k('rope.freq_base')];
  const freqScale = meta[`${arch}.rope.scaling.type`] === 'linear' ? 1 / (meta[`${arch}.rope.scaling.factor`] as number) : 1;
  const N = ids.length;
  const mv = (W: { shape: number[]; data: Float32Array }, x: Float64Array): Float64Array => {
    const [out, inp] = W.shape as [number, number];
    const y = new Float64Array(out);
    for (let o = 0; o < out; o++) { let acc = 0; for (let i = 0; i < inp; i++) acc += W.data[o * inp + i]! * x[i]!; y[o] = acc; }
    return y;
  };
  const norm = (x: Float64Array, w: Float32Array): Float64Array => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const r = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * r * w[i]!);
  };
  const rope = (x: Float64Array, heads: number, pos: number): Float64Array => {
    const y = x.slice();
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < D / 2; i++) {
        const a = pos * freqScale * base ** (-2 * i / D);
        const [p, q] = arch === 'llama' ? [h * D + 2 * i, h * D + 2 * i + 1] : [h * D + i, h * D + i + D / 2];
        y[p] = x[p]! * Math.cos(a) - x[q]! * Math.sin(a);
        y[q] = x[p]! * Math.sin(a) + x[q]! * Math.cos(a);
      }
    }
    return y;
  };
  const emb = tensor('token_embd.weight');
  let h = ids.map((t) => Float64Array.from(emb.data.subarray(t * C, (t + 1) * C)));
  for (let l = 0; l < L; l++) {
    const w = (n: string): { shape: number[]; data: Float32Array } => tensor(`blk.${l}.${n}.weight`);
    const xs = h.map((x) => norm(x, w('attn_norm').data));
    const proj = (n: string, x: Float64Array): Float64Array => {
      const y = mv(w(n), x);
      const b = optional(`blk.${l}.${n}.bias`);
      return b ? y.map((v, i) => v + b[i]!) : y;
    };
    const headNorm = (y: Float64Array, n: string): Float64Array => {
      const g = optional(`blk.${l}.${n}.weight`);
      if (!g) return y;
      const out = new Float64Array(y.length);
      for (let hd = 0; hd < y.length / D; hd++) out.set(norm(y.subarray(hd * D, (hd + 1) * D), g), hd * D);
      return out;
    };
    const qs = xs.map((x, p) => rope(headNorm(proj('attn_q', x), 'attn_q_norm'), H, p));
    const ks = xs.map((x, p) => rope(headNorm(proj('attn_k', x), 'attn_k_norm'), Hkv, p));
    const vs = xs.map((x) => proj('attn_v', x));
    h = h.map((x, i) => {
      const att = new Float64Array(H * D);
      for (let hq = 0; hq < H; hq++) {
        const hk = Math.floor(hq / (H / Hkv));
        const sc = Array.from({ length: i + 1 }, (_, j) => {
          let d = 0;
          for (let e = 0; e < D; e++) d += qs[i]![hq * D + e]! * ks[j]![hk * D + e]!;
          return d / Math.sqrt(D);
        });
        const m = Math.max(...sc);
        const ex = sc.map((v) => Math.exp(v - m));
        const z = ex.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) for (let e = 0; e < D; e++) att[hq * D + e]! += (ex[j]! / z) * vs[j]![hk * D + e]!;
      }
      const h1 = x.map((v, c) => v + mv(w('attn_output'), att)[c]!);
      const x2 = norm(h1, w('ffn_norm').data);
      const g = mv(w('ffn_gate'), x2);
      const u = mv(w('ffn_up'), x2);
      const act = g.map((v, c) => (v / (1 + Math.exp(-v))) * u[c]!);
      const down = mv(w('ffn_down'), act);
      return h1.map((v, c) => v + down[c]!);
    });
  }
  let head = emb;
  try { head = tensor('output.weight'); } catch { /* tied: llama.cpp uses token_embd */ }
  const V = head.shape[0]!;
  const out = new Float64Array(N * V);
  h.forEach((x, i) => out.set(mv(head, norm(x, tensor('output_norm.weight').data)), i * V));
  return out;
}

/** Exports `dir` in f32 and checks llamaCppForward over the file against our model's logits for `ids`. */
async function matchesLlamaCpp(dir: string, ids: number[], t: { diagnostic(s: string): void }): Promise<Awaited<ReturnType<typeof read>> & { cpp: Float64Array; scale: number }> {
  const file = path.join(fresh(), 'x.gguf');
  exportGguf(dir, file, { dtype: 'f32' });
  const r = await read(file);
  const cpp = llamaCppForward(r.meta, r.tensor, ids);
  const model = await loadLlama(dir, { dtype: 'f32' });
  const ours = await logitsOf(model, Int32Array.from(ids), 1, ids.length);
  model.dispose();
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < ours.length; i++) { worst = Math.max(worst, Math.abs(ours[i]! - cpp[i]!)); scale = Math.max(scale, Math.abs(cpp[i]!)); }
  t.diagnostic(`logits: max |diff| ${worst.toExponential(2)} of max |logit| ${scale.toFixed(2)}`);
  assert.ok(worst < 1e-4 * scale, `${worst} vs scale ${scale}`);
  return { ...r, cpp, scale };
}

describe('GGUF export', () => {
  it('every tensor under its llama.cpp name, dims innermost first, norms in f32, data equal (q and k permuted)', async () => {
    const file = path.join(fresh(), 'tiny.gguf');
    const progress: string[] = [];
    const r = exportGguf(TINY, file, { onTensor: (done, total, name) => progress.push(`${done}/${total} ${name}`) });
    assert.deepEqual([r.tensors, r.dtype, r.contextLength], [39, 'f16', 256]);
    assert.equal(r.modelfile, file.replace('.gguf', '.Modelfile'));
    assert.match(fs.readFileSync(r.modelfile!, 'utf8'), /^FROM \.\/tiny\.gguf\nPARAMETER num_ctx 256\n$/m);
    assert.equal(exportGguf(TINY, file.replace('tiny', 'other'), { modelfile: false }).modelfile, null);
    assert.equal(progress.at(-1), '39/39 output.weight');
    const { parsed, meta, tensor } = await read(file);
    assert.equal(meta['general.architecture'], 'llama');
    assert.equal(meta['general.file_type'], 1);
    const cfg = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8')) as Record<string, number>;
    const want: Record<string, unknown> = {
      'llama.vocab_size': cfg.vocab_size, 'llama.context_length': 256, 'llama.embedding_length': cfg.hidden_size,
      'llama.feed_forward_length': cfg.intermediate_size, 'llama.block_count': cfg.num_hidden_layers,
      'llama.attention.head_count': cfg.num_attention_heads, 'llama.attention.head_count_kv': cfg.num_key_value_heads,
      'llama.rope.dimension_count': cfg.head_dim, 'llama.attention.layer_norm_rms_epsilon': Math.fround(cfg.rms_norm_eps!),
      'llama.rope.freq_base': cfg.rope_theta,
    };
    for (const [k, v] of Object.entries(want)) assert.equal(meta[k], v, k);
    assert.equal(meta['llama.rope.scaling.type'], undefined, 'no scaling on the base');
    const names = parsed.tensorInfos.map((t) => t.name);
    assert.equal(names.length, 39);
    for (const n of ['token_embd.weight', 'output_norm.weight', 'output.weight', 'blk.3.attn_norm.weight', 'blk.3.ffn_norm.weight',
      'blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.attn_output.weight', 'blk.2.ffn_gate.weight',
      'blk.2.ffn_up.weight', 'blk.2.ffn_down.weight']) assert.ok(names.includes(n), n);

    const ck = openCheckpoint(TINY);
    const H = cfg.num_attention_heads!;
    const map: Array<[string, string, number]> = [
      ['model.embed_tokens.weight', 'token_embd.weight', 0], ['lm_head.weight', 'output.weight', 0],
      ['model.norm.weight', 'output_norm.weight', 0], ['model.layers.1.input_layernorm.weight', 'blk.1.attn_norm.weight', 0],
      ['model.layers.1.self_attn.q_proj.weight', 'blk.1.attn_q.weight', H], ['model.layers.1.self_attn.k_proj.weight', 'blk.1.attn_k.weight', cfg.num_key_value_heads!],
      ['model.layers.1.self_attn.v_proj.weight', 'blk.1.attn_v.weight', 0], ['model.layers.1.mlp.down_proj.weight', 'blk.1.ffn_down.weight', 0],
    ];
    for (const [hf, g, heads] of map) {
      const src = ck.read(hf, 'f32');
      const got = tensor(g);
      assert.deepEqual(got.shape, src.shape, g);
      assert.equal(got.type, src.shape.length === 1 ? 0 : 1, `${g} type`);
      const expect = heads ? permuteRotary(src.data as Float32Array, src.shape[0]!, src.shape[1]!, heads) : src.data;
      assert.deepEqual(got.data, expect, g);
    }
    ck.close();
  });

  it('attention scores with interleaved RoPE on the exported q, k equal rotate-half on the originals (and differ without the permutation)', async () => {
    const file = path.join(fresh(), 'tiny.gguf');
    exportGguf(TINY, file, { dtype: 'f32' });
    const { meta, tensor } = await read(file);
    const ck = openCheckpoint(TINY);
    const C = 128;
    const D = meta['llama.rope.dimension_count'] as number;
    const invFreq = Float64Array.from({ length: D / 2 }, (_, i) => 1 / (meta['llama.rope.freq_base'] as number) ** ((2 * i) / D));
    const x = Float64Array.from({ length: C }, (_, i) => Math.sin(i * 1.7 + 0.3));
    const y = Float64Array.from({ length: C }, (_, i) => Math.cos(i * 0.9 - 1.1));
    const [Wq, Wk] = ['q_proj', 'k_proj'].map((p) => ck.read(`model.layers.2.self_attn.${p}.weight`, 'f32').data as Float32Array);
    const [Gq, Gk] = ['attn_q', 'attn_k'].map((p) => tensor(`blk.2.${p}.weight`).data);
    ck.close();
    let worst = 0;
    let unpermuted = 0;
    for (let h = 0; h < 4; h++) {
      for (const [pq, pk] of [[7, 3], [200, 17], [255, 0]] as const) {
        const hf = dot(rotate(headOf(Wq!, C, h, D, x), pq, invFreq, false), rotate(headOf(Wk!, C, h, D, y), pk, invFreq, false));
        const cpp = dot(rotate(headOf(Gq!, C, h, D, x), pq, invFreq, true), rotate(headOf(Gk!, C, h, D, y), pk, invFreq, true));
        const wrong = dot(rotate(headOf(Wq!, C, h, D, x), pq, invFreq, true), rotate(headOf(Wk!, C, h, D, y), pk, invFreq, true));
        worst = Math.max(worst, Math.abs(hf - cpp) / Math.abs(hf));
        unpermuted = Math.max(unpermuted, Math.abs(hf - wrong) / Math.abs(hf));
      }
    }
    assert.ok(worst < 1e-12, `relative difference ${worst}`);
    assert.ok(unpermuted > 1e-2, `without the permutation the scores should differ (${unpermuted})`);
  });

  it('a forward pass as llama.cpp computes it, from the GGUF file alone, gives our model\'s logits (interleaved RoPE, linear scaling)', async (t) => {
    const dir = variant((c) => { c.rope_scaling = { type: 'linear', factor: 2 }; });
    const ids = [1, 80, 412, 7, 1999, 33, 256, 1024, 5, 640, 77, 300];
    const { meta, tensor, cpp, scale } = await matchesLlamaCpp(dir, ids, t);
    const wrong = llamaCppForward({ ...meta, 'llama.rope.scaling.factor': 1 }, tensor, ids);
    assert.ok(wrong.some((v, i) => Math.abs(v - cpp[i]!) > 1e-2 * scale), 'the scaling factor matters to the check');
  });

  for (const type of ['qwen2', 'qwen3'] as const) {
    it(`the same for ${type === 'qwen2' ? 'Qwen 2 (rotate-half RoPE, q/k/v biases)' : 'Qwen 3 (rotate-half RoPE, q/k head norms)'}`, async (t) => {
      const rng = new Rng(11);
      const extra = [0, 1, 2, 3].flatMap((l) => (type === 'qwen2' ? ['q', 'k', 'v'] : ['q', 'k']).map((p) => {
        const n = type === 'qwen2' ? `model.layers.${l}.self_attn.${p}_proj.bias` : `model.layers.${l}.self_attn.${p}_norm.weight`;
        const len = type === 'qwen2' ? 128 : 32;
        return { name: n, dtype: 'f32' as const, shape: [len], data: Float32Array.from({ length: len }, () => (type === 'qwen2' ? 0.5 * rng.normal() : 1 + 0.2 * rng.normal())) };
      }));
      const dir = variant((c) => { Object.assign(c, { model_type: type, architectures: [type === 'qwen2' ? 'Qwen2ForCausalLM' : 'Qwen3ForCausalLM'] }); }, (_, d) => d, extra);
      await matchesLlamaCpp(dir, [1, 80, 412, 7, 1999, 33, 256, 1024], t);
    });
  }

  it('an f32 export loads back as the model it came from (same logits): Llama with linear, llama3 and yarn RoPE scaling, Qwen 2 with biases, Qwen 3 with head norms', async () => {
    const rng = new Rng(12);
    const extra = (type: 'qwen2' | 'qwen3'): Array<{ name: string; dtype: 'f32'; shape: number[]; data: Float32Array }> => [0, 1, 2, 3].flatMap((l) =>
      (type === 'qwen2' ? ['q', 'k', 'v'] : ['q', 'k']).map((p) => {
        const len = type === 'qwen2' ? 128 : 32;
        return {
          name: type === 'qwen2' ? `model.layers.${l}.self_attn.${p}_proj.bias` : `model.layers.${l}.self_attn.${p}_norm.weight`,
          dtype: 'f32' as const, shape: [len], data: Float32Array.from({ length: len }, () => (type === 'qwen2' ? 0.5 : 0.2) * rng.normal() + (type === 'qwen3' ? 1 : 0)),
        };
      }));
    const dirs = [
      variant((c) => { c.rope_scaling = { type: 'linear', factor: 4 }; }),
      // llama3: rope_freqs only (with three blended frequencies here); yarn: its own metadata. Both cover max_position_embeddings (256).
      variant((c) => { c.rope_scaling = { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }; }),
      variant((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64, attention_factor: 1.2 }; }),
      ...(['qwen2', 'qwen3'] as const).map((type) => variant((c) => { Object.assign(c, { model_type: type, architectures: [type === 'qwen2' ? 'Qwen2ForCausalLM' : 'Qwen3ForCausalLM'] }); }, (_, d) => d, extra(type))),
    ];
    const ids = Int32Array.from([1, 80, 412, 7, 1999, 33, 256, 1024, 5, 6]);
    for (const dir of dirs) {
      const file = path.join(fresh(), 'm.gguf');
      exportGguf(dir, file, { dtype: 'f32', modelfile: false });
      const a = await loadLlama(dir);
      const b = await loadLlamaGguf(file);
      assert.deepEqual({ ...b.config, torchDtype: null, eosTokenId: null }, { ...a.config, torchDtype: null, eosTokenId: null }, 'the config read back');
      assert.deepEqual(await logitsOf(b, ids, 1, ids.length), await logitsOf(a, ids, 1, ids.length), `${a.config.modelType}: logits`);
      a.dispose();
      b.dispose();
    }
  });

  it('a GGUF file back into a Hugging Face folder: the same weights, config, tokenizer and logits (f32), its dtype kept or bf16 for a quantised file', async () => {
    const ids = Int32Array.from([1, 80, 412, 7, 1999, 33, 256, 1024, 5, 6]);
    const dirs = [
      variant((c) => { c.rope_scaling = { type: 'linear', factor: 4 }; }),
      variant((c) => { c.rope_scaling = { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }; }),
    ];
    for (const dir of dirs) {
      const file = path.join(fresh(), 'm.gguf');
      exportGguf(dir, file, { dtype: 'f32', modelfile: false, embedTokenizer: false });
      const out = path.join(fresh(), 'hf');
      let ticks = 0;
      const r = await ggufToFolder(file, out, { onTensor: () => { ticks++; } });
      assert.deepEqual([r.dtype, r.tensors, ticks], ['f32', 39, 39]);
      const a = await loadLlama(dir);
      const b = await loadLlama(out);
      assert.deepEqual({ ...b.config, torchDtype: null, eosTokenId: null }, { ...a.config, torchDtype: null, eosTokenId: null }, 'the config');
      assert.deepEqual(await logitsOf(b, ids, 1, ids.length), await logitsOf(a, ids, 1, ids.length), 'the logits');
      a.dispose();
      b.dispose();
      const text = 'The quick brown fox, 1234 times.\nNaïve café 😀';
      assert.deepEqual(Tokenizer.load(out).encode(text), Tokenizer.load(dir).encode(text), 'the tokenizer, rebuilt from the file');
    }
    const q8 = path.join(fresh(), 'q8.gguf');
    exportGguf(TINY, q8, { dtype: 'q8_0', modelfile: false });
    const out = path.join(fresh(), 'hf');
    assert.equal((await ggufToFolder(q8, out)).dtype, 'bf16', 'a quantised file becomes bf16');
    assert.equal((JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { torch_dtype: string }).torch_dtype, 'bfloat16');
    await assert.rejects(ggufToFolder(q8, out), /hf already exists and is not an empty folder; pass a new folder/);
    assert.equal((await ggufToFolder(q8, path.join(fresh(), 'f16'), { dtype: 'f16' })).dtype, 'f16');
    // A file cut short fails while the weights are staged: nothing in the folder looks like a model.
    fs.truncateSync(q8, fs.statSync(q8).size - 1000);
    const cut = path.join(fresh(), 'cut');
    await assert.rejects(ggufToFolder(q8, cut), /q8\.gguf ends early \(truncated\?\); export it again/);
    assert.ok(!fs.existsSync(cut) || fs.readdirSync(cut).every((f) => !f.endsWith('.json') && !f.endsWith('.safetensors')), String(fs.existsSync(cut) && fs.readdirSync(cut)));
  });

  it('an export carries its Hugging Face tokenizer: the same ids, specials and chat template as the folder\'s', async () => {
    const bpe = path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'llama-bpe');
    const rng = new Rng(2);
    const bpeEmbeddings = (rows: number): Array<{ name: string; dtype: 'f32'; shape: number[]; data: Float32Array }> =>
      ['model.embed_tokens.weight', 'lm_head.weight'].map((name) => ({ name, dtype: 'f32' as const, shape: [rows, 128], data: Float32Array.from({ length: rows * 128 }, () => 0.02 * rng.normal()) }));
    const texts = ['The quick brown fox, 1234 times.', '  leading spaces and\nnew lines\n\n', 'Naïve café — 3½ “quotes” 😀'];
    for (const [model, tokDir] of [[TINY, TINY], [variant((c) => { c.vocab_size = Tokenizer.load(bpe).vocabSize; }, (n, d) => (n.includes('embed_tokens') || n === 'lm_head.weight' ? null : d), bpeEmbeddings(Tokenizer.load(bpe).vocabSize)), bpe]] as const) {
      const file = path.join(fresh(), 't.gguf');
      exportGguf(model, file, { tokenizerDir: tokDir, modelfile: false });
      const want = Tokenizer.load(tokDir);
      const got = ggufTokenizer(await readGgufHeader(file), file)!;
      assert.ok(got, 'the tokenizer is there');
      for (const t of texts) assert.deepEqual(got.encode(t), want.encode(t), `${tokDir}: ${JSON.stringify(t)}`);
      assert.deepEqual([got.bosId, got.eosId, got.vocabSize], [want.bosId, want.eosId, want.vocabSize]);
      assert.equal(got.chatTemplate?.source, want.chatTemplate?.source);
    }
    const bare = path.join(fresh(), 'bare.gguf');
    exportGguf(TINY, bare, { embedTokenizer: false, modelfile: false });
    assert.equal(ggufTokenizer(await readGgufHeader(bare), bare, { rebuild: false }), null);
    // Without it, the tokenizer is rebuilt from the tokenizer.ggml vocabulary (test/tokenizer/gguf-tokenizer.test.ts).
    assert.match(ggufTokenizer(await readGgufHeader(bare), bare)!.source, /bare\.gguf \(tokenizer\.ggml vocabulary\)$/);
    // Past the limit (Hugging Face's GGUF parser reads strings up to 10 MB), it is left out.
    const tok = Tokenizer.load(TINY);
    assert.equal(embeddedTokenizer(tok).length, 2);
    assert.deepEqual(embeddedTokenizer(tok, JSON.stringify(tok.json).length - 1), []);
    assert.ok(EMBED_TOKENIZER_MAX_BYTES <= 10_000_000);
  });

  it('loading a GGUF file reads Llama 3\'s frequency factors back as its scaling, and refuses what it cannot read, naming the fix', async () => {
    const file = path.join(fresh(), 'm.gguf');
    exportGguf(variant((c) => { c.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 }; }), file, { modelfile: false });
    assert.equal(await describeGgufRopeScaling(file, await readGgufHeader(file)), 'llama3 ×8 (original 256)');
    const llama3 = await loadLlamaGguf(file); // read back from its frequency factors
    assert.deepEqual([llama3.config.ropeScaling, llama3.config.maxPositionEmbeddings], [{ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 }, 2048]);
    llama3.dispose();
    const factors = (await read(file)).tensor('rope_freqs.weight').data;
    const patched = path.join(fresh(), 'patched.gguf');
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf(Buffer.from(factors.buffer, factors.byteOffset, factors.byteLength));
    assert.ok(at > 0, 'the factors are in the file');
    bytes.writeFloatLE(factors[5]! * 0.9, at + 5 * 4); // one slow frequency off its band
    fs.writeFileSync(patched, bytes);
    assert.equal(await describeGgufRopeScaling(patched, await readGgufHeader(patched)), 'frequency factors (rope_freqs)');
    await assert.rejects(loadLlamaGguf(patched), /patched\.gguf: its rope_freqs frequency factors follow no band of fast, blended and slow frequencies, so they are not Llama 3's RoPE scaling; load the model folder it was exported from/);
    await assert.rejects(loadLlamaGguf(path.join(fresh(), 'none.gguf')), /none\.gguf does not exist/);
    const cut = path.join(fresh(), 'cut.gguf');
    exportGguf(TINY, cut, { modelfile: false });
    fs.truncateSync(cut, fs.statSync(cut).size - 1000);
    await assert.rejects(loadLlamaGguf(cut), /cut\.gguf ends early \(truncated\?\); export it again/);
    // the header alone is checked against the file's size too (what `info` reads)
    await assert.rejects(readGgufHeader(cut), /cut\.gguf ends early \(truncated\?\); export it again, or download it again: it has [\d,]+ bytes, but its tensors reach byte [\d,]+/);
    const head = path.join(fresh(), 'head.gguf');
    fs.writeFileSync(head, fs.readFileSync(cut).subarray(0, 5000)); // cut inside the header
    await assert.rejects(readGgufHeader(head), /head\.gguf (ends early|is not a readable GGUF file)/);
  });

  it('llama.cpp\'s SentencePiece algorithm over the exported vocabulary tokenizes as Hugging Face does', async () => {
    const file = path.join(fresh(), 'tiny.gguf');
    exportGguf(TINY, file);
    const { meta } = await read(file);
    assert.equal(meta['tokenizer.ggml.model'], 'llama');
    assert.equal(meta['tokenizer.ggml.add_space_prefix'], true);
    assert.deepEqual([meta['tokenizer.ggml.bos_token_id'], meta['tokenizer.ggml.eos_token_id'], meta['tokenizer.ggml.unknown_token_id']], [1, 2, 0]);
    const tokens = meta['tokenizer.ggml.tokens'] as string[];
    const scores = meta['tokenizer.ggml.scores'] as number[];
    const types = meta['tokenizer.ggml.token_type'] as number[];
    assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6], '<unk> unknown, <s> </s> control, <0x00> byte');
    const tok = Tokenizer.load(TINY);
    const held = new Uint16Array(fs.readFileSync(path.join(TINY, 'data', 'heldout.bin')).buffer.slice(0, 2 * 40000));
    const lines = tok.decode([...held], { skipSpecialTokens: true }).split('\n').filter((l) => l.trim().length > 0).slice(0, 120);
    lines.push('Naïve café — 3½ “quotes” and 😀 outside the vocabulary', '  two  spaces ');
    let mismatched = 0;
    for (const line of lines) {
      const want = tok.encode(line, { addSpecialTokens: false });
      const got = llamaCppSpm(line, tokens, scores, true);
      if (got.join() !== want.join()) mismatched++;
    }
    assert.equal(mismatched, 0, `${mismatched} of ${lines.length} lines tokenize differently`);
    // Scores matter: with llama.cpp's converter's flat scores (−1000 for all) the same algorithm diverges.
    const flat = lines.filter((l) => llamaCppSpm(l, tokens, scores.map(() => -1000), true).join() !== tok.encode(l, { addSpecialTokens: false }).join());
    assert.ok(flat.length > lines.length / 2, `flat scores should mis-tokenize most lines (${flat.length})`);
  });

  it('LongLoRA\'s linear interpolation: scaling type and factor, and the extended context length', async () => {
    const dir = variant((c) => { c.rope_scaling = { type: 'linear', factor: 8 }; });
    const file = path.join(fresh(), 'x.gguf');
    const r = exportGguf(dir, file, { dtype: 'bf16', name: 'tiny-2k' });
    assert.equal(r.contextLength, 2048);
    const { meta, tensor } = await read(file);
    assert.deepEqual([meta['llama.rope.scaling.type'], meta['llama.rope.scaling.factor'], meta['llama.context_length']], ['linear', 8, 2048]);
    assert.deepEqual([meta['general.name'], meta['general.file_type']], ['tiny-2k', 32]);
    assert.equal(tensor('blk.0.ffn_up.weight').type, 30);
  });

  it('q8_0: 2-D weights in ggml\'s Q8_0 (q and k permuted first), within half a step of each block\'s scale (and its f16 rounding); norms in f32', async () => {
    const file = path.join(fresh(), 'q8.gguf');
    const r = exportGguf(TINY, file, { dtype: 'q8_0' });
    assert.equal(r.dtype, 'q8_0');
    const { meta, tensor } = await read(file);
    assert.equal(meta['general.file_type'], 7);
    assert.ok(fs.statSync(file).size < 0.6 * fs.statSync(path.join(TINY, 'model.safetensors')).size, 'about half of f16');
    const ck = openCheckpoint(TINY);
    for (const [hf, g, heads] of [['model.layers.0.self_attn.k_proj.weight', 'blk.0.attn_k.weight', 4], ['model.embed_tokens.weight', 'token_embd.weight', 0],
      ['model.layers.3.mlp.down_proj.weight', 'blk.3.ffn_down.weight', 0]] as const) {
      const src = ck.read(hf, 'f32');
      const want = heads ? permuteRotary(src.data as Float32Array, src.shape[0]!, src.shape[1]!, heads) : src.data as Float32Array;
      const got = tensor(g);
      assert.equal(got.type, 8, `${g} is Q8_0`);
      for (let b = 0; b < want.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(want[b * 32 + j]!));
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          // Half a step, plus |q| ≤ 127 times the f16 rounding of the scale (2^-11 relative).
          const d = amax / 127;
          assert.ok(Math.abs(got.data[i]! - want[i]!) <= d * (0.5 + 127 * 2 ** -11) + 1e-12, `${g}[${i}]: ${got.data[i]} vs ${want[i]}`);
        }
      }
    }
    assert.equal(tensor('blk.2.ffn_norm.weight').type, 0);
    ck.close();
  });

  it('llama3 scaling: rope_freqs.weight by llama.cpp\'s converter formula', async () => {
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 };
    const dir = variant((c) => { c.rope_scaling = scaling; });
    const file = path.join(fresh(), 'x.gguf');
    const r = exportGguf(dir, file);
    assert.equal(r.contextLength, 2048);
    const { meta, tensor } = await read(file);
    assert.equal(meta['llama.rope.scaling.type'], undefined);
    const ff = tensor('rope_freqs.weight');
    assert.deepEqual([ff.shape, ff.type], [[16], 0]);
    const D = 32;
    const [lowWl, highWl] = [256 / scaling.low_freq_factor, 256 / scaling.high_freq_factor];
    const want = Array.from({ length: D / 2 }, (_, i) => {
      const wl = (2 * Math.PI) / (1 / 10000 ** ((2 * i) / D));
      if (wl < highWl) return 1;
      if (wl > lowWl) return scaling.factor;
      const smooth = (256 / wl - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor);
      return 1 / ((1 - smooth) / scaling.factor + smooth);
    });
    assert.ok(want.includes(1) && want.includes(8) && want.some((v) => v > 1 && v < 8), 'the bands all occur');
    ff.data.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1e-6 * want[i]!, `factor ${i}: ${v} vs ${want[i]}`));
  });

  it('rope_freqs back to llama3 scaling: Llama 3.1 and 3.2 exactly, other band edges as equivalent ones, anything else refused', () => {
    const factorsOf = (D: number, theta: number, s: { factor: number; low: number; high: number; orig: number }): Float32Array =>
      ropeFreqFactors({ headDim: D, ropeTheta: theta, maxPositionEmbeddings: s.orig,
        ropeScaling: { type: 'llama3', factor: s.factor, lowFreqFactor: s.low, highFreqFactor: s.high, originalMaxPositionEmbeddings: s.orig } });
    const block = (factor: number, high: number, orig: number): Record<string, unknown> =>
      ({ rope_type: 'llama3', factor, low_freq_factor: 1, high_freq_factor: high, original_max_position_embeddings: orig });
    // Llama 3.1 8B / 70B and Llama 3.2 1B / 3B as their config.json files set it
    assert.deepEqual(llama3FromRopeFreqs(factorsOf(128, 500000, { factor: 8, low: 1, high: 4, orig: 8192 }), 128, 500000, 'f'), block(8, 4, 8192));
    assert.deepEqual(llama3FromRopeFreqs(factorsOf(64, 500000, { factor: 32, low: 1, high: 4, orig: 8192 }), 64, 500000, 'f'), block(32, 4, 8192));
    assert.deepEqual(llama3FromRopeFreqs(factorsOf(128, 500000, { factor: 16, low: 1, high: 2.5, orig: 4096 }), 128, 500000, 'f'), block(16, 2.5, 4096));
    // low 2, high 8, original 512 has the band edges of low 1, high 4, original 256: the same factors
    const same = llama3FromRopeFreqs(factorsOf(128, 10000, { factor: 4, low: 2, high: 8, orig: 512 }), 128, 10000, 'f');
    assert.deepEqual(same, block(4, 4, 256));
    // one blended frequency (high 4 assumed) and none (edges between two frequencies)
    assert.deepEqual(llama3FromRopeFreqs(factorsOf(16, 10000, { factor: 8, low: 1, high: 4, orig: 100 }), 16, 10000, 'f'), block(8, 4, 100));
    const none = factorsOf(8, 10000, { factor: 8, low: 1, high: 4, orig: 512 });
    assert.deepEqual([...none], [1, 1, 8, 8], 'no frequency falls between the edges');
    const back = ropeScalingFromHF(llama3FromRopeFreqs(none, 8, 10000, 'f')!, 'rope_scaling', 'f', 1);
    assert.deepEqual(ropeFreqFactors({ headDim: 8, ropeTheta: 10000, maxPositionEmbeddings: 1, ropeScaling: back }), none);
    assert.equal(llama3FromRopeFreqs(new Float32Array(64).fill(1), 128, 500000, 'f'), null, 'all ones: plain RoPE');
    throwsLL(() => llama3FromRopeFreqs(new Float32Array(63).fill(2), 128, 500000, 'm.gguf'), 'm.gguf: its rope_freqs frequency factors are 63, not one per frequency (64)', 'load the model folder');
    throwsLL(() => llama3FromRopeFreqs(Float32Array.from({ length: 64 }, (_, i) => 1 + i / 10), 128, 500000, 'm.gguf'), 'follow no band of fast, blended and slow frequencies');
    throwsLL(() => llama3FromRopeFreqs(new Float32Array(64).fill(0.5), 128, 500000, 'm.gguf'), 'include values below 1');
  });

  it('an adapter\'s RoPE scaling as llama.cpp flags (yarn with the betas it sets; llama3 from the base file\'s rope_freqs)', () => {
    assert.equal(llamaCppRopeFlags({ type: 'linear', factor: 8 }, 4096), '--rope-scaling linear --rope-scale 8');
    assert.equal(llamaCppRopeFlags({ type: 'yarn', factor: 4 }, 32768), '--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 32768');
    assert.equal(llamaCppRopeFlags({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 4096, betaFast: 16, betaSlow: 2 }, 32768),
      '--rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 4096 --yarn-beta-fast 16 --yarn-beta-slow 2');
    assert.equal(llamaCppRopeFlags({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4 }, 131072), '');
    throwsLL(() => llamaCppRopeFlags({ type: 'dynamic', factor: 2 }, 4096), 'dynamic NTK RoPE scaling, which llama.cpp does not implement');
  });

  it('Mistral: llama.cpp\'s llama architecture, the context no longer than the sliding window', async () => {
    const dir = variant((c) => { Object.assign(c, { model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 128 }); });
    const file = path.join(fresh(), 'x.gguf');
    assert.equal(exportGguf(dir, file).contextLength, 128);
    const { meta } = await read(file);
    assert.deepEqual([meta['general.architecture'], meta['llama.context_length']], ['llama', 128]);
  });

  it('Qwen 2: the qwen2 architecture, q/k/v biases in f32, nothing permuted (llama.cpp rotates halves for it)', async () => {
    const bias = (n: string): { name: string; dtype: 'f32'; shape: number[]; data: Float32Array } =>
      ({ name: n, dtype: 'f32', shape: [128], data: Float32Array.from({ length: 128 }, (_, i) => Math.sin(i + n.length)) });
    const extra = [0, 1, 2, 3].flatMap((l) => ['q', 'k', 'v'].map((p) => bias(`model.layers.${l}.self_attn.${p}_proj.bias`)));
    const dir = variant((c) => { Object.assign(c, { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], rope_theta: 1e6 }); }, (_, d) => d, extra);
    const file = path.join(fresh(), 'x.gguf');
    assert.equal(exportGguf(dir, file, { dtype: 'f32' }).tensors, 39 + 12);
    const { meta, tensor } = await read(file);
    assert.deepEqual([meta['general.architecture'], meta['qwen2.context_length'], meta['qwen2.rope.freq_base'], meta['llama.context_length']], ['qwen2', 256, 1e6, undefined]);
    const ck = openCheckpoint(dir);
    for (const [hf, g] of [['model.layers.2.self_attn.k_proj.bias', 'blk.2.attn_k.bias'], ['model.layers.2.self_attn.q_proj.weight', 'blk.2.attn_q.weight']] as const) {
      const got = tensor(g);
      assert.equal(got.type, 0, `${g} in f32`);
      assert.deepEqual(got.data, ck.read(hf, 'f32').data, `${g} as stored, not permuted`);
    }
    ck.close();
  });

  it('Llama with attention_bias: q and k biases permuted with their rows, v and o as they are', async () => {
    const bias = (n: string): { name: string; dtype: 'f32'; shape: number[]; data: Float32Array } =>
      ({ name: n, dtype: 'f32', shape: [128], data: Float32Array.from({ length: 128 }, (_, i) => i + 0.5) });
    const extra = [0, 1, 2, 3].flatMap((l) => ['q', 'k', 'v', 'o'].map((p) => bias(`model.layers.${l}.self_attn.${p}_proj.bias`)));
    const dir = variant((c) => { c.attention_bias = true; }, (_, d) => d, extra);
    const file = path.join(fresh(), 'x.gguf');
    assert.equal(exportGguf(dir, file).tensors, 39 + 16);
    const { tensor } = await read(file);
    const plain = Float32Array.from({ length: 128 }, (_, i) => i + 0.5);
    // Head 0 of 4 (D = 32): interleaved pairs (j, j + 16) → rows 2j, 2j + 1.
    assert.deepEqual(Array.from(tensor('blk.0.attn_q.bias').data.subarray(0, 4)), [0.5, 16.5, 1.5, 17.5]);
    assert.deepEqual(tensor('blk.2.attn_k.bias').data, permuteRotary(plain, 128, 1, 4));
    assert.deepEqual(tensor('blk.2.attn_v.bias').data, plain);
    assert.deepEqual(tensor('blk.1.attn_output.bias').data, plain);
  });

  it('Qwen 3: the qwen3 architecture with its head norms as attn_q_norm / attn_k_norm in f32', async () => {
    const norm = (n: string): { name: string; dtype: 'f32'; shape: number[]; data: Float32Array } =>
      ({ name: n, dtype: 'f32', shape: [32], data: Float32Array.from({ length: 32 }, (_, i) => 1 + 0.01 * i) });
    const extra = [0, 1, 2, 3].flatMap((l) => ['q', 'k'].map((p) => norm(`model.layers.${l}.self_attn.${p}_norm.weight`)));
    const dir = variant((c) => { Object.assign(c, { model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'] }); }, (_, d) => d, extra);
    const file = path.join(fresh(), 'x.gguf');
    assert.equal(exportGguf(dir, file, { dtype: 'f32' }).tensors, 39 + 8);
    const { meta, tensor } = await read(file);
    assert.equal(meta['general.architecture'], 'qwen3');
    const qn = tensor('blk.3.attn_q_norm.weight');
    assert.deepEqual([qn.type, qn.shape, qn.data[31]], [0, [32], Math.fround(1.31)]);
    const ck = openCheckpoint(dir);
    assert.deepEqual(tensor('blk.1.attn_k.weight').data, ck.read('model.layers.1.self_attn.k_proj.weight', 'f32').data, 'not permuted');
    ck.close();
  });

  it('tied embeddings: no output.weight (llama.cpp reuses token_embd)', async () => {
    const dir = variant((c) => { c.tie_word_embeddings = true; }, (n, d) => (n === 'lm_head.weight' ? null : d));
    const file = path.join(fresh(), 'x.gguf');
    const r = exportGguf(dir, file);
    assert.equal(r.tensors, 38);
    const { parsed } = await read(file);
    assert.ok(!parsed.tensorInfos.some((t) => t.name === 'output.weight'));
  });

  it('refusals name the problem and the fix, and leave an existing file untouched', () => {
    const out = path.join(fresh(), 'x.gguf');
    fs.writeFileSync(out, 'previous');
    throwsLL(() => exportGguf(TINY, out.replace('.gguf', '.bin')), 'must end in .gguf');
    throwsLL(() => exportGguf(variant((c) => { c.rope_scaling = { type: 'dynamic', factor: 2 }; }), out), 'dynamic NTK', 'linear interpolation');
    throwsLL(() => exportGguf(variant((c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4, beta_fast: 16, truncate: false }; }), out),
      'yarn RoPE scaling sets beta_fast 16, truncate false, which llama.cpp does not apply to llama models (it uses beta_fast 32, beta_slow 1, truncate true)', 'with those yarn defaults');
    throwsLL(() => exportGguf(TINY, out, { dtype: 'f8' as 'f16' }), 'dtype must be f32, f16, bf16, q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0, iq4_xs, iq4_nl, q3_k_l, q3_k_m, q3_k_s, q2_k, got f8');
    const big = variant(() => {}, (n, d) => (n === 'model.layers.0.mlp.up_proj.weight' ? d.map((v, i) => (i === 5 ? 1e6 : v)) : d));
    throwsLL(() => exportGguf(big, out, { dtype: 'f16' }), 'model.layers.0.mlp.up_proj.weight', 'beyond f16\'s range', 'export with --dtype bf16');
    const nan = variant(() => {}, (n, d) => (n === 'model.layers.1.self_attn.v_proj.weight' ? d.map((v, i) => (i === 7 ? NaN : v)) : d));
    throwsLL(() => exportGguf(nan, out, { dtype: 'q4_k_m' }), 'model.layers.1.self_attn.v_proj.weight', 'value 7 is NaN; a quantised weight must be finite');
    const missing = variant(() => {}, (n, d) => (n === 'model.layers.2.mlp.gate_proj.weight' ? null : d));
    throwsLL(() => exportGguf(missing, out), 'no tensor named "model.layers.2.mlp.gate_proj.weight"');
    const byteLevel = variant(() => {});
    fs.writeFileSync(path.join(byteLevel, 'tokenizer.json'), JSON.stringify({
      model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, normalizer: null, post_processor: null, added_tokens: [],
    }));
    fs.writeFileSync(path.join(byteLevel, 'tokenizer_config.json'), '{}');
    throwsLL(() => exportGguf(byteLevel, out), 'byte-level BPE whose pre-tokenizer', 'convert_hf_to_gguf.py');
    assert.equal(fs.readFileSync(out, 'utf8'), 'previous');
    assert.deepEqual(fs.readdirSync(path.dirname(out)), ['x.gguf']);
  });

  it('a plain LoRA as a GGUF LoRA: alpha, lora_a / lora_b (lora_b\'s q and k rows permuted); base + scale·B·A is the merged export', async (t) => {
    const dir = fresh();
    const model = await loadLlama(TINY, { dtype: 'f32' });
    applyLora(model, ['q_proj', 'k_proj', 'v_proj', 'o_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(0), { training: false, rng: new Rng(1) });
    const rng = new Rng(3);
    for (const [n, p] of model.namedParameters()) {
      if (!n.endsWith('lora_B.weight')) continue;
      model.setAt(n, fromHost(Float32Array.from({ length: p.size }, () => rng.normal() * 0.05), p.shape, 'f32', p.backend).keep());
      p.dispose();
    }
    const adapterDir = path.join(dir, 'run');
    await saveAdapter(model, adapterDir, { baseModel: TINY, extras: [], sidecar: { rope_scaling: { type: 'linear', factor: 2 } } });
    model.dispose();
    const file = path.join(dir, 'lora.gguf');
    const r = exportGgufAdapter(TINY, adapterDir, file);
    assert.deepEqual([r.layers, r.rank, r.ropeFlags], [16, 4, '--rope-scaling linear --rope-scale 2']);
    const { meta, tensor, parsed } = await read(file);
    assert.deepEqual([meta['general.architecture'], meta['general.type'], meta['adapter.type'], meta['adapter.lora.alpha']], ['llama', 'adapter', 'lora', 8]);
    assert.equal(parsed.tensorInfos.length, 32);
    assert.deepEqual(tensor('blk.1.attn_q.weight.lora_a').shape, [4, 128]);
    assert.deepEqual(tensor('blk.1.attn_q.weight.lora_b').shape, [128, 4]);

    // The merged model exported whole, minus the base exported whole, is (alpha / r)·B·A of the GGUF LoRA.
    await mergeAdapter(TINY, adapterDir, path.join(dir, 'merged'), { dtype: 'f32' });
    exportGguf(path.join(dir, 'merged'), path.join(dir, 'merged.gguf'), { dtype: 'f32' });
    exportGguf(TINY, path.join(dir, 'base.gguf'), { dtype: 'f32' });
    const merged = await read(path.join(dir, 'merged.gguf'));
    const base = await read(path.join(dir, 'base.gguf'));
    let worst = 0;
    for (const g of ['blk.0.attn_q.weight', 'blk.2.attn_k.weight', 'blk.3.attn_v.weight', 'blk.1.attn_output.weight']) {
      const A = tensor(`${g}.lora_a`).data;
      const B = tensor(`${g}.lora_b`).data;
      const W1 = merged.tensor(g).data;
      const W0 = base.tensor(g).data;
      for (let o = 0; o < 128; o++) {
        for (let i = 0; i < 128; i++) {
          let ba = 0;
          for (let k = 0; k < 4; k++) ba += B[o * 4 + k]! * A[k * 128 + i]!;
          worst = Math.max(worst, Math.abs(W1[o * 128 + i]! - W0[o * 128 + i]! - 2 * ba));
        }
      }
    }
    t.diagnostic(`merged − base vs (alpha/r)·B·A: max |diff| ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `${worst}`);

    // Read back (llama.cpp's --lora): the base file plus the GGUF LoRA gives the merged file's logits,
    // in Node, in the browser's reader (from bytes, the adapter as a Blob), and from the command line.
    const ids = Int32Array.from([1, 80, 412, 7, 1999, 33, 256, 1024]);
    const mergedModel = await loadLlamaGguf(path.join(dir, 'merged.gguf'));
    const want = await logitsOf(mergedModel, ids, 1, ids.length);
    const { ropeScaling } = mergedModel.config; // the adapter's linear ×2 (llama.cpp: the flags exportGgufAdapter gives)
    mergedModel.dispose();
    const withLora = await loadLlamaGguf(path.join(dir, 'base.gguf'), { adapter: file, ropeScaling });
    const got = await logitsOf(withLora, ids, 1, ids.length);
    withLora.dispose();
    assertClose(got, want, 1e-5, 'base.gguf + lora.gguf vs merged.gguf: logits', (s) => t.diagnostic(s));
    const plain = await loadLlamaGguf(path.join(dir, 'base.gguf'), { ropeScaling });
    assert.ok(diff(await logitsOf(plain, ids, 1, ids.length), want).rel > 1e-3, 'the adapter changes the logits');
    plain.dispose();
    const web = await llamaFromGguf(fs.readFileSync(path.join(dir, 'base.gguf')), { adapter: new Blob([fs.readFileSync(file)]), ropeScaling });
    assert.deepEqual(await logitsOf(web.model, ids, 1, ids.length), got, 'llamaFromGguf with the adapter: the same');
    web.model.dispose();
    const run = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'generate', '--model', path.join(dir, 'base.gguf'), '--adapter', file,
      '--prompt', 'x', '--max-new-tokens', '2', '--backend', 'cpu'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /adapter: \S*lora\.gguf \(GGUF LoRA: 16 layers, rank 4, scale 2\), added to the weights as they were read/);
    assert.match(run.stderr, /carries no RoPE scaling: .*pass --context-size/);
    const ppl = (model: string, ...more: string[]): string => {
      const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'eval', 'ppl', '--model', model, ...more, '--data', path.join(TINY, 'data', 'heldout.bin'),
        '--seq-len', '256', '--procedure', 'windowed', '--max-windows', '2', '--backend', 'cpu'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return /windowed\s+256\s+step 256\s+([\d.]+)/.exec(r.stdout)![1]!;
    };
    const context = String(2 * (await readGgufModel(path.join(dir, 'base.gguf'))).config.maxPositionEmbeddings);
    assert.equal(ppl(path.join(dir, 'base.gguf'), '--adapter', file, '--context-size', context), ppl(path.join(dir, 'merged.gguf')), 'the command line: base + adapter at the trained context = merged');
    await assert.rejects(loadLlamaGguf(path.join(dir, 'base.gguf'), { adapter: path.join(dir, 'merged.gguf') }), /merged\.gguf is not a GGUF LoRA adapter \(general\.type "model", adapter\.type null\)/);
    await assert.rejects(loadLlamaGguf(path.join(dir, 'base.gguf'), { adapter: path.join(dir, 'none.gguf') }), /none\.gguf does not exist/);

    // rsLoRA's alpha / √r folded into alpha; a LongLoRA adapter (trained norms) is refused.
    const cfgFile = path.join(adapterDir, 'adapter_config.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), use_rslora: true }));
    exportGgufAdapter(TINY, adapterDir, file);
    assert.equal((await read(file)).meta['adapter.lora.alpha'], 16);
    fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), modules_to_save: ['embed_tokens', 'norm'] }));
    throwsLL(() => exportGgufAdapter(TINY, adapterDir, path.join(dir, 'no.gguf')), 'also trained embed_tokens, norm', 'longlora merge');
    assert.ok(!fs.existsSync(path.join(dir, 'no.gguf')));
  });
});

