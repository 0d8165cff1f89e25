/**
 * Linear layers, y = x · Wᵀ (+ b) with W [out, in] as Hugging Face stores it: `Linear`
 * over a weight tensor (trainable, or frozen in 16 bits and cast per use), and
 * `PackedLinear` over a frozen packed weight (4-bit NF4) dequantised per use. Llama's
 * projections have no bias; Qwen 2's q, k and v have one (`bias`, a parameter named
 * `<path>.bias` like Hugging Face's).
 */
import { LongLoraError } from '../errors.js';
import { add, cast } from '../tensor/ops/elementwise.js';
import { linear } from '../tensor/ops/matmul.js';
import { fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';
import { Module } from './module.js';
import { PackedWeight } from './packed-weight.js';

/**
 * The weight as an operand for input `x`: itself, since kernels read f32, f16 and bf16
 * alike (mixed precision) — except around f64 (gradient checks), where it is cast.
 */
export function computeWeight(w: Tensor, x: Tensor): Tensor {
  return (w.dtype === 'f64') === (x.dtype === 'f64') ? w : cast(w, x.dtype);
}

/** Checks a bias against its layer's output size. */
function checkBias(bias: Tensor | null, out: number, what: string): void {
  if (bias && (bias.rank !== 1 || bias.shape[0] !== out)) throw new LongLoraError(`${what}: bias must be [${out}], got ${fmt(bias.shape)}`);
}

/** y + b (b broadcast over the rows), or y when there is no bias. */
export function addBias(y: Tensor, bias: Tensor | null): Tensor {
  return bias ? add(y, computeWeight(bias, y)) : y;
}

export class Linear extends Module {
  constructor(public weight: Tensor, public bias: Tensor | null = null) {
    super();
    if (weight.rank !== 2) throw new LongLoraError(`Linear: weight must be [out, in], got ${fmt(weight.shape)}`);
    checkBias(bias, weight.shape[0]!, 'Linear');
  }

  get inFeatures(): number { return this.weight.shape[1]!; }
  get outFeatures(): number { return this.weight.shape[0]!; }

  forward(x: Tensor): Tensor {
    return addBias(linear(x, computeWeight(this.weight, x)), this.bias);
  }
}

/** Anything that maps [..., in] → [..., out] (a Linear, or a LoRA-wrapped one). */
export interface LinearLike {
  forward(x: Tensor): Tensor;
}

/** The weight of a frozen base layer: a plain tensor, or a packed (quantised) one. */
export type BaseWeight = Tensor | PackedWeight;

/** x · Wᵀ for either kind of base weight. */
export function baseLinear(x: Tensor, w: BaseWeight): Tensor {
  return w instanceof Tensor ? linear(x, computeWeight(w, x)) : w.linear(x);
}

/**
 * A frozen linear layer over a packed weight (e.g. NF4). Its `weight` is not a parameter
 * (see packed-weight.ts); LoRA wraps it like a `Linear`.
 */
export class PackedLinear extends Module implements LinearLike {
  constructor(public weight: PackedWeight, public bias: Tensor | null = null) {
    super();
    checkBias(bias, weight.shape[0], 'PackedLinear');
  }

  get inFeatures(): number { return this.weight.shape[1]; }
  get outFeatures(): number { return this.weight.shape[0]; }

  forward(x: Tensor): Tensor {
    return addBias(this.weight.linear(x), this.bias);
  }
}

/** A frozen base layer LoRA can wrap: plain or packed. */
export type BaseLinear = Linear | PackedLinear;

/** Whether a module is a base linear layer (plain or packed). */
export function isBaseLinear(m: unknown): m is BaseLinear {
  return m instanceof Linear || m instanceof PackedLinear;
}
