/**
 * The LongLoRA trainer: a base Llama, a token corpus and a config in; a PEFT adapter (or
 * a full model), checkpoints and a metrics log out. Everything that can be checked is
 * checked before the model is loaded; the loop reports loss, learning rate, tokens/s and
 * ETA, writes JSONL metrics, checkpoints atomically every `saveEvery` steps, resumes
 * exactly, and stops cleanly (checkpoint first) when asked.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AttentionMask } from '../backend/backend.js';
import { autoBackend, currentBackend, setBackend } from '../backend/registry.js';
import { checkTensorCoreBackend, tensorCoreNote, useTensorCores } from '../backend/tensor-cores.js';
import { validateMask, describeMask } from '../attention/mask.js';
import { LongLoraError } from '../errors.js';
import { checkOutputFolder, writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/checkpoint.js';
import { adapterCard, cardFacts, CARD_FILE, writeCard } from '../io/model-card.js';
import { saveAdapter, type SaveAdapterOptions } from '../io/peft.js';
import { applyLora, ALL_LINEAR, matchTargets, setTrainable } from '../lora/inject.js';
import type { LoraRuntime } from '../lora/lora.js';
import { checkAttentionSpan, linearLayerPaths, parseLlamaConfig, type LlamaConfig } from '../models/llama/config.js';
import { loadLlama, saveLlama } from '../models/llama/load.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { describeRopeScaling, extendRopeScaling, ropeContextLength, ropeScalingToHF } from '../nn/rope-scaling.js';
import type { RopeScaling } from '../nn/rope.js';
import type { DataPosition } from '../data/tokens.js';
import { checkDataSettings, openTrainingData, resolveFormat, type TrainingBatch, type TrainingData } from '../data/training-data.js';
import { importanceFromData } from '../models/llama/importance.js';
import { heldOutLoss } from '../eval/held-out.js';
import { isRepoId, resolveModel } from '../io/hub.js';
import { Rng } from '../tensor/random.js';
import { describeConfig, resumeConflicts, type TrainConfig } from './config.js';
import { AdamW } from './optim.js';
import { ProgressBar, type ProgressStream } from './progress.js';
import { checkSchedule, lrAt, type Schedule } from './schedule.js';
import { listCheckpoints, readState, restoreCheckpoint, saveCheckpoint, type TrainerState } from './state.js';
import { trainStep, type MicroBatch } from './step.js';
import { LossScaler } from './loss-scale.js';
import { checkBaseFingerprint, quantizationRecord } from '../quant/fingerprint.js';
import { describeQuantization } from '../quant/quantize-model.js';
import { mergeAdapter } from '../lora/adapted.js';
import { exportGguf, isQuantisedMix } from '../models/llama/gguf.js';
import { contextTable, measureContext, openContextEval, readContextResults, writeContextResults, type ContextEvalPlan, type ContextResults } from './context-eval.js';
import { yieldToEvents } from '../util/yield.js';

export interface TrainerOptions {
  /** Resume from this checkpoint folder, or `true` for the latest in the output folder. */
  resume?: string | boolean;
  /** Where progress and messages go (default stderr). */
  out?: ProgressStream;
  /** Called after every optimizer step (a UI, or a test that stops the run). */
  onStep?: (step: number, loss: number) => void;
  /** Check the config, model and data only: nothing is written into the output folder. */
  dryRun?: boolean;
}

export interface TrainResult {
  steps: number;
  stopped: boolean;
  lastLoss: number | null;
  output: string;
}

/** The even number nearest x (an S²-Attn group the shift can halve). */
function nearestEven(x: number): number {
  return 2 * Math.round(x / 2);
}

/** The S²-Attn (or dense) mask for a training length. */
export function trainingMask(c: TrainConfig): AttentionMask {
  if (c.attention === 'dense') return { kind: 'causal' };
  // From the ratio, the nearest even size where the form shifts by G/2 (250 × 0.25 → 62, not 63);
  // an explicit --group-size is taken as it is.
  const group = c.groupSize ?? (c.s2Form === 'short' ? Math.round(c.seqLen * c.groupRatio) : nearestEven(c.seqLen * c.groupRatio));
  if (group < 1) throw new LongLoraError(`S²-Attn group size ${c.seqLen} × ${c.groupRatio} rounds to 0; raise --group-ratio or set --group-size`);
  const mask: AttentionMask = { kind: 's2', form: c.s2Form, group };
  validateMask(mask, c.seqLen);
  return mask;
}

/** The RoPE scaling override the config asks for (undefined: the official linear rule). */
function ropeOverride(c: TrainConfig, cfg: LlamaConfig): RopeScaling | undefined {
  if (c.ropeFactor === null && c.ropeType === 'linear') return undefined;
  const maxPos = cfg.maxPositionEmbeddings;
  const own = cfg.ropeScaling;
  // --rope-type yarn on a yarn model extends its own scaling (extendRopeScaling keeps its
  // original length and betas): the factor compounds, as the linear rule's does.
  const factor = c.ropeFactor ?? (own.type === 'yarn' && c.ropeType === 'yarn'
    ? own.factor * Math.max(1, Math.ceil(c.seqLen / ropeContextLength(own, maxPos)))
    : Math.max(1, Math.ceil(c.seqLen / maxPos)));
  return { type: c.ropeType, factor };
}

/**
 * The run writes its adapter, checkpoints and metrics into --output: never into the base
 * model's folder, nor into another model's (config.json without a run's train_config.json).
 */
function checkRunFolder(c: TrainConfig): void {
  checkOutputFolder(c.output, '--output');
  const out = path.resolve(c.output);
  if (out === path.resolve(c.model!)) {
    throw new LongLoraError(`--output ${c.output} is the base model's folder; the run writes its adapter, checkpoints and metrics into --output, so choose a folder of its own (e.g. runs/NAME)`);
  }
  if (fs.existsSync(path.join(out, 'config.json')) && !fs.existsSync(path.join(out, 'train_config.json'))) {
    throw new LongLoraError(`--output ${c.output} holds a model (config.json), not a training run; choose a new folder (e.g. runs/NAME) so nothing in it is overwritten`);
  }
}

/** Checks that need no weights, so mistakes surface before anything is loaded. */
function preflight(c: TrainConfig): { cfg: LlamaConfig; mask: AttentionMask; rope: ReturnType<typeof extendRopeScaling>; schedule: Schedule } {
  if (!c.model) throw new LongLoraError('no base model: set --model to a folder with config.json and safetensors');
  if (!c.data) throw new LongLoraError('no training data: set --data to a token file, text/JSONL files or folders, or SFT records');
  const cfgPath = path.join(c.model, 'config.json');
  const cfg = parseLlamaConfig(readJsonFile(cfgPath), cfgPath);
  checkRunFolder(c);
  const mask = trainingMask(c);
  checkDataSettings(c, c.attention === 's2' ? c.s2Form : 'dense');
  const rope = extendRopeScaling(cfg, c.seqLen, ropeOverride(c, cfg));
  checkAttentionSpan(cfg, c.seqLen, `--seq-len ${c.seqLen}`);
  if (c.mode !== 'full') matchTargets(linearLayerPaths(cfg), c.loraTargets.length === 1 && c.loraTargets[0] === ALL_LINEAR ? ALL_LINEAR : c.loraTargets);
  if (c.mode === 'lora' && c.extras && c.extras.length > 0) throw new LongLoraError(`mode 'lora' trains adapters only; drop --extras (${c.extras.join(',')}) or use --mode longlora`);
  if (c.tensorCores) checkTensorCoreBackend(c.backend);
  if (c.quantize !== 'none' && c.mode === 'full') throw new LongLoraError(`--quantize ${c.quantize} freezes the base linear layers in 4 bits, so they cannot be fine-tuned; use --mode lora or longlora (or --quantize none for full fine-tuning)`);
  if (c.ggufImatrix > 0) {
    if (!c.gguf || c.ggufDtype === 'auto' || !isQuantisedMix(c.ggufDtype)) {
      throw new LongLoraError(`--gguf-imatrix is for a quantised model.gguf: set --gguf and a --gguf-dtype among the mixes (q6_k … q2_k)${c.gguf ? `, not ${c.ggufDtype}` : ''}`);
    }
    if (resolveFormat(c) === 'sft') throw new LongLoraError('--gguf-imatrix runs the model over the training text, and SFT records are not text; export the merged model with --imatrix-data TEXT instead');
  }
  if (c.gguf && rope.scaling.type === 'dynamic') {
    throw new LongLoraError('--gguf: llama.cpp does not implement dynamic NTK RoPE scaling (--rope-type dynamic), so the trained model could not be ' +
      'exported after training; use --rope-type linear (the LongLoRA default) or yarn, or drop --gguf');
  }
  const schedule: Schedule = { type: c.schedule, lr: c.lr, warmupSteps: c.warmupSteps, totalSteps: c.steps };
  checkSchedule(schedule);
  return { cfg, mask, rope, schedule };
}

/** The reason a stopped evaluation throws (Trainer.requestStop). */
class StopRequested extends Error {
  override name = 'StopRequested';
}

export class Trainer {
  /** Where run() is: the evaluation before training, the steps, or what follows the last one. */
  private phase: 'before' | 'training' | 'after' = 'training';
  /** Aborted by requestStop: the loop stops after its step, the perplexity evaluations between windows. */
  private readonly stopSignal = new AbortController();
  private heldOutBatches: TrainingBatch[] | null = null;
  private readonly out: ProgressStream;
  /** Dynamic loss scaling, for f16 activations. */
  private readonly scaler: LossScaler | null;

  private constructor(
    readonly config: TrainConfig,
    readonly model: LlamaForCausalLM,
    private readonly optimizer: AdamW,
    private readonly data: TrainingData,
    private readonly runtime: LoraRuntime,
    private readonly mask: AttentionMask,
    private readonly schedule: Schedule,
    private readonly ropeScaling: RopeScaling,
    private step: number,
    private elapsedBefore: number,
    out: ProgressStream,
    private readonly onStep?: (step: number, loss: number) => void,
    private readonly contextEval: ContextEvalPlan | null = null,
    /** The base as the user named it (a Hub repository id stays one; `config.model` is then its cached snapshot). */
    private readonly baseSpec: string = config.model ?? '',
  ) {
    this.out = out;
    this.scaler = config.precision === 'f16' ? new LossScaler() : null;
  }

  /** Validates everything, loads the model, applies LoRA, and restores a checkpoint when resuming. */
  static async create(config: TrainConfig, opts: TrainerOptions = {}): Promise<Trainer> {
    const out = opts.out ?? process.stderr;
    const say = (s: string): void => { out.write(`${s}\n`); };
    // A Hub repository (org/name) is resolved to its snapshot in the Hugging Face cache.
    const c = config.model && isRepoId(config.model) ? { ...config, model: await resolveModel(config.model, { out }) } : config;
    const { cfg, mask, rope, schedule } = preflight(c);
    let data: TrainingData | null = null;
    let resumeDir: string | null = null;
    let state: TrainerState | null = null;
    let model: LlamaForCausalLM | null = null;
    let optimizer: AdamW | null = null;
    let contextEval: ContextEvalPlan | null = null;
    try {
      if (opts.resume) {
        resumeDir = typeof opts.resume === 'string' ? opts.resume : listCheckpoints(c.output).at(-1) ?? null;
        if (!resumeDir) throw new LongLoraError(`--resume: no checkpoint in ${c.output}; start without --resume, or pass a checkpoint folder`);
        state = readState(resumeDir);
        const diff = resumeConflicts(state.config, c);
        if (diff.length > 0) throw new LongLoraError(`cannot resume from ${resumeDir}: the config differs (${diff.join('; ')}). Use the checkpoint's config, or start a new run in another --output folder`);
        if (state.step > c.steps) throw new LongLoraError(`${resumeDir} is at step ${state.step}, past --steps ${c.steps}; raise --steps to train further`);
        // At the last step (a run stopped or killed after it): no training is left, only what
        // the end of a run writes (the adapter, the evaluation, the merge), which runs again.
        if (state.step === c.steps) say(`${resumeDir} is at the last step (${c.steps}); finishing the run: the adapter and what follows it. Raise --steps to train further`);
      }
      if (!opts.resume) {
        const old = listCheckpoints(c.output);
        if (old.length > 0) say(`note: ${c.output} holds checkpoints of an earlier run (latest ${path.basename(old.at(-1)!)}); starting over — pass --resume to continue it instead`);
      }
      data = await openTrainingData(c, cfg.vocabSize, state?.data, out);
      for (const note of data.notes) say(note);
      if (c.pplData) {
        contextEval = await openContextEval(c, cfg.vocabSize, cfg.maxPositionEmbeddings, out);
        say(`long-context test set: ${contextEval.note}; perplexity at ${contextEval.seqLens.join(', ')} tokens before and after training`);
      }
      useTensorCores(c.tensorCores);
      if (c.backend === 'auto') {
        const { backend, skipped } = await autoBackend();
        for (const s of skipped) say(`backend ${s.name} unavailable: ${s.error}`);
        say(`backend: ${backend.name}`);
      } else {
        await setBackend(c.backend);
      }
      if (c.tensorCores) say(tensorCoreNote(currentBackend(), c.dtype, c.precision));
      say(`config:\n${describeConfig(c)}`);
      say(`context: ${rope.explanation}`);
      say(`attention while training: ${describeMask(mask)}; evaluation and inference use dense attention`);
      if (c.evalEvery > 0 && c.valFraction === 0) say(`note: --eval-every ${c.evalEvery} evaluates held-out data, and none is held out; set --val-fraction (e.g. 0.05)`);
      if (mask.kind === 'causal' && c.groupSize !== null) say(`note: --group-size ${c.groupSize} is for S²-Attn and has no effect with --attention dense`);
      if (mask.kind === 's2' && mask.group >= c.seqLen) {
        say(`note: the S²-Attn group size ${mask.group} is not below --seq-len ${c.seqLen}, so groups hold the whole sequence and training costs what dense attention does; a group of --seq-len / 4 (${Math.max(2, nearestEven(c.seqLen / 4))}) is the official choice`);
      }
      model = await loadLlama(c.model!, { dtype: c.dtype, ropeScaling: rope.scaling, quantize: c.quantize });
      if (model.quantization) {
        say(`base: ${describeQuantization(model)}`);
        if (state) {
          if (!state.quantization) throw new LongLoraError(`${resumeDir} has no record of its 4-bit base; it was written by an older version and cannot be resumed with --quantize ${c.quantize}`);
          checkBaseFingerprint(state.quantization.fingerprint, model.quantization, c.model!, resumeDir!);
        }
      }
      const runtime: LoraRuntime = { training: true, rng: new Rng(c.seed + 1) };
      if (c.mode !== 'full') {
        const targets = c.loraTargets.length === 1 && c.loraTargets[0] === ALL_LINEAR ? ALL_LINEAR : c.loraTargets;
        applyLora(model, targets, { r: c.loraR, alpha: c.loraAlpha, dropout: c.loraDropout, rslora: c.rslora }, new Rng(c.seed), runtime);
      }
      const extras = c.extras ?? (c.mode === 'longlora' ? ['embed', 'norm'] : []);
      const rep = setTrainable(model, c.mode, c.mode === 'full' ? [] : extras);
      say(`trainable: ${rep.trainable.toLocaleString('en-US')} of ${rep.total.toLocaleString('en-US')} parameters (${((100 * rep.trainable) / rep.total).toFixed(2)}%)`);
      optimizer = new AdamW(model.namedParameters().filter(([, t]) => t.requiresGrad), { betas: [c.beta1, c.beta2], eps: c.eps, weightDecay: c.weightDecay });
      if (resumeDir && state) {
        restoreCheckpoint(resumeDir, model, optimizer, state.step);
        runtime.rng.setState(state.rng);
        say(`resumed from ${resumeDir} at step ${state.step}`);
      }
      if (!opts.dryRun) {
        fs.mkdirSync(c.output, { recursive: true });
        writeJsonAtomic(path.join(c.output, 'train_config.json'), c);
      }
      const trainer = new Trainer(c, model, optimizer, data, runtime, mask, schedule, rope.scaling, state?.step ?? 0, state?.elapsed ?? 0, out, opts.onStep, contextEval, config.model ?? '');
      if (state?.lossScale) trainer.scaler?.restore(state.lossScale);
      return trainer;
    } catch (e) {
      data?.close();
      contextEval?.close();
      optimizer?.dispose();
      model?.dispose();
      throw e;
    }
  }

  /** Whether requestStop was called. */
  private get stopRequested(): boolean {
    return this.stopSignal.signal.aborted;
  }

  /**
   * Asks the run to stop: during the evaluation before training, between its windows
   * (nothing trained); during training, after the current step (it saves a checkpoint
   * first); after the last step, skipping the evaluation and merge left. Returns what it
   * will do, in words.
   */
  requestStop(): string {
    this.stopSignal.abort(new StopRequested('stop requested'));
    if (this.phase === 'before') return 'stopping the perplexity evaluation of the starting model; nothing has been trained yet';
    if (this.phase === 'after') return 'the trained weights are saved; stopping what is left after training (evaluation, merge)';
    return 'stopping after this step and saving a checkpoint';
  }

  /** Runs an evaluation that a stop request interrupts: true when it ran to the end. */
  private async unlessStopped(evaluation: () => Promise<void>): Promise<boolean> {
    if (this.stopRequested) return false;
    try {
      await evaluation();
      return true;
    } catch (e) {
      if (e instanceof StopRequested) return false;
      throw e;
    }
  }

  private adapterOptions(): SaveAdapterOptions | undefined {
    if (this.config.mode === 'full') return undefined;
    const extras = this.model.namedParameters().filter(([n, t]) => t.requiresGrad && !n.includes('.lora_')).map(([n]) => n);
    return {
      baseModel: this.baseSpec,
      extras,
      sidecar: {
        rope_scaling: ropeScalingToHF(this.ropeScaling, this.model.config.maxPositionEmbeddings),
        seq_len: this.config.seqLen,
        training_attention: describeMask(this.mask),
        mode: this.config.mode,
        step: this.step,
        ...(this.model.quantization ? { quantization: quantizationRecord(this.model.quantization) } : {}),
      },
    };
  }

  private async checkpoint(loss: number | null, elapsed: number): Promise<string> {
    const adapter = this.adapterOptions();
    return saveCheckpoint(this.config.output, this.model, this.optimizer, {
      format: 1, step: this.step, data: this.data.position() as DataPosition, rng: this.runtime.rng.state(),
      config: this.config, ropeScaling: this.ropeScaling, elapsed, loss,
      ...(this.model.quantization ? { quantization: this.model.quantization } : {}),
      ...(this.scaler ? { lossScale: this.scaler.state() } : {}),
    }, { keep: this.config.keepCheckpoints, ...(adapter ? { adapter } : {}) });
  }

  /** Keeps the metrics log consistent with a resumed step (drops lines past it). */
  private metricsFile(): string {
    const file = path.join(this.config.output, 'metrics.jsonl');
    if (fs.existsSync(file)) {
      const keep = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= this.step);
      fs.writeFileSync(file, keep.map((l) => `${l}\n`).join(''));
    }
    return file;
  }

  async run(): Promise<TrainResult> {
    const c = this.config;
    const tokensPerStep = c.batchSize * c.seqLen * c.gradAccum;
    const metrics = this.metricsFile();
    let lastLoss: number | null = null;
    try {
      if (this.step === 0) this.phase = 'before';
      if (this.step === 0 && !await this.unlessStopped(() => this.measureBefore())) {
        this.out.write(`stopped before the first step, during the perplexity evaluation of the starting model; nothing was trained (${c.output} holds only the run's options, train_config.json).\n`);
        return { steps: 0, stopped: true, lastLoss: null, output: c.output };
      }
      // The bar's clock (elapsed time, ETA) starts after the evaluation before training.
      const bar = new ProgressBar(c.steps, 'step', this.step, this.out);
      this.phase = 'training';
      if (this.step === 0) await this.validate(metrics, bar);
      while (this.step < c.steps) {
        const t0 = performance.now();
        const batches: MicroBatch[] = [];
        for (let a = 0; a < c.gradAccum; a++) {
          const b = this.data.next(c.batchSize);
          batches.push({ ids: b.ids, ...(b.labels ? { labels: b.labels } : {}), B: b.B, N: b.N });
        }
        const stepTokens = batches.reduce((a, b) => a + b.B * b.N, 0);
        const lr = lrAt(this.schedule, this.step);
        const r = await trainStep(this.model, this.optimizer, batches, lr, {
          mask: this.mask, maxGradNorm: c.maxGradNorm, checkpointing: c.checkpointing, rngs: [this.runtime.rng],
          precision: c.precision, ...(this.scaler ? { scaler: this.scaler } : {}),
        });
        this.step++;
        const dt = (performance.now() - t0) / 1000;
        lastLoss = r.losses.reduce((a, b) => a + b, 0) / r.losses.length;
        if (!Number.isFinite(lastLoss)) {
          throw new LongLoraError(`loss became ${lastLoss} at step ${this.step}; lower --lr or check the data` +
            (c.precision === 'f16' ? ' (f16 activations overflow above 65504: --precision bf16 has f32\'s range)' : ''));
        }
        if (r.skipped) bar.log(`step ${this.step}: gradients overflowed f16 at loss scale ${2 * this.scaler!.scale}; step skipped, scale now ${this.scaler!.scale}`);
        const elapsed = this.elapsedBefore + bar.elapsed();
        if (this.step % c.logEvery === 0 || this.step === c.steps) {
          fs.appendFileSync(metrics, `${JSON.stringify({
            step: this.step, loss: lastLoss, lr, grad_norm: r.gradNorm, tokens: this.step * tokensPerStep,
            ...(this.scaler ? { loss_scale: this.scaler.scale, ...(r.skipped ? { skipped: true } : {}) } : {}),
            tokens_per_s: stepTokens / dt, step_s: dt, elapsed_s: elapsed,
          })}\n`);
        }
        bar.update(this.step, { loss: lastLoss.toFixed(4), lr: lr.toExponential(2), 'tok/s': (stepTokens / dt).toFixed(0) });
        this.onStep?.(this.step, lastLoss);
        // Let the event loop run (signals such as Ctrl-C, output): on the CPU backend every
        // await above resolves at once, which would otherwise starve it.
        await yieldToEvents();
        const stopping = this.stopRequested;
        if (this.step % c.saveEvery === 0 || this.step === c.steps || stopping) {
          const dir = await this.checkpoint(lastLoss, elapsed);
          if (stopping) bar.log(`stopped at step ${this.step}; checkpoint ${dir}. Continue with --resume.`);
        }
        if (stopping) return { steps: this.step, stopped: true, lastLoss, output: c.output };
        if (c.evalEvery > 0 && this.step % c.evalEvery === 0 && this.step < c.steps) await this.validate(metrics, bar);
      }
      await this.validate(metrics, bar);
      await this.finish();
      this.phase = 'after';
      const measured = await this.unlessStopped(() => this.measureAfter());
      if (c.mode !== 'full' && writeCard(c.output, adapterCard(cardFacts(c.output, { originalContext: this.model.config.maxPositionEmbeddings })))) this.out.write(`wrote the model card ${path.join(c.output, CARD_FILE)}\n`);
      if (!measured || this.stopRequested) {
        // Ctrl-C after the last step: the trained weights are saved; what is left is optional.
        const left = [...(this.contextEval && !measured ? ['the perplexity evaluation after training'] : []), ...(c.merge || c.gguf ? ['the merge'] : [])];
        if (left.length) bar.log(`stopped after training: ${left.join(' and ')} skipped. The trained weights are in ${c.output}` +
          (c.merge || c.gguf ? `; merge them with \`longlora merge --base ${this.baseSpec} --adapter ${c.output} --out ${path.join(c.output, 'merged')}\`` : '') + '.');
        return { steps: this.step, stopped: true, lastLoss, output: c.output };
      }
      if (c.merge || c.gguf) await this.mergeOutput();
      return { steps: this.step, stopped: false, lastLoss, output: c.output };
    } finally {
      this.data.close();
      this.contextEval?.close();
    }
  }

  private pplFile(): string {
    return path.join(this.config.output, 'ppl.json');
  }

  /** Perplexity at the planned lengths before step 1: the base as it is, and with the new RoPE (no-op without pplData). */
  private async measureBefore(): Promise<void> {
    const plan = this.contextEval;
    if (!plan) return;
    const c = this.config;
    const r: ContextResults = {};
    if (c.pplBase) {
      this.out.write('perplexity of the base model with its own RoPE\n');
      const base = await loadLlama(c.model!, { dtype: c.dtype, quantize: c.quantize });
      try {
        r.base = await measureContext(base, plan, this.out, this.stopSignal.signal);
      } finally {
        base.dispose();
      }
    }
    this.out.write(`perplexity with RoPE ${describeRopeScaling(this.ropeScaling)}, before training\n`);
    r.interpolated = await this.measureModel(plan);
    fs.mkdirSync(c.output, { recursive: true });
    writeContextResults(this.pplFile(), c, plan, r);
    this.out.write(`${contextTable(r, plan)}\n`);
  }

  /** Perplexity of the trained model; prints the before/after table and writes it to ppl.json. */
  private async measureAfter(): Promise<void> {
    const plan = this.contextEval;
    if (!plan) return;
    const r = readContextResults(this.pplFile());
    this.out.write('perplexity after training\n');
    r.trained = await this.measureModel(plan);
    writeContextResults(this.pplFile(), this.config, plan, r);
    this.out.write(`\n${contextTable(r, plan)}\n(written to ${this.pplFile()})\n`);
  }

  private async measureModel(plan: ContextEvalPlan): Promise<Awaited<ReturnType<typeof measureContext>>> {
    const training = this.runtime.training;
    this.runtime.training = false; // no LoRA dropout while evaluating
    try {
      return await measureContext(this.model, plan, this.out, this.stopSignal.signal);
    } finally {
      this.runtime.training = training;
    }
  }

  /**
   * Writes the base with the adapter merged into `<output>/merged` (full fine-tuning already
   * wrote a whole model), and with `gguf` that model as `<output>/model.gguf`.
   */
  private async mergeOutput(): Promise<void> {
    const c = this.config;
    let dir = path.join(c.output, 'merged');
    if (c.mode === 'full') {
      dir = path.join(c.output, 'model');
      this.out.write(`merge: full fine-tuning wrote the whole model to ${dir}; nothing to merge\n`);
    } else {
      const r = await mergeAdapter(c.model!, c.output, dir);
      this.out.write(`merged ${r.merged} LoRA layers into ${dir} (${r.dtype}): a standalone checkpoint with its rope_scaling\n`);
    }
    if (!c.gguf) return;
    const file = path.join(c.output, 'model.gguf');
    const name = `${path.basename(path.resolve(this.baseSpec))}-${c.seqLen}`; // the base and the context it was extended to
    let importance: ReadonlyMap<string, Float32Array> | undefined;
    if (c.ggufImatrix > 0) {
      const r = await importanceFromData(dir, c.data!, {
        tokens: c.ggufImatrix, seqLen: Math.min(512, c.seqLen), tokenizerDir: c.tokenizer ?? c.model!, textField: c.textField, badRecords: c.badRecords, out: this.out,
      });
      this.out.write(`importance matrix for model.gguf: ${r.weights.size} weights, measured on ${r.tokens.toLocaleString('en-US')} tokens of the training data\n`);
      importance = r.weights;
    }
    const g = exportGguf(dir, file, { tokenizerDir: c.tokenizer ?? c.model!, name, ...(c.ggufDtype !== 'auto' ? { dtype: c.ggufDtype } : {}), ...(importance ? { importance } : {}) });
    this.out.write(`wrote ${file} (${g.tensors} tensors, ${g.dtype}, context ${g.contextLength}) for llama.cpp, and ${g.modelfile} for ollama\n`);
  }

  /** Held-out loss with dense attention, logged and written to the metrics (no-op without a split). */
  private async validate(metrics: string, bar: ProgressBar): Promise<void> {
    this.heldOutBatches ??= this.data.heldOut(this.config.batchSize, this.config.evalBatches);
    if (this.heldOutBatches.length === 0) return;
    const training = this.runtime.training;
    this.runtime.training = false; // no LoRA dropout while evaluating
    const r = await heldOutLoss(this.model, this.heldOutBatches, this.config.precision).finally(() => { this.runtime.training = training; });
    if (!r) return;
    fs.appendFileSync(metrics, `${JSON.stringify({ step: this.step, val_loss: r.loss, val_ppl: r.ppl, val_tokens: r.tokens })}\n`);
    bar.log(`step ${this.step}: held-out loss ${r.loss.toFixed(4)}, perplexity ${r.ppl.toFixed(2)} (${r.tokens} tokens, dense attention)`);
  }

  /** Writes the final adapter (or, for full fine-tuning, the model) into the output folder. */
  private async finish(): Promise<void> {
    const adapter = this.adapterOptions();
    if (adapter) await saveAdapter(this.model, this.config.output, adapter);
    else await saveLlama(this.model, path.join(this.config.output, 'model'));
    this.out.write(`saved ${adapter ? 'adapter' : 'model'} to ${adapter ? this.config.output : path.join(this.config.output, 'model')} (RoPE ${describeRopeScaling(this.ropeScaling)})\n`);
  }

  dispose(): void {
    this.contextEval?.close();
    this.optimizer.dispose();
    this.model.dispose();
  }
}
