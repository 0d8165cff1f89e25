/**
 * The training configuration: every option with its type, default and help in one table
 * (defaults from the official LongLoRA recipe, SPEC §4–5). A run's config is resolved
 * from defaults < preset < config file (JSON or YAML) < command-line flags; unknown keys
 * and ill-typed values are errors that name the key and the fix. The resolved config is
 * printed and saved with the run, and a resume must match it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { LongLoraError } from '../errors.js';
import { PRECISIONS, type Precision } from '../tensor/dtype.js';
import { GGUF_DTYPES, type GgufDType } from '../models/llama/gguf.js';
import { closestNames, kebab, parseKiloInt } from '../util/text.js';

type Kind = 'int' | 'float' | 'string' | 'bool' | 'list' | 'enum';

interface Field {
  kind: Kind;
  default: unknown;
  help: string;
  values?: readonly string[];
  /** null allowed (meaning "automatic", or what `nullName` says). */
  nullable?: boolean;
  /** How null is written where it does not mean "automatic" (e.g. 'none'); also accepted as a value. */
  nullName?: string;
  min?: number;
  max?: number;
  /** May differ when resuming (bookkeeping, not the optimisation). */
  resumable?: boolean;
}

export const TRAIN_FIELDS = {
  model: { kind: 'string', default: null, nullable: true, help: 'base model folder (config.json + safetensors), or a Hub repository as org/name' },
  data: { kind: 'string', default: null, nullable: true, help: 'training data: a .bin token file, text/JSONL files or folders, or SFT records (see dataFormat)' },
  dataFormat: { kind: 'enum', values: ['auto', 'tokens', 'text', 'sft'], default: 'auto', help: 'tokens (.bin), text (documents joined with EOS), sft (instruction records or conversations, only responses labelled); auto: .bin is tokens, else text' },
  dataDtype: { kind: 'enum', values: ['auto', 'uint16', 'uint32'], default: 'auto', help: 'token file element type (auto: uint16 when the vocabulary fits)' },
  tokenizer: { kind: 'string', default: null, nullable: true, help: 'tokenizer folder for text and SFT data (auto: the model folder)' },
  textField: { kind: 'string', default: 'text', help: 'JSON field that holds a document (text data)' },
  badRecords: { kind: 'enum', values: ['error', 'skip'], default: 'error', help: 'a malformed JSON record stops the run (error) or is skipped and counted (skip)' },
  sftTemplate: { kind: 'enum', values: ['llama2', 'chat'], default: 'llama2', help: 'SFT text: the official [INST]...[/INST] strings (Llama-2\'s chat format for conversations), or the tokenizer\'s chat template' },
  chatTemplate: { kind: 'string', default: null, nullable: true, help: 'with sftTemplate chat: a .jinja file (or llama2) instead of the tokenizer\'s chat template' },
  sftOverlong: { kind: 'enum', values: ['truncate', 'drop'], default: 'truncate', help: 'SFT examples longer than seqLen: truncate (official) or drop' },
  valFraction: { kind: 'float', default: 0, min: 0, max: 0.5, help: 'fraction of the sequences (or SFT examples) held out from the end for evaluation' },
  evalEvery: { kind: 'int', default: 0, min: 0, help: 'held-out evaluation every N steps (0: at the start and the end only)', resumable: true },
  evalBatches: { kind: 'int', default: 8, min: 1, help: 'micro-batches of held-out data per evaluation', resumable: true },
  output: { kind: 'string', default: 'runs/longlora', help: 'run folder: checkpoints, metrics, the adapter', resumable: true },
  pplData: { kind: 'string', default: null, nullable: true, nullName: 'none', resumable: true, help: 'long-document test set (.bin tokens, or text) whose perplexity is measured at pplSeqLens before and after training, with dense attention' },
  pplSeqLens: { kind: 'list', default: null, nullable: true, resumable: true, help: 'lengths for pplData, e.g. 256,1k,2k (default: the original context, doubled up to seqLen)' },
  pplWindows: { kind: 'int', default: 16, min: 0, resumable: true, help: 'pplData: evenly spaced windows per length of the official windowed procedure (0: all of them)' },
  pplBase: { kind: 'bool', default: true, resumable: true, help: 'pplData: also measure the base model as it is, without the new position scaling' },
  merge: { kind: 'bool', default: false, resumable: true, help: 'at the end, also write the base with the adapter merged into <output>/merged' },
  gguf: { kind: 'bool', default: false, resumable: true, help: 'at the end, also write the merged model as <output>/model.gguf for llama.cpp and ollama (implies merge)' },
  ggufDtype: { kind: 'enum', values: ['auto', ...GGUF_DTYPES], default: 'auto', resumable: true, help: 'weights of model.gguf (auto: the merged model\'s dtype; q8_0: 8-bit, about half of f16; q6_k … q2_k: llama.cpp\'s quantised mixes, see longlora export --help)' },
  ggufImatrix: { kind: 'int', default: 0, min: 0, resumable: true, help: 'with a quantised ggufDtype: tokens of the training data to compute an importance matrix on for model.gguf (e.g. 4096; 0: none; the merged model is loaded beside the trained one for it); see longlora export --imatrix-data' },
  seqLen: { kind: 'int', default: 8192, min: 2, help: 'training context length in tokens' },
  mode: { kind: 'enum', values: ['longlora', 'lora', 'full'], default: 'longlora', help: 'longlora: LoRA + trainable extras; lora: plain LoRA; full: full fine-tuning' },
  extras: { kind: 'list', default: null, nullable: true, help: 'trainable parameters by name part besides LoRA (default for longlora: embed,norm)' },
  attention: { kind: 'enum', values: ['s2', 'dense'], default: 's2', help: 'attention while training: shifted sparse (S²-Attn) or dense' },
  s2Form: { kind: 'enum', values: ['segmented', 'roll', 'short'], default: 'segmented', help: 'S²-Attn form: leak-free segmented, the paper\'s roll, or short (no shift)' },
  groupRatio: { kind: 'float', default: 0.25, min: 0, max: 1, help: 'S²-Attn group size as a fraction of seqLen (rounded to an even size where the form shifts by half a group)' },
  groupSize: { kind: 'int', default: null, nullable: true, min: 1, help: 'S²-Attn group size in tokens (overrides groupRatio)' },
  ropeType: { kind: 'enum', values: ['linear', 'dynamic', 'yarn'], default: 'linear', help: 'position scaling for the longer context (yarn on a yarn model extends its own scaling: same original length, factor compounded)' },
  ropeFactor: { kind: 'float', default: null, nullable: true, min: 1, help: 'position scaling factor (default: ceil(seqLen / original context), the official rule)' },
  loraR: { kind: 'int', default: 8, min: 1, help: 'LoRA rank' },
  loraAlpha: { kind: 'float', default: 16, min: 0, help: 'LoRA alpha (scale alpha/r)' },
  loraDropout: { kind: 'float', default: 0, min: 0, max: 0.99, help: 'dropout on the LoRA input' },
  loraTargets: { kind: 'list', default: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], help: 'modules that get LoRA (names, or all-linear)' },
  rslora: { kind: 'bool', default: false, help: 'scale LoRA by alpha/√r' },
  lr: { kind: 'float', default: 2e-5, min: 0, help: 'peak learning rate' },
  beta1: { kind: 'float', default: 0.9, min: 0, max: 1, help: 'AdamW β1' },
  beta2: { kind: 'float', default: 0.95, min: 0, max: 1, help: 'AdamW β2 (the paper; the official code leaves 0.999)' },
  eps: { kind: 'float', default: 1e-8, min: 0, help: 'AdamW epsilon' },
  weightDecay: { kind: 'float', default: 0, min: 0, help: 'decoupled weight decay (not applied to norms)' },
  maxGradNorm: { kind: 'float', default: 1, min: 0, help: 'clip the global gradient norm (0: off)' },
  schedule: { kind: 'enum', values: ['constant', 'linear', 'cosine'], default: 'constant', help: 'learning-rate schedule after warmup' },
  warmupSteps: { kind: 'int', default: 20, min: 0, help: 'linear warmup steps' },
  steps: { kind: 'int', default: 1000, min: 1, help: 'optimizer steps', resumable: true },
  batchSize: { kind: 'int', default: 1, min: 1, help: 'sequences per micro-batch' },
  gradAccum: { kind: 'int', default: 8, min: 1, help: 'micro-batches per optimizer step' },
  checkpointing: { kind: 'bool', default: true, help: 'recompute each layer in the backward pass (less memory)' },
  seed: { kind: 'int', default: 42, min: 0, help: 'seed of initialisation, data order and dropout' },
  saveEvery: { kind: 'int', default: 100, min: 1, help: 'write a checkpoint every N steps', resumable: true },
  keepCheckpoints: { kind: 'int', default: 2, min: 1, help: 'checkpoints kept in the run folder', resumable: true },
  logEvery: { kind: 'int', default: 1, min: 1, help: 'write metrics every N steps', resumable: true },
  dtype: { kind: 'enum', values: ['f32', 'bf16', 'f16'], default: 'f32', help: 'storage of the frozen base weights (bf16 keeps f32\'s range; f16 is what tensor cores take)' },
  precision: { kind: 'enum', values: PRECISIONS, default: 'f32', help: 'storage of activations: bf16 or f16 halve what the backward pass keeps (compute stays f32; f16 adds dynamic loss scaling)' },
  quantize: { kind: 'enum', values: ['none', 'nf4'], default: 'none', help: 'store the base linear layers (q,k,v,o,gate,up,down) in 4-bit NF4 with double quantisation (QLoRA)' },
  backend: { kind: 'string', default: 'auto', help: 'compute backend (auto, cpu, ...)', resumable: true },
  tensorCores: { kind: 'bool', default: false, resumable: true, help: 'webgpu: run f16 · f16 matmuls on the GPU\'s tensor cores (experimental: Dawn\'s subgroup matrices); used with dtype f16 and precision f16' },
} as const satisfies Record<string, Field>;

export type TrainKey = keyof typeof TRAIN_FIELDS;

export interface TrainConfig {
  model: string | null;
  data: string | null;
  dataFormat: 'auto' | 'tokens' | 'text' | 'sft';
  dataDtype: 'auto' | 'uint16' | 'uint32';
  tokenizer: string | null;
  textField: string;
  badRecords: 'error' | 'skip';
  sftTemplate: 'llama2' | 'chat';
  chatTemplate: string | null;
  sftOverlong: 'truncate' | 'drop';
  valFraction: number;
  evalEvery: number;
  evalBatches: number;
  output: string;
  pplData: string | null;
  pplSeqLens: string[] | null;
  pplWindows: number;
  pplBase: boolean;
  merge: boolean;
  gguf: boolean;
  ggufDtype: 'auto' | GgufDType;
  ggufImatrix: number;
  seqLen: number;
  mode: 'longlora' | 'lora' | 'full';
  extras: string[] | null;
  attention: 's2' | 'dense';
  s2Form: 'segmented' | 'roll' | 'short';
  groupRatio: number;
  groupSize: number | null;
  ropeType: 'linear' | 'dynamic' | 'yarn';
  ropeFactor: number | null;
  loraR: number;
  loraAlpha: number;
  loraDropout: number;
  loraTargets: string[];
  rslora: boolean;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
  schedule: 'constant' | 'linear' | 'cosine';
  warmupSteps: number;
  steps: number;
  batchSize: number;
  gradAccum: number;
  checkpointing: boolean;
  seed: number;
  saveEvery: number;
  keepCheckpoints: number;
  logEvery: number;
  dtype: 'f32' | 'bf16' | 'f16';
  precision: Precision;
  quantize: 'none' | 'nf4';
  backend: string;
  tensorCores: boolean;
}

const FIELDS = TRAIN_FIELDS as Record<string, Field>;

export function defaultTrainConfig(): TrainConfig {
  const c: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(FIELDS)) c[k] = Array.isArray(f.default) ? [...f.default] : f.default;
  return c as unknown as TrainConfig;
}

function unknownKey(key: string, where: string): never {
  const near = closestNames(key, Object.keys(FIELDS), 1)[0];
  throw new LongLoraError(`${where}: unknown option '${key}'${near ? `; did you mean '${near}'?` : ''} (\`longlora train --help\` lists them)`);
}

/** Converts one value (a string from the command line, or a JSON/YAML value) to its field's type. */
export function coerce(key: string, raw: unknown, where: string): unknown {
  const f = FIELDS[key];
  if (!f) unknownKey(key, where);
  const label = where === 'command line' ? `--${kebab(key)}` : `'${key}'`; // as the user wrote it
  const bad = (what: string): never => { throw new LongLoraError(`${where}: option ${label} ${what}`); };
  if (raw === null || raw === 'null' || (raw === 'auto' && f.nullable && f.nullName === undefined) || (f.nullName !== undefined && raw === f.nullName)) {
    if (f.nullable) return null;
    bad('cannot be null');
  }
  switch (f.kind) {
    case 'int': case 'float': {
      const kilo = f.kind === 'int' && typeof raw === 'string' ? parseKiloInt(raw) : null; // 8k = 8192, as lengths are written
      const v = kilo ?? (typeof raw === 'string' ? Number(raw.trim()) : raw);
      if (typeof v !== 'number' || !Number.isFinite(v) || (typeof raw === 'string' && raw.trim() === '')) bad(`must be a number, got ${JSON.stringify(raw)}`);
      const n = v as number;
      if (f.kind === 'int' && !Number.isInteger(n)) bad(`must be an integer, got ${n}`);
      if (f.min !== undefined && n < f.min) bad(`must be ≥ ${f.min}, got ${n}`);
      if (f.max !== undefined && n > f.max) bad(`must be ≤ ${f.max}, got ${n}`);
      return n;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad(`must be true or false, got ${JSON.stringify(raw)}`);
    case 'string':
      if (typeof raw !== 'string' || raw === '') bad(`must be a non-empty string, got ${JSON.stringify(raw)}`);
      return raw;
    case 'enum':
      if (typeof raw !== 'string' || !f.values!.includes(raw)) bad(`must be one of ${f.values!.join(', ')}; got ${JSON.stringify(raw)}`);
      return raw;
    case 'list': {
      const items = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
      if (!Array.isArray(items) || items.some((s) => typeof s !== 'string' || s === '')) bad(`must be a list of names (comma-separated on the command line), got ${JSON.stringify(raw)}`);
      return [...(items as string[])];
    }
  }
}

/** Applies key/value pairs from one source onto a config. */
export function applyValues(c: TrainConfig, values: Record<string, unknown>, where: string): TrainConfig {
  const out = { ...c } as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(values)) out[k] = coerce(k, v, where);
  return out as unknown as TrainConfig;
}

/** Reads a JSON or YAML config file (by extension; YAML is a superset of JSON). */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new LongLoraError(`config file ${file} not found`);
  }
  let data: unknown;
  try {
    data = path.extname(file) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new LongLoraError(`${file}: cannot parse (${(e as Error).message})`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new LongLoraError(`${file}: must hold a mapping of option names to values`);
  return data as Record<string, unknown>;
}

/**
 * The values that differ between two configs, ignoring fields allowed to change on resume.
 * A key the saved config lacks (written before the option existed) counts as its default.
 */
export function resumeConflicts(saved: TrainConfig, now: TrainConfig): string[] {
  const out: string[] = [];
  const old = { ...defaultTrainConfig(), ...saved } as unknown as Record<string, unknown>;
  for (const [k, f] of Object.entries(FIELDS)) {
    if (f.resumable) continue;
    const a = JSON.stringify(old[k]);
    const b = JSON.stringify((now as unknown as Record<string, unknown>)[k]);
    if (a === b || (PATH_FIELDS.has(k) && samePaths(old[k], (now as unknown as Record<string, unknown>)[k]))) continue;
    out.push(`${k}: checkpoint ${a}, now ${b}`);
  }
  return out;
}

/** Fields that name files or folders (comma-separated for data): compared as the paths they resolve to. */
const PATH_FIELDS = new Set(['model', 'data', 'tokenizer']);

/** Whether two path settings name the same files ("models/x", "models/x/" and "./models/x" do, from one folder). */
function samePaths(a: unknown, b: unknown): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const norm = (v: string): string[] => v.split(',').map((p) => {
    const t = p.trim();
    try { return fs.realpathSync(t); } catch { return path.resolve(t); }
  });
  const [x, y] = [norm(a), norm(b)];
  return x.length === y.length && x.every((p, i) => p === y[i]);
}

/** Command-line flag names of the fields, for the argument parser and help. */
export function trainFlags(): Array<{ key: TrainKey; flag: string; field: Field }> {
  return (Object.keys(FIELDS) as TrainKey[]).map((key) => ({ key, flag: kebab(key), field: FIELDS[key]! }));
}

/** How a field's null is written: 'auto', or its own name for it ('none' for pplData). */
export function nullLabel(key: string): string {
  return FIELDS[key]?.nullName ?? 'auto';
}

/** The resolved config as lines of `key: value` (printed at the start of a run). */
export function describeConfig(c: TrainConfig): string {
  return Object.entries(c).map(([k, v]) => `  ${k}: ${Array.isArray(v) ? v.join(',') : v === null ? nullLabel(k) : String(v)}`).join('\n');
}
