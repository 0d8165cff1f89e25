/**
 * An importance matrix (llama.cpp's "imatrix") for quantising a model to GGUF: for every
 * linear layer, the mean square of each input column's activations over calibration
 * tokens. Quantising a weight W[o, i] to Q changes the layer's output by Σᵢ (W − Q)[o, i]·xᵢ,
 * whose expected square is about Σᵢ (W − Q)²[o, i]·E[xᵢ²] when the columns are
 * uncorrelated, so the block fits weigh each value's error by its column's E[xᵢ²]
 * (exportGguf's `importance`). The activations are those of the model's own forward pass
 * (the perplexity procedure's windows), caught at each linear layer on their way in (the
 * output layer's at the final norm, since the loss reads that weight itself).
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { readJsonFile } from '../../io/checkpoint.js';
import { tokenizeCorpus } from '../../data/token-cache.js';
import { TokenFile, type TokenSource } from '../../data/tokens.js';
import { openTokenStream, tryTokenizer } from '../../data/training-data.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import { parseLlamaConfig, storageDType } from './config.js';
import { loadLlama } from './load.js';
import { OFFICIAL_WINDOW_STEP, perplexity } from '../../eval/perplexity.js';
import { Linear } from '../../nn/linear.js';
import type { Module } from '../../nn/module.js';
import { add, cast, mul } from '../../tensor/ops/elementwise.js';
import { sum } from '../../tensor/ops/reduce.js';
import { reshape } from '../../tensor/ops/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { ProgressStream } from '../../train/progress.js';
import type { LlamaForCausalLM } from './model.js';

export interface ImportanceOptions {
  /** Tokens per forward pass (default 512). */
  seqLen?: number;
  /** About how many tokens to run (default 4096): that many divided by seqLen windows, spread evenly over the data. */
  tokens?: number;
  out?: ProgressStream;
}

/** The result: per weight (Hugging Face name, `….weight`), E[x²] of each input column, and the tokens it was measured on. */
export interface ImportanceMatrix {
  weights: Map<string, Float32Array>;
  tokens: number;
}

/** Runs `model` over `data` and returns the importance of every linear layer's input columns. */
export async function importanceMatrix(model: LlamaForCausalLM, data: TokenSource, opts: ImportanceOptions = {}): Promise<ImportanceMatrix> {
  const seqLen = opts.seqLen ?? 512;
  const tokens = opts.tokens ?? 4096;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new LongLoraError(`importance matrix: the sequence length must be an integer ≥ 2, got ${seqLen}`);
  if (!Number.isInteger(tokens) || tokens < seqLen) throw new LongLoraError(`importance matrix: the token count must be an integer ≥ the sequence length (${seqLen}), got ${tokens}`);
  if (data.numTokens <= seqLen + OFFICIAL_WINDOW_STEP) {
    throw new LongLoraError(`importance matrix: ${data.path} holds ${data.numTokens} tokens, too few for one window of ${seqLen} ` +
      `(more than ${seqLen + OFFICIAL_WINDOW_STEP} are needed); give more calibration text or a shorter sequence length`);
  }
  const sums = new Map<string, Tensor>();
  const rows = new Map<string, number>();
  const gather = (name: string, x: Tensor, n: number): void => {
    const x2 = reshape(x.dtype === 'f32' ? x : cast(x, 'f32'), [x.size / n, n]);
    const s = sum(mul(x2, x2), 0);
    const prev = sums.get(name);
    sums.set(name, (prev ? add(prev, s) : s).keep());
    prev?.dispose();
    rows.set(name, (rows.get(name) ?? 0) + x.size / n);
  };
  const hooked: Module[] = [];
  for (const [modulePath, m] of model.namedModules()) {
    if (!(m instanceof Linear) || m === model.lm_head) continue;
    const forward = m.forward.bind(m);
    hooked.push(m);
    m.forward = (x: Tensor): Tensor => {
      gather(`${modulePath}.weight`, x, m.inFeatures);
      return forward(x);
    };
  }
  if (hooked.length === 0) throw new LongLoraError('importance matrix: the model has no plain linear layers (a 4-bit or adapted model?); use the merged model');
  if (model.lm_head) {
    // The loss reads the output layer's weight itself (chunked over the vocabulary): its input is the final norm's output.
    const norm = model.model.norm;
    const forward = norm.forward.bind(norm);
    hooked.push(norm);
    norm.forward = (x: Tensor): Tensor => {
      const y = forward(x);
      gather('lm_head.weight', y, model.config.hiddenSize);
      return y;
    };
  }
  try {
    await perplexity(model, data, { seqLens: [seqLen], procedures: ['windowed'], maxWindows: Math.ceil(tokens / seqLen), ...(opts.out ? { out: opts.out } : {}) });
    const weights = new Map<string, Float32Array>();
    for (const [name, t] of sums) {
      const n = rows.get(name)!;
      weights.set(name, Float32Array.from(await t.floats(), (v) => v / n));
    }
    return { weights, tokens: Math.max(...rows.values()) };
  } finally {
    for (const m of hooked) delete (m as { forward?: unknown }).forward; // back to the class's own
    for (const t of sums.values()) t.dispose();
  }
}

/**
 * The importance matrix of the model folder `dir` over calibration data `data`: a .bin token
 * file, or text / JSONL files tokenized with the model's tokenizer (`tokenizerDir`, default
 * `dir`) and cached beside them as training data is (`textField`, `badRecords` as there).
 * The model is loaded in its checkpoint's dtype (a 7B bf16 model in 13.5 GB, not 27) on the
 * current backend, and freed after.
 */
export async function importanceFromData(dir: string, data: string, opts: ImportanceOptions & { tokenizerDir?: string; textField?: string; badRecords?: 'error' | 'skip' } = {}): Promise<ImportanceMatrix> {
  if (!fs.existsSync(data)) throw new LongLoraError(`importance matrix: the calibration data ${data} does not exist`);
  const configPath = path.join(dir, 'config.json');
  const model = await loadLlama(dir, { dtype: storageDType(parseLlamaConfig(readJsonFile(configPath), configPath).torchDtype) });
  let file: TokenFile | null = null;
  try {
    if (/\.bin$/i.test(data)) {
      const s = { dataDtype: 'auto', tokenizer: opts.tokenizerDir ?? null, model: dir } as const;
      const notes: string[] = [];
      file = openTokenStream(data, s, model.config.vocabSize, tryTokenizer(s), notes); // without a tokenizer the vocabulary is checked all the same
      for (const n of notes) opts.out?.write(`${n}\n`);
    } else {
      const c = await tokenizeCorpus([data], {
        tokenizer: Tokenizer.load(opts.tokenizerDir ?? dir), ...(opts.textField ? { textField: opts.textField } : {}),
        ...(opts.badRecords ? { badRecords: opts.badRecords } : {}), ...(opts.out ? { out: opts.out } : {}),
      });
      file = new TokenFile(c.file, c.meta.dtype);
    }
    return await importanceMatrix(model, file, opts);
  } finally {
    file?.close();
    model.dispose();
  }
}
