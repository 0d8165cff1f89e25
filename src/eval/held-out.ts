/**
 * Held-out loss during training: the mean causal-LM loss over every labelled target of a
 * fixed set of micro-batches, with dense attention (evaluation semantics, SPEC §2) and no
 * gradient tape. Perplexity is e^loss.
 */
import type { LlamaForCausalLM } from '../models/llama/model.js';
import type { TrainingBatch } from '../data/training-data.js';
import { IGNORE_INDEX, shiftLabels } from '../nn/loss.js';
import { noGrad } from '../tensor/autograd.js';
import { ids as idsTensor } from '../tensor/ops/index.js';
import type { Precision } from '../tensor/dtype.js';
import { tidy } from '../tensor/scope.js';

/** Loss, perplexity and the number of scored targets. */
export interface HeldOutResult {
  loss: number;
  ppl: number;
  /** Targets scored. */
  tokens: number;
}

/** Token-weighted mean loss of `batches` (null when they hold no labelled target). */
export async function heldOutLoss(model: LlamaForCausalLM, batches: readonly TrainingBatch[], precision: Precision = 'f32'): Promise<HeldOutResult | null> {
  let nll = 0;
  let tokens = 0;
  for (const b of batches) {
    const labels = b.labels ?? b.ids;
    let count = 0;
    for (const t of shiftLabels(labels, b.B, b.N)) if (t !== IGNORE_INDEX) count++;
    if (count === 0) continue;
    const t = noGrad(() => tidy(() => model.loss(idsTensor(b.ids, [b.B, b.N]), labels, { precision }).loss));
    nll += (await t.item()) * count;
    t.dispose();
    tokens += count;
  }
  if (tokens === 0) return null;
  return { loss: nll / tokens, ppl: Math.exp(nll / tokens), tokens };
}
