/**
 * LoRA (Hu et al.) as a wrapper on a linear layer: W' = W + s·B·A with A [r, in],
 * B [out, r] and s = alpha/r (alpha/√r with rsLoRA). A starts Kaiming-uniform like a
 * torch linear layer, B at zero, so a fresh adapter leaves the model unchanged. Parameter
 * names follow PEFT: `<path>.weight` is the frozen base weight, `<path>.lora_A.weight`
 * and `<path>.lora_B.weight` the adapter.
 */
import { LongLoraError } from '../errors.js';
import { dropout } from '../nn/dropout.js';
import { computeWeight, Linear, type LinearLike } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { add, cast, scale } from '../tensor/ops/elementwise.js';
import { fromHost, zeros } from '../tensor/ops/create.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/scope.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';

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

export class LoRALinear extends Module implements LinearLike {
  /** The frozen base weight [out, in]. */
  weight: Tensor;
  lora_A: Linear;
  lora_B: Linear;
  readonly scaling: number;

  constructor(base: Linear, readonly options: LoraOptions, A: Tensor, B: Tensor, readonly runtime: LoraRuntime) {
    super();
    const [out, inF] = base.weight.shape as [number, number];
    if (A.shape[0] !== options.r || A.shape[1] !== inF || B.shape[0] !== out || B.shape[1] !== options.r) {
      throw new LongLoraError(`LoRA weights A [${A.shape}] and B [${B.shape}] do not fit a [${out}, ${inF}] layer with r=${options.r}`);
    }
    this.weight = base.weight;
    this.lora_A = new Linear(A);
    this.lora_B = new Linear(B);
    this.scaling = loraScaling(options);
  }

  /** Wraps `base` with a fresh adapter: A Kaiming-uniform (bound 1/√in), B zero. */
  static fresh(base: Linear, options: LoraOptions, rng: Rng, runtime: LoraRuntime): LoRALinear {
    const [out, inF] = base.weight.shape as [number, number];
    const bound = 1 / Math.sqrt(inF);
    const dt = base.weight.dtype === 'f64' ? 'f64' : 'f32';
    const a = dt === 'f64' ? new Float64Array(options.r * inF) : new Float32Array(options.r * inF);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.uniform() - 1) * bound;
    const A = fromHost(a, [options.r, inF], dt, base.weight.backend).keep();
    const B = zeros([out, options.r], dt, base.weight.backend).keep();
    return new LoRALinear(base, options, A, B, runtime);
  }

  get inFeatures(): number { return this.weight.shape[1]!; }
  get outFeatures(): number { return this.weight.shape[0]!; }

  /** x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ. */
  forward(x: Tensor): Tensor {
    const y = linear(x, computeWeight(this.weight, x));
    const p = this.runtime.training ? this.options.dropout : 0;
    const h = dropout(x, p, this.runtime.rng);
    return add(y, scale(this.lora_B.forward(this.lora_A.forward(h)), this.scaling));
  }

  /** W + s·B·A in the base weight's dtype (computed in f32 or f64). Caller owns it. */
  mergedWeight(): Tensor {
    return tidy(() => noGrad(() => {
      const dt = this.weight.dtype === 'f64' ? 'f64' : 'f32';
      const delta = scale(matmul(cast(this.lora_B.weight, dt), cast(this.lora_A.weight, dt)), this.scaling); // (out, in)
      return cast(add(cast(this.weight, dt), delta), this.weight.dtype);
    }));
  }
}
