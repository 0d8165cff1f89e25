/**
 * A frozen weight kept in a packed storage format (4-bit NF4, `src/quant/`) and expanded on
 * the fly, once per use, into a temporary compute-dtype weight.
 *
 * A packed weight is not a parameter: it never trains, has no gradient, and is not listed
 * by `Module.namedParameters()`. Modules hold it in a property like a tensor (`weight`);
 * `Module.namedBuffers()` lists it and `Module.dispose()` frees it.
 *
 * Its linear op, y = x · Ŵᵀ with Ŵ the dequantised weight, records one autograd node whose
 * backward pass dequantises again and returns dx = dy · Ŵ (the frozen weight gets no
 * gradient). The node saves only the packed parts, never the expanded weight, so the
 * temporary [out, in] tensor lives for one matmul in each direction (as QLoRA does). A
 * backend with a fused kernel for the format runs the forward product without that
 * temporary where it is faster (a few rows of x: decoding).
 */
import { LongLoraError } from '../errors.js';
import type { Backend } from '../backend/backend.js';
import { noGrad, record } from '../tensor/autograd.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { computeDType, fmt } from '../tensor/ops/util.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export abstract class PackedWeight {
  /** Storage format, e.g. 'nf4'. */
  abstract readonly format: string;
  /** [out, in]. */
  abstract readonly shape: readonly [number, number];
  abstract readonly backend: Backend;
  /** A digest of the packed contents (what an adapter was trained against), or null. */
  abstract readonly digest: string | null;

  /** The device tensors holding the packed form (retained by the autograd node). */
  protected abstract parts(): readonly Tensor[];
  /** Expands `parts` (this weight's own, or the node's retained views) into [out, in]. */
  protected abstract expand(parts: readonly Tensor[], dtype: 'f32' | 'f64'): Tensor;

  /**
   * x [..., in] · Ŵᵀ by the backend's fused kernel over `parts`, without expanding the
   * weight, or null where the backend has none for these arguments (the default).
   */
  protected fusedLinear(_x: Tensor, _parts: readonly Tensor[]): Tensor | null {
    return null;
  }

  /** Values of the unpacked weight. */
  get numel(): number { return this.shape[0] * this.shape[1]; }

  /** Device bytes this weight holds (its own parts; shared code books excluded). */
  abstract get bytes(): number;

  /** The dequantised weight [out, in] in a compute dtype; the caller owns it. */
  dequantize(dtype: 'f32' | 'f64' = 'f32'): Tensor {
    return this.expand(this.parts(), dtype);
  }

  /** x [..., in] · Ŵᵀ → [..., out]; the gradient flows to x only. */
  linear(x: Tensor): Tensor {
    const [out, inF] = this.shape;
    if (x.shape[x.rank - 1] !== inF) {
      throw new LongLoraError(`linear: input ${fmt(x.shape)} does not fit the ${this.format} weight [${out}, ${inF}] (expected [..., ${inF}])`);
    }
    // Fused where the backend can (decoding); else expanded in f32 (f64 for gradient checks),
    // which 16-bit inputs (mixed precision) read as is.
    const dt = computeDType('linear', x);
    const y = tidy(() => noGrad(() => this.fusedLinear(x, this.parts()) ?? linear(x, this.dequantize(dt))));
    record(`linear_${this.format}`, y, [x], this.parts(), (g, saved) => [
      matmul(g, this.expand(saved, dt)), // (..., out) · (out, in) → (..., in)
    ]);
    return y;
  }

  /** Frees the packed parts. Idempotent. */
  abstract dispose(): void;
}
