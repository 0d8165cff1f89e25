/** RMSNorm (Llama): y = x · rsqrt(mean(x²) + eps) · w over the last axis. */
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { zeros } from '../tensor/ops/create.js';
import { backendOf, computeDType, fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';
import { computeWeight } from './linear.js';
import { Module } from './module.js';

/** x [..., C], w [C]. */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const C = x.shape[x.rank - 1]!;
  if (w.rank !== 1 || w.shape[0] !== C) throw new LongLoraError(`rmsnorm: weight ${fmt(w.shape)} does not fit input ${fmt(x.shape)}`);
  const be = backendOf('rmsnorm', x, w);
  const dt = computeDType('rmsnorm', x, w);
  const rows = x.size / C;
  const out = Tensor.empty(x.shape, x.dtype, be);
  const rstd = Tensor.empty([rows], dt, be);
  be.rmsnorm(x.buffer, w.buffer, out.buffer, rstd.buffer, rows, C, eps);
  record('rmsnorm', out, [x, w], [x, w, rstd], (g, [sx, sw, sr], needs) => {
    const dx = Tensor.empty(x.shape, x.dtype, be);
    const dw = needs[1] ? zeros(w.shape, w.dtype, be) : null;
    be.rmsnormBackward(sx!.buffer, sw!.buffer, sr!.buffer, g.buffer, dx.buffer, dw ? dw.buffer : null, rows, C);
    return [needs[0] ? dx : null, dw];
  });
  rstd.dispose();
  return out;
}

/** RMSNorm layer with weight [C]. */
export class RMSNorm extends Module {
  constructor(public weight: Tensor, readonly eps: number) {
    super();
  }

  forward(x: Tensor): Tensor {
    return rmsnorm(x, computeWeight(this.weight, x), this.eps);
  }
}
