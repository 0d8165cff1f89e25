/**
 * LoRA (Hu et al.) as a wrapper on a linear layer: W' = W + s·B·A with A [r, in],
 * B [out, r] and s = alpha/r (alpha/√r with rsLoRA). A starts Kaiming-uniform like a
 * torch linear layer, B at zero, so a fresh adapter leaves the model unchanged. Parameter
 * names follow PEFT: `<path>.weight` is the frozen base weight, `<path>.lora_A.weight`
 * and `<path>.lora_B.weight` the adapter. The base may be a plain `Linear` or a packed one
 * (a 4-bit NF4 base, QLoRA): its weight is kept as `weight` either way — a tensor
 * parameter, or a packed weight (not a parameter; `Module.namedBuffers`).
 */
import { LongLoraError } from '../errors.js';
import { dropout } from '../nn/dropout.js';
import { addBias, baseLinear, Linear, type BaseLinear, type BaseWeight, type LinearLike } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { add, cast, scale } from '../tensor/ops/elementwise.js';
import { fromHost, zeros } from '../tensor/ops/create.js';
import { matmul } from '../tensor/ops/matmul.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/scope.js';
import type { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout: number;
  /** Scale by alpha/√r instead of alpha/r (rank-stabilised LoRA). */
  rslora: boolean;
}

export const LORA_DEFAULTS: LoraOptions = { r: 8, alpha: 16, dropout: 0, rslora: false };

/** State shared by every LoRA layer of a model: training mode and the dropout generator. */
export interface LoraRuntime {
  training: boolean;
  rng: Rng;
}

export function loraScaling(o: LoraOptions): number {
  return o.rslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r;
}

export function checkLoraOptions(o: LoraOptions): void {
  if (!Number.isInteger(o.r) || o.r < 1) throw new LongLoraError(`LoRA rank r must be a positive integer, got ${o.r}`);
  if (!(o.alpha > 0)) throw new LongLoraError(`LoRA alpha must be positive, got ${o.alpha}`);
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new LongLoraError(`LoRA dropout must be in [0, 1), got ${o.dropout}`);
}

/** The dtype LoRA weights get on a base: f64 over an f64 weight (gradient checks), else f32. */
export function adapterDType(w: BaseWeight): 'f32' | 'f64' {
  return w instanceof Tensor && w.dtype === 'f64' ? 'f64' : 'f32';
}

export class LoRALinear extends Module implements LinearLike {
  /** The frozen base weight [out, in]: a tensor, or a packed (4-bit) weight. */
  weight: BaseWeight;
  /** The base layer's bias [out] (Qwen 2's q, k, v), or null. */
  bias: Tensor | null;
  lora_A: Linear;
  lora_B: Linear;
  readonly scaling: number;

  constructor(base: BaseLinear, readonly options: LoraOptions, A: Tensor, B: Tensor, readonly runtime: LoraRuntime) {
    super();
    const [out, inF] = base.weight.shape as [number, number];
    if (A.shape[0] !== options.r || A.shape[1] !== inF || B.shape[0] !== out || B.shape[1] !== options.r) {
      throw new LongLoraError(`LoRA weights A [${A.shape}] and B [${B.shape}] do not fit a [${out}, ${inF}] layer with r=${options.r}`);
    }
    this.weight = base.weight;
    this.bias = base.bias;
    this.lora_A = new Linear(A);
    this.lora_B = new Linear(B);
    this.scaling = loraScaling(options);
  }

  /** Wraps `base` with a fresh adapter: A Kaiming-uniform (bound 1/√in), B zero. */
  static fresh(base: BaseLinear, options: LoraOptions, rng: Rng, runtime: LoraRuntime): LoRALinear {
    const [out, inF] = base.weight.shape as [number, number];
    const bound = 1 / Math.sqrt(inF);
    const dt = adapterDType(base.weight);
    const a = dt === 'f64' ? new Float64Array(options.r * inF) : new Float32Array(options.r * inF);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.uniform() - 1) * bound;
    const A = fromHost(a, [options.r, inF], dt, base.weight.backend).keep();
    const B = zeros([out, options.r], dt, base.weight.backend).keep();
    return new LoRALinear(base, options, A, B, runtime);
  }

  get inFeatures(): number { return this.weight.shape[1]!; }
  get outFeatures(): number { return this.weight.shape[0]!; }

  /** x·Wᵀ (+ b) + s·(dropout(x)·Aᵀ)·Bᵀ. */
  forward(x: Tensor): Tensor {
    const y = addBias(baseLinear(x, this.weight), this.bias);
    const p = this.runtime.training ? this.options.dropout : 0;
    const h = dropout(x, p, this.runtime.rng);
    return add(y, scale(this.lora_B.forward(this.lora_A.forward(h)), this.scaling));
  }

  /**
   * W + s·B·A, computed in f32 or f64, in the base weight's dtype (f32 for a packed base,
   * which is dequantised). Caller owns it.
   */
  mergedWeight(): Tensor {
    return tidy(() => noGrad(() => {
      const w = this.weight;
      const dt = adapterDType(w);
      const delta = scale(matmul(cast(this.lora_B.weight, dt), cast(this.lora_A.weight, dt)), this.scaling); // (out, in)
      if (!(w instanceof Tensor)) return add(w.dequantize(dt), delta);
      return cast(add(cast(w, dt), delta), w.dtype);
    }));
  }
}
