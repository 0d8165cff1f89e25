/**
 * Growing a model's vocabulary, as the official LongLoRA scripts do when they add a
 * `[PAD]` token to the Llama tokenizer (32000 → 32001 tokens): the embedding table and
 * the output head get new rows set to the mean of the old rows (transformers'
 * `resize_token_embeddings` followed by the scripts' mean initialisation), and the
 * config's vocab_size follows.
 */
import { LongLoraError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { Linear } from '../nn/linear.js';
import { fromFloatArray } from '../tensor/dtype.js';
import { fromHost, type Tensor } from '../tensor/tensor.js';
import type { Tokenizer } from './tokenizer-core.js';

/** [V, C] → [V', C] with rows V.. set to the mean of rows 0..V-1 (computed in float64). */
async function grownTable(w: Tensor, newRows: number): Promise<Tensor> {
  const [V, C] = w.shape as [number, number];
  const old = await w.floats();
  const mean = new Float64Array(C);
  for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) mean[c]! += old[v * C + c]!;
  for (let c = 0; c < C; c++) mean[c]! /= V;
  const out = new Float64Array(newRows * C);
  for (let i = 0; i < V * C; i++) out[i] = old[i]!;
  for (let v = V; v < newRows; v++) out.set(mean, v * C);
  const t = fromHost(fromFloatArray(out, w.dtype), [newRows, C], w.dtype, w.backend).keep();
  t.name = w.name;
  if (w.requiresGrad) t.requireGrad();
  return t;
}

/**
 * Gives the model `newVocab` embedding rows (and output-head rows when the head is not
 * tied), new rows at the mean of the old ones, and sets config.vocabSize. Call it before
 * LoRA is applied and before an optimizer holds the parameters. Returns the rows added.
 */
export async function resizeEmbeddings(model: LlamaForCausalLM, newVocab: number): Promise<number> {
  const V = model.config.vocabSize;
  if (!Number.isInteger(newVocab) || newVocab < V) {
    throw new LongLoraError(`resizeEmbeddings: the vocabulary can only grow (${V} → ${newVocab} asked)`);
  }
  if (newVocab === V) return 0;
  const emb = model.model.embed_tokens;
  const head = model.lm_head;
  if (head && (!(head instanceof Linear) || head.weight.shape[0] !== V)) {
    throw new LongLoraError('resizeEmbeddings: the output head is wrapped (LoRA?); resize before applying adapters');
  }
  const newEmb = await grownTable(emb.weight, newVocab);
  const newHead = head ? await grownTable(head.weight, newVocab) : null;
  emb.weight.dispose();
  emb.weight = newEmb;
  if (head && newHead) {
    head.weight.dispose();
    head.weight = newHead;
  }
  model.config.vocabSize = newVocab;
  return newVocab - V;
}

/**
 * The official LongLoRA set-up for a tokenizer without a pad token: adds "[PAD]" to the
 * tokenizer and one mean-initialised row to the model. A tokenizer that has a pad token
 * is returned unchanged.
 */
export async function addPadToken<T extends Tokenizer>(model: LlamaForCausalLM, tokenizer: T, token = '[PAD]'): Promise<{ tokenizer: T; padId: number; added: number }> {
  if (tokenizer.padId !== null) return { tokenizer, padId: tokenizer.padId, added: 0 };
  const grown = tokenizer.withAddedPad(token);
  const added = await resizeEmbeddings(model, Math.max(model.config.vocabSize, grown.tokenizer.vocabSize));
  return { tokenizer: grown.tokenizer, padId: grown.id, added };
}
