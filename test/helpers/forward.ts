/** A model's logits on the host (node-free, shared with the browser tests). */
import type { LlamaForCausalLM, ForwardOptions } from '../../src/models/llama/model.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { tidy } from '../../src/tensor/scope.js';

/** Logits of `ids` [B, N] as a host array (no tape). */
export async function logitsOf(model: LlamaForCausalLM, ids: Int32Array, B: number, N: number, opts: ForwardOptions = {}): Promise<Float32Array | Float64Array> {
  const t = noGrad(() => tidy(() => model.forward(idsTensor(ids, [B, N]), opts)));
  const out = await t.floats();
  t.dispose();
  return out;
}
