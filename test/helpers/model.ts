/** Small helpers for model-level tests. */
import { loadLlama, type LoadOptions } from '../../src/models/llama/load.js';
import type { LlamaForCausalLM, ForwardOptions } from '../../src/models/llama/model.js';
import { ids as idsTensor } from '../../src/tensor/ops/index.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { tidy } from '../../src/tensor/scope.js';
import { Golden, goldenDir } from './fixtures.js';

/** The tiny golden model and its fixed input ids [2, 12]. */
export async function tinyModel(variant = 'tiny-llama', opts: LoadOptions = {}): Promise<{ model: LlamaForCausalLM; ids: Int32Array; labels: Int32Array; B: number; N: number }> {
  const g = new Golden(variant);
  const ids = g.i32('input_ids');
  const labels = g.i32('labels');
  const [B, N] = g.shape('input_ids') as [number, number];
  g.close();
  return { model: await loadLlama(goldenDir(variant), opts), ids, labels, B, N };
}

/** Logits of `ids` [B, N] as a host array (no tape). */
export async function logitsOf(model: LlamaForCausalLM, ids: Int32Array, B: number, N: number, opts: ForwardOptions = {}): Promise<Float32Array | Float64Array> {
  const t = noGrad(() => tidy(() => model.forward(idsTensor(ids, [B, N]), opts)));
  const out = await t.floats();
  t.dispose();
  return out;
}
