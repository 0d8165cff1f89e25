/**
 * The Llama decoder (Hugging Face LlamaForCausalLM semantics; also Mistral's, within its window), as a tree of modules whose
 * property names are the Hugging Face names. Activations are [B, N, C]; q is [B, N, H, D]
 * and k, v are [B, N, Hkv, D], so no transposes are needed around attention.
 */
import type { AttentionMask } from '../../backend/backend.js';
import { attention, CAUSAL } from '../../attention/attention.js';
import { LongLoraError } from '../../errors.js';
import { Embedding } from '../../nn/embedding.js';
import { Linear, type LinearLike, type PackedLinear } from '../../nn/linear.js';
import { crossEntropy, shiftLabels } from '../../nn/loss.js';
import { linearCrossEntropy } from '../../nn/lm-loss.js';
import { Module } from '../../nn/module.js';
import { RMSNorm } from '../../nn/rmsnorm.js';
import { rope, RotaryEmbedding, type RopeTables } from '../../nn/rope.js';
import { swiglu } from '../../nn/swiglu.js';
import { add, cast } from '../../tensor/ops/elementwise.js';
import { linear } from '../../tensor/ops/matmul.js';
import { concat, reshape, slice } from '../../tensor/ops/shape.js';
import { fmt, rowsWithin } from '../../tensor/ops/util.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Rng } from '../../tensor/random.js';
import { recompute } from '../../tensor/recompute.js';
import { tidy } from '../../tensor/scope.js';
import { isGradEnabled } from '../../tensor/autograd.js';
import { KVCache, type KVCacheDType } from './cache.js';
import { checkAttentionSpan, type LlamaConfig } from './config.js';
import type { QuantizationInfo } from '../../quant/fingerprint.js';
import { computeWeight } from '../../nn/linear.js';
import { PRECISIONS, type Precision } from '../../tensor/dtype.js';

/** A projection: a Linear, a packed (4-bit) PackedLinear, or a module wrapping one (LoRA). */
export type Projection = Module & LinearLike;

/**
 * Supplies each parameter by its Hugging Face name and expected shape. A source may also
 * build a decoder projection itself (`projection`, e.g. a 4-bit layer quantised while
 * loading); when it has none or returns undefined, the projection is a `Linear` over the
 * weight. The output head is always a `Linear` (QLoRA keeps it in 16 bits).
 */
export interface WeightSource {
  (name: string, shape: number[]): Tensor;
  projection?: (name: string, shape: number[]) => Projection | undefined;
}

/** The projection whose weight is `name` [out, in], with its bias `<path>.bias` [out] when `bias`. */
function projection(w: WeightSource, name: string, shape: number[], bias = false): Projection {
  const layer = w.projection?.(name, shape) ?? new Linear(w(name, shape));
  if (bias) (layer as Linear | PackedLinear).bias = w(name.replace(/\.weight$/, '.bias'), [shape[0]!]);
  return layer;
}

/** Per-forward context shared by the layers. */
export interface LayerContext {
  rope: RopeTables;
  mask: AttentionMask;
  /** Generation: keys and values of earlier tokens; this forward's are appended. */
  cache?: KVCache;
}

export interface ForwardOptions {
  /** Attention pattern: dense causal (default) or S²-Attn for training. */
  mask?: AttentionMask;
  /** Recompute each decoder layer in the backward pass instead of keeping its activations. */
  checkpointing?: boolean;
  /** Generators the layers draw from (dropout), replayed by the recomputation. */
  rngs?: readonly Rng[];
  /** Decode with a KV cache: positions continue at cache.length, which advances by N. */
  cache?: KVCache;
  /**
   * Mixed precision (training): the activations between ops are stored in bf16 or f16,
   * which halves the memory the backward pass keeps. Kernels still compute in f32, weights
   * keep their own dtype (trainable ones stay f32 masters and get f32 gradients), and the
   * logits and loss are f32 (so are the hidden states `hidden` returns). Default f32.
   */
  precision?: Precision;
  /** `hidden`: return the final hidden states in the activations' dtype (the chunked loss head reads them so). */
  keepPrecision?: boolean;
  /** `loss`: rows of the head and loss computed at once (default: `lossChunkRows(V)`, about 64 MiB of logits). */
  lossChunkRows?: number;
}

export { PRECISIONS, type Precision };

/** The model input: token ids [B, N] (i32, as `ids(values, [B, N])` makes them). */
function checkIds(ids: Tensor): void {
  if (ids.rank !== 2 || ids.dtype !== 'i32') throw new LongLoraError(`model input must be i32 token ids [B, N] (ids(values, [B, N])), got ${ids.dtype} ${fmt(ids.shape)}`);
}

export class LlamaAttention extends Module {
  q_proj: Projection;
  k_proj: Projection;
  v_proj: Projection;
  o_proj: Projection;
  /** Qwen 3: RMSNorm over each q and k head before RoPE; null elsewhere. */
  q_norm: RMSNorm | null = null;
  k_norm: RMSNorm | null = null;

  constructor(readonly config: LlamaConfig, prefix: string, w: WeightSource) {
    super();
    const { hiddenSize: C, numHeads: H, numKvHeads: Hkv, headDim: D } = config;
    if (config.qkNorm) {
      this.q_norm = new RMSNorm(w(`${prefix}.q_norm.weight`, [D]), config.rmsNormEps);
      this.k_norm = new RMSNorm(w(`${prefix}.k_norm.weight`, [D]), config.rmsNormEps);
    }
    this.q_proj = projection(w, `${prefix}.q_proj.weight`, [H * D, C], config.qkvBias);
    this.k_proj = projection(w, `${prefix}.k_proj.weight`, [Hkv * D, C], config.qkvBias);
    this.v_proj = projection(w, `${prefix}.v_proj.weight`, [Hkv * D, C], config.qkvBias);
    this.o_proj = projection(w, `${prefix}.o_proj.weight`, [C, H * D], config.oBias);
  }

  forward(x: Tensor, ctx: LayerContext, layer = 0): Tensor {
    const [B, N] = x.shape as [number, number, number];
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = this.config;
    const headNorm = (t: Tensor, norm: RMSNorm | null): Tensor => (norm ? norm.forward(t) : t);
    const q = rope(headNorm(reshape(this.q_proj.forward(x), [B, N, H, D]), this.q_norm), ctx.rope); // (B, N, H, D)
    const k = rope(headNorm(reshape(this.k_proj.forward(x), [B, N, Hkv, D]), this.k_norm), ctx.rope); // (B, N, Hkv, D)
    const v = reshape(this.v_proj.forward(x), [B, N, Hkv, D]); // (B, N, Hkv, D)
    let o: Tensor;
    if (ctx.cache) {
      const c = ctx.cache;
      c.write(layer, k, v);
      o = attention(q, c.k[layer]!, c.v[layer]!, { qOffset: c.length, kvLength: c.length + N }); // (B, N, H, D)
    } else {
      o = attention(q, k, v, { mask: ctx.mask }); // (B, N, H, D)
    }
    return this.o_proj.forward(reshape(o, [B, N, H * D])); // (B, N, C)
  }
}

export class LlamaMLP extends Module {
  gate_proj: Projection;
  up_proj: Projection;
  down_proj: Projection;
  private readonly intermediate: number;

  constructor(config: LlamaConfig, prefix: string, w: WeightSource) {
    super();
    const { hiddenSize: C, intermediateSize: I } = config;
    this.intermediate = I;
    this.gate_proj = projection(w, `${prefix}.gate_proj.weight`, [I, C]);
    this.up_proj = projection(w, `${prefix}.up_proj.weight`, [I, C]);
    this.down_proj = projection(w, `${prefix}.down_proj.weight`, [C, I]);
  }

  /**
   * down(silu(gate(x)) · up(x)), the gate fused (nn/swiglu.ts). Without gradients
   * (evaluation, a prompt's prefill) and over many rows, a block of rows at a time: the MLP
   * is position-wise, and the three [rows, intermediate] tensors then exist for one block
   * only (at 32k tokens through Llama-2 7B they would be 1.3 GiB each in f32).
   */
  forward(x: Tensor): Tensor {
    const C = x.shape[x.rank - 1]!;
    const rows = x.size / C;
    const block = mlpBlockRows(this.intermediate);
    if (isGradEnabled() || rows <= block) return this.rows(x);
    const flat = reshape(x, [rows, C]);
    const parts: Tensor[] = [];
    for (let r0 = 0; r0 < rows; r0 += block) parts.push(tidy(() => this.rows(slice(flat, 0, r0, Math.min(rows, r0 + block)))));
    return reshape(concat(parts, 0), x.shape);
  }

  private rows(x: Tensor): Tensor {
    return this.down_proj.forward(swiglu(this.gate_proj.forward(x), this.up_proj.forward(x)));
  }
}

/** Rows of the MLP run at once without gradients: about 64 MiB per [rows, I] f32 tensor, 256 to 4096 rows. */
export function mlpBlockRows(intermediate: number): number {
  return rowsWithin(64 * 2 ** 20, 4 * intermediate, 256, 256, 4096);
}

export class LlamaDecoderLayer extends Module {
  input_layernorm: RMSNorm;
  self_attn: LlamaAttention;
  post_attention_layernorm: RMSNorm;
  mlp: LlamaMLP;

  constructor(config: LlamaConfig, prefix: string, w: WeightSource) {
    super();
    const C = config.hiddenSize;
    this.input_layernorm = new RMSNorm(w(`${prefix}.input_layernorm.weight`, [C]), config.rmsNormEps);
    this.self_attn = new LlamaAttention(config, `${prefix}.self_attn`, w);
    this.post_attention_layernorm = new RMSNorm(w(`${prefix}.post_attention_layernorm.weight`, [C]), config.rmsNormEps);
    this.mlp = new LlamaMLP(config, `${prefix}.mlp`, w);
  }

  /**
   * Pre-norm residual block: h = x + attn(norm(x)); out = h + mlp(norm(h)). Each half in its
   * own scope, so the attention's temporaries are freed before the MLP runs (the autograd
   * tape keeps what the backward pass needs).
   */
  forward(x: Tensor, ctx: LayerContext, layer = 0): Tensor {
    const h = add(x, tidy(() => this.self_attn.forward(this.input_layernorm.forward(x), ctx, layer)));
    return add(h, tidy(() => this.mlp.forward(this.post_attention_layernorm.forward(h))));
  }
}

export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: LlamaDecoderLayer[];
  norm: RMSNorm;

  constructor(config: LlamaConfig, w: WeightSource, computeDType: 'f32' | 'f64') {
    super();
    this.embed_tokens = new Embedding(w('model.embed_tokens.weight', [config.vocabSize, config.hiddenSize]), computeDType);
    this.layers = [];
    for (let i = 0; i < config.numLayers; i++) this.layers.push(new LlamaDecoderLayer(config, `model.layers.${i}`, w));
    this.norm = new RMSNorm(w('model.norm.weight', [config.hiddenSize]), config.rmsNormEps);
  }
}

export class LlamaForCausalLM extends Module {
  model: LlamaModel;
  /** Null when the output head is tied to the input embeddings. */
  lm_head: Linear | null;
  readonly rotary: RotaryEmbedding;
  /** Set when the base linear layers are stored in 4 bits: what and from which base (quant/). */
  quantization: QuantizationInfo | null = null;

  /**
   * Builds the model from a weight source (a checkpoint, or random init; see load.ts).
   * `computeDType` is the activation dtype: f32, or f64 for gradient checks.
   */
  constructor(readonly config: LlamaConfig, w: WeightSource, readonly computeDType: 'f32' | 'f64' = 'f32') {
    super();
    this.model = new LlamaModel(config, w, computeDType);
    this.lm_head = config.tieWordEmbeddings ? null : new Linear(w('lm_head.weight', [config.vocabSize, config.hiddenSize]));
    this.rotary = new RotaryEmbedding(config.headDim, config.ropeTheta, config.ropeScaling, config.maxPositionEmbeddings);
  }

  /** The final hidden states [B, N, C] for token ids [B, N] (i32). */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    checkIds(ids);
    const [B, N] = ids.shape as [number, number];
    const cache = opts.cache;
    if (cache) {
      if (isGradEnabled()) throw new LongLoraError('a KV cache is for inference; run generation under noGrad()');
      if (cache.B !== B) throw new LongLoraError(`KV cache holds ${cache.B} sequences, the input ${B}`);
      cache.reserve(N);
    }
    const precision = opts.precision ?? 'f32';
    if (precision !== 'f32') {
      if (cache) throw new LongLoraError(`precision ${precision} is for training; generate with a KV cache in f32`);
      if (this.computeDType === 'f64') throw new LongLoraError(`precision ${precision} cannot be used with an f64 model (gradient checks)`);
    }
    const offset = cache?.length ?? 0;
    checkAttentionSpan(this.config, offset + N, 'model input');
    const ctx: LayerContext = {
      rope: this.rotary.tables(N, this.computeDType, ids.backend, offset),
      mask: opts.mask ?? CAUSAL,
      ...(cache ? { cache } : {}),
    };
    let x = this.model.embed_tokens.forward(ids); // (B, N, C)
    if (precision !== 'f32') x = cast(x, precision);
    this.model.layers.forEach((layer, i) => {
      // Each layer in its own scope: its temporaries are freed as soon as it returns
      // (the tape keeps what the backward pass needs).
      const input = x;
      x = tidy(() => opts.checkpointing
        ? recompute((h) => layer.forward(h, ctx, i), input, layer.trainableParameters(), opts.rngs)
        : layer.forward(input, ctx, i));
    });
    if (cache) cache.length += N;
    const out = this.model.norm.forward(x);
    return opts.keepPrecision ? out : cast(out, this.computeDType);
  }

  /** Logits [B, N, V]. */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.head(this.hidden(ids, opts));
  }

  /** The output projection (tied or not) of hidden states [..., C]. */
  head(h: Tensor): Tensor {
    if (this.lm_head) return this.lm_head.forward(h);
    return linear(h, computeWeight(this.model.embed_tokens.weight, h));
  }

  /**
   * Causal-LM loss as Hugging Face computes it: position t predicts labels[t+1]; labels of
   * −100 are ignored; mean over the rest. `labels` [B·N] (often the input ids). The head and
   * the loss run in chunks of rows, so the [B·N, V] logits are never held — unless
   * `opts.logits` asks for them (then they are returned too).
   */
  loss(ids: Tensor, labels: Int32Array, opts: ForwardOptions & { logits?: boolean } = {}): { loss: Tensor; logits?: Tensor } {
    checkIds(ids);
    const [B, N] = ids.shape as [number, number];
    const targets = shiftLabels(labels, B, N);
    if (opts.logits || (this.lm_head && !(this.lm_head instanceof Linear))) {
      const logits = this.forward(ids, opts); // (B, N, V)
      return { loss: crossEntropy(reshape(logits, [B * N, this.config.vocabSize]), targets), logits };
    }
    // The final hidden states stay in the activations' dtype: the chunked head reads them as they are.
    const h = reshape(this.hidden(ids, { ...opts, keepPrecision: true }), [B * N, this.config.hiddenSize]); // (B·N, C)
    const W = computeWeight(this.lm_head ? this.lm_head.weight : this.model.embed_tokens.weight, h); // (V, C)
    return { loss: linearCrossEntropy(h, W, targets, opts.lossChunkRows) };
  }

  /**
   * An empty KV cache for `B` sequences of up to `capacity` tokens (generation), in the
   * activations' dtype or, for half the memory, bf16 or f16.
   */
  createCache(B: number, capacity: number, dtype: KVCacheDType = this.computeDType): KVCache {
    if ((dtype === 'f64') !== (this.computeDType === 'f64')) {
      throw new LongLoraError(`a KV cache in ${dtype} does not fit a model computing in ${this.computeDType}`);
    }
    return new KVCache(this.config, B, capacity, dtype, this.model.embed_tokens.weight.backend);
  }

  override dispose(): void {
    super.dispose();
    this.rotary.dispose();
  }
}
