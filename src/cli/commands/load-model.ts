/**
 * The model options shared by `eval`, `generate` and `chat`: a model folder or Hub
 * repository, optionally with an adapter (a training run's output), a tokenizer, a RoPE
 * extension for a longer context, the weight dtype and the backend — resolved, loaded and
 * checked against each other (the tokenizer must fit the model's vocabulary).
 */
import fs from 'node:fs';
import path from 'node:path';
import { autoBackend, currentBackend, setBackend } from '../../backend/registry.js';
import { checkTensorCoreBackend, tensorCoreNote, useTensorCores } from '../../backend/tensor-cores.js';
import type { Precision } from '../../tensor/dtype.js';
import { parseKiloInt } from '../../util/text.js';
import { LongLoraError } from '../../errors.js';
import { readJsonFile } from '../../io/checkpoint.js';
import { isRepoId, repoGgufFile, resolveAdapter, resolveGgufFile, resolveModel } from '../../io/hub.js';
import { loadAdapter } from '../../io/peft.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { adapterRopeScaling, loadWithAdapter } from '../../lora/adapted.js';
import { Rng } from '../../tensor/random.js';
import { resizeEmbeddings } from '../../tokenizer/pad.js';
import { parseLlamaConfig, type LlamaConfig } from '../../models/llama/config.js';
import { loadLlama } from '../../models/llama/load.js';
import { ggufTokenizer, loadLlamaGguf, readGgufLora, readGgufModel } from '../../models/llama/gguf-load.js';
import type { LlamaForCausalLM } from '../../models/llama/model.js';
import { describeRopeScaling, extendRopeScaling, ropeContextLength } from '../../nn/rope-scaling.js';
import type { RopeScaling } from '../../nn/rope.js';
import { Tokenizer } from '../../tokenizer/tokenizer.js';
import type { OptionSpec } from '../args.js';
import { describeQuantization } from '../../quant/quantize-model.js';
import type { QuantizeMode } from '../../quant/quantize-model.js';

/** The flags that choose and load a model. */
export const MODEL_OPTIONS: Record<string, OptionSpec> = {
  model: { type: 'string', help: 'model folder, a Hugging Face repository org/name (downloaded into the HF cache), or a .gguf file, local or on the Hub as org/name/file.gguf (its tokenizer is read from the file; --tokenizer overrides)' },
  adapter: { type: 'string', help: 'adapter folder (a `longlora train` output) applied to --model, or a Hub repository as org/name; with a .gguf model, a GGUF LoRA file (llama.cpp\'s format)' },
  tokenizer: { type: 'string', help: 'tokenizer folder (default: the model folder)' },
  'context-size': { type: 'string', help: 'interpolate RoPE positions for this context (official rule) when the model does not cover it' },
  dtype: { type: 'string', default: 'f32', help: 'weight storage: f32, bf16 or f16' },
  quantize: { type: 'string', help: 'none or nf4: the base linear layers in 4-bit NF4 (default: nf4 for an adapter trained on a 4-bit base, else none); with a .gguf file, its dequantised values re-quantised to NF4 as each layer is read' },
  revision: { type: 'string', help: 'Hub branch, tag or commit (default main)' },
  backend: { type: 'string', default: 'auto', help: 'compute backend (auto, cpu, ...)' },
};

/** A loaded model with its tokenizer and what was done to load it. */
export interface LoadedModel<T extends Tokenizer | null = Tokenizer> {
  model: LlamaForCausalLM;
  /** Null only when the caller said the tokenizer is optional and the folder has none. */
  tokenizer: T;
  /** The local model folder. */
  dir: string;
  /** Lines describing what was loaded. */
  notes: string[];
  /** Extra end-of-generation ids: config.json and generation_config.json eos_token_id. */
  eosIds: number[];
}

type Values = Record<string, string | boolean | undefined>;

function str(v: Values, k: string): string | undefined {
  return typeof v[k] === 'string' ? (v[k] as string) : undefined;
}

/** An integer flag ≥ min (written in decimal, or Nk for N·1024), or undefined when absent. */
export function intFlag(v: Values, k: string, min = 1): number | undefined {
  const s = str(v, k);
  if (s === undefined) return undefined;
  const n = parseKiloInt(s) ?? NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new LongLoraError(`--${k} must be an integer ≥ ${min}, got "${s}" (write e.g. 512 or 4k)`);
  return n;
}

/**
 * A note on stderr when `tokens` positions reach past the context the model's RoPE covers
 * (positions beyond it extrapolate, and quality falls). `what` says what reaches them.
 * Returns whether it wrote the note.
 */
export function warnContext(c: Pick<LlamaConfig, 'ropeScaling' | 'maxPositionEmbeddings'>, tokens: number, what = `${tokens} tokens`): boolean {
  const covered = ropeContextLength(c.ropeScaling, c.maxPositionEmbeddings);
  if (tokens <= covered) return false;
  process.stderr.write(`note: ${what} exceed the ${covered} positions the model covers; positions beyond extrapolate. ` +
    `Pass --context-size ${tokens} to interpolate (the official scripts do, with the fine-tuned context).\n`);
  return true;
}

/** A number flag with a default. */
export function numFlag(v: Values, k: string, dflt: number): number {
  const s = str(v, k);
  if (s === undefined) return dflt;
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n)) throw new LongLoraError(`--${k} must be a number, got "${s}"`);
  return n;
}

function eosIdsOf(dir: string): number[] {
  const ids: number[] = [];
  for (const f of ['config.json', 'generation_config.json']) {
    try {
      const e = (readJsonFile(path.join(dir, f)) as { eos_token_id?: unknown }).eos_token_id;
      for (const x of Array.isArray(e) ? e : [e]) if (typeof x === 'number') ids.push(x);
    } catch { /* absent */ }
  }
  return ids;
}

/** Embedding rows an adapter carries (trained with an added [PAD], say), or null. */
function adapterVocab(adapter: string): number | null {
  const file = path.join(adapter, 'adapter_model.safetensors');
  if (!fs.existsSync(file)) return null;
  const f = SafetensorsFile.open(file);
  try {
    const name = 'base_model.model.model.embed_tokens.weight';
    return f.names().includes(name) ? f.info(name).shape[0]! : null;
  } finally {
    f.close();
  }
}

/**
 * Base + adapter. An adapter trained with a grown vocabulary (the official runs add [PAD]:
 * 32000 → 32001) gets the base resized first, new rows at the mean, as the official eval does.
 */
async function withAdapter(dir: string, adapter: string, opts: { dtype: 'f32' | 'bf16' | 'f16'; ropeScaling?: RopeScaling }, vocab: number, notes: string[]): Promise<LlamaForCausalLM> {
  const rows = adapterVocab(adapter);
  if (rows === null || rows <= vocab) return loadWithAdapter(dir, adapter, opts);
  const model = await loadLlama(dir, opts);
  try {
    await resizeEmbeddings(model, rows);
    loadAdapter(model, adapter, { training: false, rng: new Rng(0) });
  } catch (e) {
    model.dispose();
    throw e;
  }
  notes.push(`vocabulary: the adapter has ${rows} embedding rows; the base's ${vocab} were grown to match (new rows at the mean, as the official scripts do)`);
  return model;
}

/** The notes' tokenizer line. */
function tokenizerNote(tokenizer: Tokenizer | null, unusable?: string): string {
  return `tokenizer: ${tokenizer ? tokenizer.describe() : `none (not needed for pre-tokenized data${unusable ? `; the file's: ${unusable}` : ''})`}`;
}

/**
 * The RoPE scaling --context-size asks for on top of `scaling` (noted in `notes`), or
 * undefined without the flag.
 */
function contextScaling(v: Values, scaling: RopeScaling, maxPositionEmbeddings: number, notes: string[]): RopeScaling | undefined {
  const ctx = intFlag(v, 'context-size');
  if (ctx === undefined) return undefined;
  const ext = extendRopeScaling({ ropeScaling: scaling, maxPositionEmbeddings }, ctx);
  notes.push(`context: ${ext.explanation}`);
  return ext.scaling;
}

/**
 * A GGUF file as the model (an export, to evaluate or run it), with a GGUF LoRA adapter
 * (--adapter lora.gguf) added to its weights as they are read; --quantize nf4 puts its
 * linear layers in 4-bit NF4 as they are read; the tokenizer from --tokenizer, else the
 * Hugging Face one the file carries, else a tokenizer.json beside it, else the one rebuilt
 * from the file's tokenizer.ggml vocabulary (llama.cpp's conversions).
 */
async function loadGgufModel(file: string, v: Values, dtype: 'f32' | 'bf16' | 'f16', notes: string[], optionalTokenizer: boolean): Promise<LoadedModel<Tokenizer | null>> {
  const adapter = str(v, 'adapter');
  if (adapter !== undefined && !/\.gguf$/i.test(adapter)) {
    throw new LongLoraError(`--adapter ${adapter}: with a GGUF model (${file}) the adapter must be a GGUF LoRA file (longlora export --adapter RUN --out lora.gguf); ` +
      'a PEFT adapter folder applies to a model folder: pass the base model\'s folder, or merge first');
  }
  const quantize = str(v, 'quantize') ?? 'none';
  if (quantize !== 'none' && quantize !== 'nf4') throw new LongLoraError(`--quantize must be none or nf4, got ${quantize}`);
  const read = await readGgufModel(file);
  const { config, header } = read;
  const rope = contextScaling(v, config.ropeScaling, config.maxPositionEmbeddings, notes);
  const lora = adapter !== undefined ? await readGgufLora(adapter, config) : undefined;
  const model = await loadLlamaGguf(file, { dtype, quantize, ...(rope ? { ropeScaling: rope } : {}), ...(lora ? { lora } : {}) }, read);
  try {
    const dir = path.dirname(path.resolve(file));
    const given = str(v, 'tokenizer');
    let tokenizer: Tokenizer | null = null;
    let unusable: string | undefined;
    if (given !== undefined) tokenizer = Tokenizer.load(given);
    else {
      tokenizer = ggufTokenizer(header, file, { rebuild: false }) ?? (fs.existsSync(path.join(dir, 'tokenizer.json')) ? Tokenizer.load(dir) : null);
      try {
        tokenizer ??= ggufTokenizer(header, file); // rebuilt from the file's tokenizer.ggml vocabulary
      } catch (e) {
        if (!optionalTokenizer || !(e instanceof LongLoraError)) throw e;
        unusable = e.message; // pre-tokenized data needs no tokenizer
      }
      if (!tokenizer && !optionalTokenizer) {
        throw new LongLoraError(`${file} carries no tokenizer (neither a Hugging Face tokenizer, as files exported here have, nor a tokenizer.ggml vocabulary) ` +
          `and ${dir} has no tokenizer.json; pass --tokenizer DIR (the folder of the model the file was converted from)`);
      }
    }
    tokenizer?.checkModel(model.config.vocabSize, file);
    notes.push(`model: ${file} (GGUF, ${model.config.numLayers} layers, hidden ${model.config.hiddenSize}, RoPE ${describeRopeScaling(model.config.ropeScaling)}; weights dequantised to ${dtype}${model.quantization ? ', the linear layers then to NF4' : ''}); dense attention`);
    if (model.quantization) notes.push(`base: ${describeQuantization(model)}`);
    if (lora) {
      const l = [...lora.layers.values()];
      notes.push(`adapter: ${adapter} (GGUF LoRA: ${l.length} layers, rank ${l[0]!.r}, scale ${Number(l[0]!.scale.toPrecision(6))}), added to the weights as they were read` +
        (rope ? '' : '; a GGUF LoRA carries no RoPE scaling: for an adapter trained past the base\'s context, pass --context-size (the length it was trained for)'));
    }
    notes.push(tokenizerNote(tokenizer, unusable));
    const eos = model.config.eosTokenId;
    return { model, tokenizer, dir, notes, eosIds: eos === null ? [] : Array.isArray(eos) ? eos : [eos] };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Resolves, loads and checks the model (and adapter and tokenizer) the flags name. With
 * `optionalTokenizer` (pre-tokenized evaluation data) a model folder without tokenizer.json
 * loads with `tokenizer: null` instead of failing.
 */
export async function loadModel(v: Values, out?: NodeJS.WritableStream): Promise<LoadedModel>;
export async function loadModel(v: Values, out: NodeJS.WritableStream | undefined, opts: { optionalTokenizer: true }): Promise<LoadedModel<Tokenizer | null>>;
export async function loadModel(v: Values, out: NodeJS.WritableStream = process.stderr, how: { optionalTokenizer?: boolean } = {}): Promise<LoadedModel<Tokenizer | null>> {
  const spec = str(v, 'model');
  if (!spec) throw new LongLoraError('--model is required: a model folder or a Hub repository (org/name)');
  const dtype = str(v, 'dtype') ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'f16') throw new LongLoraError(`--dtype must be f32, bf16 or f16, got ${dtype}`);
  // a local path that is not there fails before a backend (a GPU) is started
  if (!fs.existsSync(spec) && !isRepoId(spec) && !repoGgufFile(spec)) throw new LongLoraError(`--model ${spec} does not exist; give a model folder, a .gguf file, or a Hub repository as org/name`);
  const backend = str(v, 'backend') ?? 'auto';
  // --tensor-cores (only the commands that take it; eval ppl also takes --precision)
  const tensorCores = v['tensor-cores'] === true;
  if (tensorCores) checkTensorCoreBackend(backend);
  useTensorCores(tensorCores);
  const notes: string[] = [];
  if (backend === 'auto') notes.push(`backend: ${(await autoBackend()).backend.name}`);
  else {
    await setBackend(backend);
    const be = currentBackend() as { autoSkipReason?: string | null; describe?: () => string };
    if (be.autoSkipReason) notes.push(`note: ${backend} runs on a software adapter${be.describe ? ` (${be.describe()})` : ''}, emulated on the CPU: expect it to be much slower than --backend wasm`);
  }
  if (tensorCores) notes.push(tensorCoreNote(currentBackend(), dtype, (str(v, 'precision') ?? 'f32') as Precision));
  const revision = str(v, 'revision');
  if (/\.gguf$/i.test(spec)) {
    const file = repoGgufFile(spec) ? await resolveGgufFile(spec, { ...(revision ? { revision } : {}), out }) : spec; // org/name/file.gguf: from the Hub
    return loadGgufModel(file, v, dtype as 'f32' | 'bf16' | 'f16', notes, how.optionalTokenizer === true);
  }
  const dir = await resolveModel(spec, { ...(revision ? { revision } : {}), out });
  const adapterSpec = str(v, 'adapter');
  const adapter = adapterSpec ? await resolveAdapter(adapterSpec, { out }) : undefined;
  const cfgPath = path.join(dir, 'config.json');
  const cfg = parseLlamaConfig(readJsonFile(cfgPath), cfgPath);
  const trained = adapter ? adapterRopeScaling(adapter, dir) : undefined;
  const rope = contextScaling(v, trained ?? cfg.ropeScaling, cfg.maxPositionEmbeddings, notes) ?? trained;
  const quantize = str(v, 'quantize');
  if (quantize !== undefined && quantize !== 'none' && quantize !== 'nf4') throw new LongLoraError(`--quantize must be none or nf4, got ${quantize}`);
  const opts = { dtype: dtype as 'f32' | 'bf16' | 'f16', ...(rope ? { ropeScaling: rope } : {}), ...(quantize ? { quantize: quantize as QuantizeMode } : {}) };
  const model = adapter ? await withAdapter(dir, adapter, opts, cfg.vocabSize, notes) : await loadLlama(dir, opts);
  try {
    if (model.quantization) notes.push(`base: ${describeQuantization(model)}`);
    const tokDir = str(v, 'tokenizer') ?? dir;
    const skip = how.optionalTokenizer === true && str(v, 'tokenizer') === undefined && !fs.existsSync(path.join(tokDir, 'tokenizer.json'));
    const tokenizer = skip ? null : Tokenizer.load(tokDir);
    tokenizer?.checkModel(model.config.vocabSize, dir);
    notes.push(`model: ${dir}${adapter ? ` + adapter ${adapter}` : ''} (${model.config.numLayers} layers, hidden ${model.config.hiddenSize}, RoPE ${describeRopeScaling(model.config.ropeScaling)}); dense attention`);
    notes.push(tokenizerNote(tokenizer));
    return { model, tokenizer, dir, notes, eosIds: eosIdsOf(dir) };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
