/**
 * A Llama whose weights are set by hand so that it retrieves: a two-layer trigram
 * induction circuit. It continues a text the way the text continued after the last
 * earlier occurrence of its final three tokens — so after "…The pass key is" it copies
 * "▁", then the key's digits, from the key line. It runs through the ordinary model code
 * (RMSNorm, rotate-half RoPE, attention, residuals, KV cache), which is the point: the
 * passkey test needs a model that can pass it.
 *
 * Residual stream (C = 102): tokens are written as 2-hot codes in 20-dim slots (v → dims
 * v mod 10 and 10 + ⌊v/10⌋): S1 the current token, S2..S4 the tokens 1..3 back, OUT the
 * retrieved token; dim 100 is a constant 1. Head dim 160 with rope_theta = 0.76^(−80):
 * frequency pair i turns by 0.76^i rad per position, so pairs 0..7 see positions and pairs
 * 49..79 barely turn over thousands of positions (content matching).
 *  - Layer 0, heads 0..2: attend to the token 1, 2, 3 back (q and k from the constant dim on
 *    pairs 0..7, k rotated by the offset), copying its code into S2, S3, S4.
 *  - Layer 1, head 0: matches q = (S1, S2, S3) at t against k = (S2, S3, S4) at s on the
 *    static pairs — the trigram before s equals the last trigram at t — and copies S1 at s
 *    into OUT. The head reads OUT. MLPs are zero.
 */
import { parseLlamaConfig } from '../../src/models/llama/config.js';
import { LlamaForCausalLM } from '../../src/models/llama/model.js';
import { fromHost } from '../../src/tensor/tensor.js';

const V = 96;
const C = 102;
const H = 3;
const D = 160;
const HALF = D / 2;
const R = 0.76;
const S1 = 0;
const S2 = 20;
const S3 = 40;
const S4 = 60;
const OUT = 80;
const ONE = 100;
const POS_PAIRS = 8;
const STATIC_FROM = 49;

/** The two dims of token v's code inside a slot. */
function code(v: number): [number, number] {
  return [v % 10, 10 + Math.floor(v / 10)];
}

/** Content dims of the head: both dims of every static pair. */
function staticDims(): number[] {
  const out: number[] = [];
  for (let i = STATIC_FROM; i < HALF; i++) out.push(i, i + HALF);
  return out;
}

/** The retrieving model (vocabulary 96: it fits the tiny-96 tokenizer fixture). */
export function inductionModel(): LlamaForCausalLM {
  const config = parseLlamaConfig({
    model_type: 'llama', vocab_size: V, hidden_size: C, intermediate_size: 2, num_hidden_layers: 2,
    num_attention_heads: H, num_key_value_heads: H, head_dim: D, rms_norm_eps: 1e-6,
    rope_theta: R ** -HALF, max_position_embeddings: 8192, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
  }, 'induction model');
  const n0 = Math.sqrt(C / 3); // layer-0 input after RMSNorm: 3 active dims (2-hot code + constant)
  const n1 = Math.sqrt(C / 9); // layer-1 input: codes in S1..S4 + constant
  const A = Math.sqrt((25 * Math.sqrt(D)) / (n0 * n0)); // 25 logits per unit of positional score
  const Q = Math.sqrt((30 * Math.sqrt(D)) / (n1 * n1)); // 30 logits per matching code dim
  const st = staticDims();
  const weights = new Map<string, Float32Array>();
  const set = (name: string, cols: number, row: number, col: number, v: number): void => { weights.get(name)![row * cols + col] = v; };
  return new LlamaForCausalLM(config, (name, shape) => {
    const w = new Float32Array(shape.reduce((a, s) => a * s, 1));
    weights.set(name, w);
    if (name.endsWith('norm.weight')) w.fill(1);
    if (name === 'model.embed_tokens.weight') {
      for (let v = 0; v < V; v++) { for (const d of code(v)) set(name, C, v, S1 + d, 1); set(name, C, v, ONE, 1); }
    }
    if (name === 'lm_head.weight') for (let v = 0; v < V; v++) for (const d of code(v)) set(name, C, v, OUT + d, 10);
    const m = /^model\.layers\.(\d)\.self_attn\.(\w)_proj\.weight$/.exec(name);
    if (m) {
      const layer = Number(m[1]);
      const p = m[2]!;
      if (layer === 0) {
        for (let h = 0; h < H; h++) {
          const delta = h + 1;
          for (let i = 0; i < POS_PAIRS; i++) {
            const th = R ** i;
            if (p === 'q') set(name, C, h * D + i, ONE, A);
            if (p === 'k') { set(name, C, h * D + i, ONE, A * Math.cos(delta * th)); set(name, C, h * D + i + HALF, ONE, A * Math.sin(delta * th)); }
          }
          for (let j = 0; j < 20; j++) {
            if (p === 'v') set(name, C, h * D + j, S1 + j, 1);
            if (p === 'o') set(name, H * D, [S2, S3, S4][h]! + j, h * D + j, 1 / n0);
          }
        }
      } else {
        for (let j = 0; j < 20; j++) {
          if (p === 'q') { set(name, C, st[j]!, S1 + j, Q); set(name, C, st[20 + j]!, S2 + j, Q); set(name, C, st[40 + j]!, S3 + j, Q); }
          if (p === 'k') { set(name, C, st[j]!, S2 + j, Q); set(name, C, st[20 + j]!, S3 + j, Q); set(name, C, st[40 + j]!, S4 + j, Q); }
          if (p === 'v') set(name, C, j, S1 + j, 1);
          if (p === 'o') set(name, H * D, OUT + j, j, 1 / n1);
        }
      }
    }
    const t = fromHost(w, shape, 'f32').keep();
    t.name = name;
    return t;
  });
}
