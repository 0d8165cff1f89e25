/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped.
 *
 *   <output>/checkpoint-000100/
 *     trainable.safetensors   every trainable tensor (HF names; LoRA A/B, embeddings, norms)
 *     optimizer.safetensors   AdamW moments (<name>.exp_avg, <name>.exp_avg_sq)
 *     trainer_state.json      step, data position, generator state, resolved config
 *     adapter_*.json/...      the PEFT adapter at this step (LoRA modes), usable as is
 *
 * A checkpoint folder is written under a temporary name and renamed when complete, and
 * older checkpoints are removed only after that, so an interrupted write never damages
 * the previous one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { writeDirAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/checkpoint.js';
import { collectAdapter, writeAdapter, type SaveAdapterOptions } from '../io/peft.js';
import { SafetensorsFile, writeSafetensors, type TensorEntry } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import type { RopeScaling } from '../nn/rope.js';
import type { DataPosition } from '../data/tokens.js';
import type { HostArray } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import type { AdamW } from './optim.js';
import type { TrainConfig } from './config.js';
import type { QuantizationInfo } from '../quant/fingerprint.js';
import type { LossScaleState } from './loss-scale.js';

export const STATE_FILE = 'trainer_state.json';
const TRAINABLE = 'trainable.safetensors';
const OPTIMIZER = 'optimizer.safetensors';
const PREFIX = 'checkpoint-';

export interface TrainerState {
  format: 1;
  /** Optimizer steps completed. */
  step: number;
  data: DataPosition;
  /** State of the dropout generator. */
  rng: number[];
  config: TrainConfig;
  ropeScaling: RopeScaling;
  /** Seconds of training so far. */
  elapsed: number;
  /** Loss of the last step. */
  loss: number | null;
  /** A 4-bit run's base: format and fingerprint, checked when resuming (quant/fingerprint.ts). */
  quantization?: QuantizationInfo;
  /** The f16 loss scaler (precision f16). */
  lossScale?: LossScaleState;
}

export function checkpointName(step: number): string {
  return `${PREFIX}${String(step).padStart(6, '0')}`;
}

/** Checkpoint folders of a run, oldest first. */
export function listCheckpoints(output: string): string[] {
  if (!fs.existsSync(output)) return [];
  return fs.readdirSync(output)
    .filter((n) => n.startsWith(PREFIX) && /^\d+$/.test(n.slice(PREFIX.length)) && fs.existsSync(path.join(output, n, STATE_FILE)))
    .sort()
    .map((n) => path.join(output, n));
}

async function entry(name: string, t: Tensor): Promise<TensorEntry> {
  return { name, dtype: t.dtype === 'f64' ? 'f64' : t.dtype, shape: t.shape, data: await t.data() };
}

export interface SaveCheckpointOptions {
  /** The PEFT adapter to write beside the state (LoRA modes). */
  adapter?: SaveAdapterOptions;
  /** Checkpoints to keep; older ones are removed after the new one is complete. */
  keep: number;
}

/** Writes `<output>/checkpoint-<step>` atomically; returns its path. */
export async function saveCheckpoint(output: string, model: Module, optimizer: AdamW, state: TrainerState, opts: SaveCheckpointOptions): Promise<string> {
  const trainable: TensorEntry[] = [];
  for (const [n, t] of model.namedParameters()) if (t.requiresGrad) trainable.push(await entry(n, t));
  const moments: TensorEntry[] = [];
  for (const [n, t] of optimizer.stateTensors()) moments.push(await entry(n, t));
  const adapter = opts.adapter ? await collectAdapter(model, opts.adapter) : null;
  const dir = path.join(output, checkpointName(state.step));
  writeDirAtomic(dir, (tmp) => {
    writeSafetensors(path.join(tmp, TRAINABLE), trainable, { format: 'pt' });
    writeSafetensors(path.join(tmp, OPTIMIZER), moments, { step: String(optimizer.step) });
    if (adapter) writeAdapter(tmp, adapter);
    fs.writeFileSync(path.join(tmp, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  });
  const all = listCheckpoints(output);
  for (const old of all.slice(0, Math.max(0, all.length - opts.keep))) fs.rmSync(old, { recursive: true, force: true });
  return dir;
}

export function readState(dir: string): TrainerState {
  if (!fs.existsSync(dir)) throw new LongLoraError(`checkpoint folder ${dir} does not exist; --resume-from takes a run's checkpoint-NNNNNN folder (or use --resume for the latest in --output)`);
  if (!fs.existsSync(path.join(dir, STATE_FILE))) throw new LongLoraError(`${dir} is not a checkpoint (no ${STATE_FILE}); --resume-from takes a run's checkpoint-NNNNNN folder`);
  const s = readJsonFile(path.join(dir, STATE_FILE)) as TrainerState;
  if (s.format !== 1 || typeof s.step !== 'number' || !s.config) {
    throw new LongLoraError(`${path.join(dir, STATE_FILE)} is not a longlora trainer state (format ${String(s.format)})`);
  }
  return s;
}

/** Loads trainable tensors and optimizer moments of a checkpoint into a prepared run. */
export function restoreCheckpoint(dir: string, model: Module, optimizer: AdamW, step: number): void {
  const weights = SafetensorsFile.open(path.join(dir, TRAINABLE));
  const moments = SafetensorsFile.open(path.join(dir, OPTIMIZER));
  try {
    const read = (f: SafetensorsFile) => (name: string, t: { shape: readonly number[]; dtype: string }): HostArray => {
      if (!f.has(name)) throw new LongLoraError(`${f.path}: no tensor "${name}"; the checkpoint was written by a run with other trainable parameters`);
      const info = f.info(name);
      if (info.shape.join(',') !== t.shape.join(',')) throw new LongLoraError(`${f.path}: "${name}" has shape [${info.shape.join(', ')}], the run needs [${t.shape.join(', ')}]`);
      return f.read(name, t.dtype === 'f64' ? 'f64' : 'f32').data;
    };
    const trainable = model.namedParameters().filter(([, t]) => t.requiresGrad);
    const data = trainable.map(([n, t]) => read(weights)(n, t));
    const readMoment = read(moments);
    optimizer.restore(step, (name, shape) => readMoment(name, { shape, dtype: trainable[0]![1].dtype }));
    trainable.forEach(([, t], i) => t.backend.upload(t.buffer, data[i]!));
  } finally {
    weights.close();
    moments.close();
  }
}
