/**
 * The SwiGLU gate of the Llama MLP, silu(gate) ⊙ up, as one differentiable op: one fused
 * kernel where the backend has it (it keeps only gate and up for the backward pass, one
 * [N, I] tensor less per MLP than the composition), else silu and mul composed.
 */
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { mul, silu } from '../tensor/ops/elementwise.js';
import { backendOf, computeDType, fmt, sameShape } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';

/** silu(gate) ⊙ up for gate and up of one shape. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (!sameShape(gate.shape, up.shape)) throw new LongLoraError(`swiglu: gate ${fmt(gate.shape)} and up ${fmt(up.shape)} differ`);
  const be = backendOf('swiglu', gate, up);
  computeDType('swiglu', gate, up);
  if (!be.swiglu || !be.swigluBackward) return mul(silu(gate), up);
  const out = Tensor.empty(gate.shape, gate.dtype, be);
  be.swiglu(gate.buffer, up.buffer, out.buffer);
  record('swiglu', out, [gate, up], [gate, up], (g, [sg, su], needs) => {
    const dgate = needs[0] ? Tensor.empty(gate.shape, gate.dtype, be) : null;
    const dup = needs[1] ? Tensor.empty(up.shape, up.dtype, be) : null;
    be.swigluBackward!(sg!.buffer, su!.buffer, g.buffer, dgate?.buffer ?? null, dup?.buffer ?? null);
    return [dgate, dup];
  });
  return out;
}
