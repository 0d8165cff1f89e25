/** Small helpers for model-level tests. */
import { loadLlama, type LoadOptions } from '../../src/models/llama/load.js';
import type { LlamaForCausalLM } from '../../src/models/llama/model.js';
import { Golden, goldenDir } from './fixtures.js';

export { logitsOf } from './forward.js';

/** The tiny golden model and its fixed input ids [2, 12]. */
export async function tinyModel(variant = 'tiny-llama', opts: LoadOptions = {}): Promise<{ model: LlamaForCausalLM; ids: Int32Array; labels: Int32Array; B: number; N: number }> {
  const g = new Golden(variant);
  const ids = g.i32('input_ids');
  const labels = g.i32('labels');
  const [B, N] = g.shape('input_ids') as [number, number];
  g.close();
  return { model: await loadLlama(goldenDir(variant), opts), ids, labels, B, N };
}

