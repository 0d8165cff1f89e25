/**
 * `longlora pretrain`: train a small Llama from random initialisation (every weight,
 * dense attention, a short context) on a corpus, with a given tokenizer. The recipe that
 * makes the bundled model (scripts/tiny-model/) runs this command.
 */
import { LongLoraError } from '../../errors.js';
import { applyValues, type TrainConfig } from '../../train/config.js';
import { DEFAULT_ARCHITECTURE, pretrain, pretrainTrainConfig, type Architecture } from '../../train/pretrain.js';
import type { Trainer } from '../../train/trainer.js';
import { parse, type OptionSpec } from '../args.js';

const A = DEFAULT_ARCHITECTURE;

const OPTIONS: Record<string, OptionSpec> = {
  tokenizer: { type: 'string', help: 'tokenizer folder (tokenizer.json): sets the vocabulary, ships with the model' },
  data: { type: 'string', help: 'training data: a .bin token file, or text / JSONL files or folders' },
  out: { type: 'string', help: 'folder for the released model (config.json, model.safetensors, tokenizer files)' },
  output: { type: 'string', default: 'runs/pretrain', help: 'run folder: initial weights, checkpoints, metrics' },
  'save-dtype': { type: 'string', default: 'f16', help: 'dtype of the released weights: f32, bf16 or f16' },
  'hidden-size': { type: 'string', default: String(A.hiddenSize), help: 'hidden size C' },
  layers: { type: 'string', default: String(A.numLayers), help: 'decoder layers' },
  heads: { type: 'string', default: String(A.numHeads), help: 'attention heads H' },
  'kv-heads': { type: 'string', help: 'key/value heads (default: --heads)' },
  'intermediate-size': { type: 'string', default: String(A.intermediateSize), help: 'MLP width' },
  context: { type: 'string', default: String(A.context), help: 'max_position_embeddings: the context the model is trained for' },
  'rope-theta': { type: 'string', default: String(A.ropeTheta), help: 'RoPE base' },
  'tie-embeddings': { type: 'boolean', help: 'share the embedding and output matrices' },
  'init-std': { type: 'string', default: '0.02', help: 'std of the initial weights' },
  'seq-len': { type: 'string', help: 'training length (default: --context)' },
  steps: { type: 'string', help: 'optimizer steps (default 2000)' },
  lr: { type: 'string', help: 'peak learning rate (default 3e-3)' },
  schedule: { type: 'string', help: 'constant, linear or cosine (default cosine)' },
  'warmup-steps': { type: 'string', help: 'linear warmup steps (default 100)' },
  'batch-size': { type: 'string', help: 'sequences per micro-batch (default 16)' },
  'grad-accum': { type: 'string', help: 'micro-batches per step (default 1)' },
  'weight-decay': { type: 'string', help: 'decoupled weight decay, not on norms (default 0.1)' },
  'max-grad-norm': { type: 'string', help: 'gradient clipping (default 1)' },
  'val-fraction': { type: 'string', help: 'held-out fraction of the sequences (default 0.01)' },
  'eval-every': { type: 'string', help: 'held-out loss every N steps (default 250)' },
  'eval-batches': { type: 'string', help: 'held-out micro-batches per evaluation (default 8)' },
  'save-every': { type: 'string', help: 'checkpoint every N steps (default 250)' },
  seed: { type: 'string', help: 'seed of the initial weights and the data order (default 42)' },
  backend: { type: 'string', help: 'compute backend (default auto)' },
  precision: { type: 'string', help: 'storage of activations: f32, bf16 or f16 (default f32; f16 adds loss scaling)' },
  checkpointing: { type: 'boolean', help: 'recompute layers in the backward pass (less memory, slower)' },
  resume: { type: 'boolean', help: 'continue from the latest checkpoint in --output' },
};

/** Training flags of this command and their config keys. */
const TRAIN_KEYS: Record<string, keyof TrainConfig> = {
  data: 'data', output: 'output', 'seq-len': 'seqLen', steps: 'steps', lr: 'lr', schedule: 'schedule', 'warmup-steps': 'warmupSteps',
  'batch-size': 'batchSize', 'grad-accum': 'gradAccum', 'weight-decay': 'weightDecay', 'max-grad-norm': 'maxGradNorm',
  'val-fraction': 'valFraction', 'eval-every': 'evalEvery', 'eval-batches': 'evalBatches', 'save-every': 'saveEvery', seed: 'seed', backend: 'backend', precision: 'precision',
};

function positiveInt(v: unknown, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new LongLoraError(`pretrain: --${flag} must be a positive integer, got ${String(v)}`);
  return n;
}

function positive(v: unknown, flag: string): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new LongLoraError(`pretrain: --${flag} must be a positive number, got ${String(v)}`);
  return n;
}

export async function pretrainCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora pretrain --tokenizer DIR --data CORPUS --out MODEL_DIR [--hidden-size 128 --layers 4 ...] [options]', OPTIONS);
  if (!args) return;
  const v = args.values;
  for (const k of ['tokenizer', 'data', 'out']) if (typeof v[k] !== 'string') throw new LongLoraError(`pretrain: --${k} is required`);
  const saveDtype = String(v['save-dtype']);
  if (!['f32', 'bf16', 'f16'].includes(saveDtype)) throw new LongLoraError(`pretrain: --save-dtype must be f32, bf16 or f16, got ${saveDtype}`);
  const heads = positiveInt(v.heads, 'heads');
  const arch: Architecture = {
    hiddenSize: positiveInt(v['hidden-size'], 'hidden-size'), numLayers: positiveInt(v.layers, 'layers'), numHeads: heads,
    numKvHeads: v['kv-heads'] === undefined ? heads : positiveInt(v['kv-heads'], 'kv-heads'),
    intermediateSize: positiveInt(v['intermediate-size'], 'intermediate-size'), context: positiveInt(v.context, 'context'),
    ropeTheta: positive(v['rope-theta'], 'rope-theta'), tieWordEmbeddings: v['tie-embeddings'] === true, rmsNormEps: A.rmsNormEps,
  };
  const flags: Record<string, unknown> = { seqLen: arch.context };
  for (const [flag, key] of Object.entries(TRAIN_KEYS)) if (v[flag] !== undefined) flags[key] = v[flag];
  if (v.checkpointing === true) flags.checkpointing = true;
  const train = applyValues(pretrainTrainConfig(), flags, 'command line');
  let trainer: Trainer | null = null;
  let interrupts = 0;
  const onSigint = (): void => {
    if (++interrupts === 1 && trainer) {
      process.stderr.write('\nstopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
      trainer.requestStop();
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await pretrain({
      arch, tokenizer: String(v.tokenizer), train, modelOut: String(v.out), saveDtype: saveDtype as 'f32' | 'bf16' | 'f16',
      initStd: positive(v['init-std'], 'init-std'), resume: v.resume === true, onTrainer: (t) => { trainer = t; },
    });
    process.stderr.write(r.stopped ? `stopped at step ${r.steps}; continue with --resume\n` : `done: ${r.steps} steps, last loss ${r.lastLoss?.toFixed(4)}; model in ${r.modelOut}\n`);
    if (r.stopped) process.exitCode = 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
