/** A bias-free linear layer, y = x · Wᵀ, with W [out, in] as Hugging Face stores it. */
import { LongLoraError } from '../errors.js';
import { cast } from '../tensor/ops/elementwise.js';
import { linear } from '../tensor/ops/matmul.js';
import { fmt } from '../tensor/ops/util.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from './module.js';

/** The weight in the input's compute dtype (frozen 16-bit weights are cast per use). */
export function computeWeight(w: Tensor, x: Tensor): Tensor {
  return w.dtype === x.dtype ? w : cast(w, x.dtype);
}

export class Linear extends Module {
  constructor(public weight: Tensor) {
    super();
    if (weight.rank !== 2) throw new LongLoraError(`Linear: weight must be [out, in], got ${fmt(weight.shape)}`);
  }

  get inFeatures(): number { return this.weight.shape[1]!; }
  get outFeatures(): number { return this.weight.shape[0]!; }

  forward(x: Tensor): Tensor {
    return linear(x, computeWeight(this.weight, x));
  }
}

/** Anything that maps [..., in] → [..., out] (a Linear, or a LoRA-wrapped one). */
export interface LinearLike {
  forward(x: Tensor): Tensor;
}
