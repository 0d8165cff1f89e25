/**
 * Hugging Face PEFT LoRA adapters without a file system: the config, collecting a
 * model's adapter, encoding its files to bytes, and putting adapter weights into a model.
 * Node's folder reader and writer (peft.ts) and the browser build share it.
 *
 * Adapter tensors are `base_model.model.<module path>.lora_A.weight` [r, in] and
 * `.lora_B.weight` [out, r]; modules in `modules_to_save` (LongLoRA's trained embeddings
 * and norms) are saved whole under `base_model.model.<parameter name>`. PEFT matches
 * `target_modules` and `modules_to_save` entries by module-name suffix.
 *
 * Beside them, `longlora.json` records what PEFT has no field for (the RoPE scaling the
 * adapter was trained with, the attention used in training), and
 * `trainable_params.safetensors` repeats the embeddings and norms under plain HF names,
 * as the official LongLoRA code splits them.
 */
import { LongLoraError } from '../errors.js';
import { LoRALinear, adapterDType, checkLoraOptions, type LoraOptions, type LoraRuntime } from '../lora/lora.js';
import { ALL_LINEAR, isAllLinearPath, loraLayers, resolveTargets, targetNameMatches, type Targets } from '../lora/inject.js';
import { isBaseLinear } from '../nn/linear.js';
import type { Backend } from '../backend/backend.js';
import type { Module } from '../nn/module.js';
import { fromHost, type Tensor } from '../tensor/tensor.js';
import type { HostArray } from '../tensor/dtype.js';
import { SafetensorsBytes, checkFloatTensor, encodeSafetensors, type SafetensorsReader, type TensorEntry } from './safetensors-format.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const TRAINABLE_PARAMS = 'trainable_params.safetensors';
export const LONGLORA_JSON = 'longlora.json';
export const PREFIX = 'base_model.model.';

export interface AdapterConfig {
  lora: LoraOptions;
  /** Module names, all-linear, or (regex, layers_to_transform, exclude_modules) a filter on module paths. */
  targetModules: Targets;
  modulesToSave: string[];
  baseModel: string | null;
}

type Json = Record<string, unknown>;

/**
 * Checks the parsed `adapter_config.json` (`file` names it in messages); refuses LoRA
 * variants this code does not compute.
 */
export function parseAdapterConfig(json: unknown, file: string = ADAPTER_CONFIG): AdapterConfig {
  const j = json as Json;
  const bad = (msg: string): never => { throw new LongLoraError(`${file}: ${msg}`); };
  if (typeof j !== 'object' || j === null) bad('must be a JSON object');
  if (j.peft_type !== 'LORA') bad(`peft_type ${JSON.stringify(j.peft_type)} is not supported (only LORA)`);
  if (j.use_dora === true) bad('DoRA adapters (use_dora: true) are not supported');
  if (j.fan_in_fan_out === true) bad('fan_in_fan_out: true (Conv1D layers) is not supported for Llama');
  if (j.bias !== undefined && j.bias !== 'none') bad(`bias ${JSON.stringify(j.bias)} is not supported (only "none")`);
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = j[k];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) bad(`per-module "${k}" is not supported`);
  }
  const targetModules = adapterTargets(j, bad);
  const lora: LoraOptions = {
    r: Number(j.r),
    alpha: Number(j.lora_alpha ?? 8),
    dropout: Number(j.lora_dropout ?? 0),
    rslora: j.use_rslora === true,
  };
  try { checkLoraOptions(lora); } catch (e) { bad((e as Error).message); }
  const mts = j.modules_to_save;
  return {
    lora,
    targetModules,
    modulesToSave: Array.isArray(mts) ? mts.map(String) : [],
    baseModel: typeof j.base_model_name_or_path === 'string' ? j.base_model_name_or_path : null,
  };
}

/** A regular expression of adapter_config.json, matched against a whole module path (Python's re.fullmatch). */
function fullMatch(pattern: string, key: string, bad: (msg: string) => never): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch (e) {
    return bad(`${key} ${JSON.stringify(pattern)} is a regular expression this reader cannot compile (${(e as Error).message}); give a list of module names instead`);
  }
}

/** A list of strings, from a string or list (null, "" and [] give null). */
function stringList(v: unknown, key: string, bad: (msg: string) => never): string[] | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return bad(`${key} must be a string or a list of strings, got ${JSON.stringify(v)}`);
  return v.length > 0 ? v : null;
}

/**
 * The layers target_modules selects, read as PEFT reads them: a list of names matches a
 * module path that is the name or ends in "." + name; the string "all-linear" (any case)
 * every linear layer but the output head; any other string is a regular expression over
 * the whole path. layers_to_transform (with layers_pattern) keeps only those layers'
 * modules that a name matched by suffix; exclude_modules (names, or a regular expression)
 * removes modules.
 */
function adapterTargets(j: Json, bad: (msg: string) => never): Targets {
  const t = j.target_modules;
  if (typeof t !== 'string' && !(Array.isArray(t) && t.every((x) => typeof x === 'string'))) {
    return bad(`target_modules must be a list of module names or a string, got ${JSON.stringify(t)}`);
  }
  const allLinear = typeof t === 'string' && t.toLowerCase() === ALL_LINEAR;
  const regex = typeof t === 'string' && !allLinear ? fullMatch(t, 'target_modules', bad) : null;
  const names = Array.isArray(t) ? t as string[] : null;
  const lt = j.layers_to_transform;
  let layers: number[] | null = null;
  if (typeof lt === 'number') layers = [lt];
  else if (Array.isArray(lt) && lt.length > 0) layers = lt as number[];
  else if (lt !== undefined && lt !== null && !(Array.isArray(lt) && lt.length === 0)) bad(`layers_to_transform must be an integer or a list of integers, got ${JSON.stringify(lt)}`);
  if (layers && !layers.every((x) => Number.isInteger(x) && x >= 0)) bad(`layers_to_transform must be an integer or a list of integers, got ${JSON.stringify(lt)}`);
  const patterns = stringList(j.layers_pattern, 'layers_pattern', bad);
  const ex = j.exclude_modules;
  const exRegex = typeof ex === 'string' && ex !== '' ? fullMatch(ex, 'exclude_modules', bad) : null;
  const exNames = typeof ex === 'string' ? null : stringList(ex, 'exclude_modules', bad);
  if (!regex && !layers && !exRegex && !exNames) return allLinear ? ALL_LINEAR : names!;
  // The layer index: the number after the first "<pattern>." (any path part without a pattern).
  const indexRes = patterns ? patterns.map((pt) => fullMatch(`.*?\\.(?:${pt})\\.(\\d+)\\..*`, 'layers_pattern', bad)) : [/^.*?\.[^.]*\.(\d+)\./];
  const layerIndex = (p: string): number | null => {
    for (const re of indexRes) {
      const m = re.exec(p);
      if (m) return Number(m[1]);
    }
    return null;
  };
  const selected = (p: string): boolean => {
    if (regex) return regex.test(p);
    if (allLinear) return isAllLinearPath(p);
    if (names!.includes(p)) return true;
    if (!names!.some((n) => targetNameMatches(p, n))) return false;
    if (!layers) return true;
    const i = layerIndex(p);
    return i !== null && layers.includes(i);
  };
  const excluded = (p: string): boolean => (exRegex ? exRegex.test(p) : exNames ? exNames.some((n) => targetNameMatches(p, n)) : false);
  const parts = [`target_modules ${JSON.stringify(t)}`];
  if (layers) parts.push(`layers_to_transform ${JSON.stringify(layers)}${patterns ? ` (layers_pattern ${JSON.stringify(patterns)})` : ''}`);
  if (exRegex || exNames) parts.push(`exclude_modules ${JSON.stringify(ex)}`);
  return { describe: parts.join(' with '), test: (p) => !excluded(p) && selected(p) };
}

/** Module names (last path part) of the non-LoRA trainable parameters, e.g. embed_tokens, norm. */
export function modulesOfParams(names: readonly string[]): string[] {
  const mods = names.map((n) => n.split('.').slice(-2, -1)[0]!).filter((m) => m !== 'lora_A' && m !== 'lora_B');
  return [...new Set(mods)];
}

/**
 * Whether a parameter belongs to a module listed in modules_to_save. PEFT tests each
 * module path with a plain suffix match (no dot boundary), so "norm" also selects
 * input_layernorm and post_attention_layernorm: an adapter saved with
 * modules_to_save ["embed_tokens", "norm"] holds every norm.
 */
function inModulesToSave(name: string, modules: readonly string[]): boolean {
  const mod = name.slice(0, name.lastIndexOf('.'));
  return modules.some((m) => m !== '' && mod.endsWith(m));
}

async function hostEntry(name: string, t: Tensor): Promise<TensorEntry> {
  let data: HostArray = await t.data();
  let dtype = t.dtype;
  if (dtype === 'f64') { data = Float32Array.from(data as Float64Array); dtype = 'f32'; }
  return { name, dtype, shape: t.shape, data };
}

export interface SaveAdapterOptions {
  /** Written as base_model_name_or_path. */
  baseModel: string;
  /** Names of the trained non-LoRA parameters (LongLoRA's embeddings and norms). */
  extras: readonly string[];
  /** Extra facts for longlora.json (RoPE scaling, attention, training length). */
  sidecar?: Record<string, unknown>;
}

/** An adapter's files, read back from the device and ready to write. */
export interface AdapterFiles {
  config: Record<string, unknown>;
  weights: TensorEntry[];
  /** The trained non-LoRA parameters under plain HF names (the official split). */
  extras: TensorEntry[];
  sidecar: Record<string, unknown>;
}

/** Reads a model's adapter (LoRA layers and the named extras) back to the host. */
export async function collectAdapter(model: Module, opts: SaveAdapterOptions): Promise<AdapterFiles> {
  const layers = loraLayers(model);
  if (layers.length === 0) throw new LongLoraError('saveAdapter: the model has no LoRA layers');
  const options = layers[0]![1].options;
  const weights: TensorEntry[] = [];
  for (const [p, l] of layers) {
    weights.push(await hostEntry(`${PREFIX}${p}.lora_A.weight`, l.lora_A.weight));
    weights.push(await hostEntry(`${PREFIX}${p}.lora_B.weight`, l.lora_B.weight));
  }
  const params = new Map(model.namedParameters());
  const extras: TensorEntry[] = [];
  for (const n of opts.extras) {
    const t = params.get(n);
    if (!t) throw new LongLoraError(`saveAdapter: no parameter named ${n}`);
    extras.push(await hostEntry(n, t));
  }
  // A model with tied embeddings uses the trained embed_tokens as its output head too.
  // PEFT treats a tied pair in modules_to_save as two separate modules unless
  // ensure_weight_tying is set: lm_head would keep the base's embeddings, and the adapter
  // would compute something else in PEFT than here and in the merged model.
  const tied = (model as { config?: { tieWordEmbeddings?: unknown } }).config?.tieWordEmbeddings === true &&
    opts.extras.some((n) => n.endsWith('embed_tokens.weight'));
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: opts.baseModel,
    r: options.r,
    lora_alpha: options.alpha,
    lora_dropout: options.dropout,
    target_modules: [...new Set(layers.map(([p]) => p.slice(p.lastIndexOf('.') + 1)))],
    modules_to_save: extras.length > 0 ? modulesOfParams(opts.extras) : null,
    ...(tied ? { ensure_weight_tying: true } : {}),
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: options.rslora,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
  return { config, weights, extras, sidecar: { format: 1, ...(opts.sidecar ?? {}) } };
}

/**
 * An adapter's files as bytes, by file name: what `writeAdapter` puts in a folder
 * (adapter_config.json, adapter_model.safetensors, trainable_params.safetensors when there
 * are extras, longlora.json), for a browser download or any other store.
 */
export function encodeAdapter(files: AdapterFiles): Map<string, Uint8Array> {
  const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v, null, 2) + '\n');
  const out = new Map<string, Uint8Array>();
  out.set(ADAPTER_CONFIG, json(files.config));
  out.set(ADAPTER_WEIGHTS, encodeSafetensors(adapterWeights(files), { format: 'pt' }, ADAPTER_WEIGHTS));
  if (files.extras.length > 0) out.set(TRAINABLE_PARAMS, encodeSafetensors(files.extras, { format: 'pt' }, TRAINABLE_PARAMS));
  out.set(LONGLORA_JSON, json(files.sidecar));
  return out;
}

/** The tensors of adapter_model.safetensors: the LoRA weights, then the extras under PEFT names. */
export function adapterWeights(files: AdapterFiles): TensorEntry[] {
  return [...files.weights, ...files.extras.map((e) => ({ ...e, name: PREFIX + e.name }))];
}

function checkShape(f: SafetensorsReader, key: string, shape: readonly number[]): void {
  const info = f.info(key);
  checkFloatTensor(f.path, key, info.dtype);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new LongLoraError(`${f.path}: tensor "${key}" has shape [${info.shape.join(', ')}] but the model needs [${shape.join(', ')}]; the adapter was trained for another model`);
  }
}

function readTensor(f: SafetensorsReader, key: string, shape: readonly number[], dt: 'f32' | 'f64', backend: Backend): Tensor {
  return fromHost(f.read(key, dt).data, shape, dt, backend).keep();
}

/**
 * Checks an adapter's weights against a model described by shapes: both LoRA matrices of
 * every target layer (`targets`: module path and its [out, in]), in the shapes rank r
 * needs; the modules_to_save copies of `params` (name and shape) the adapter holds; and
 * nothing else. Returns the names of the saved copies. Loading and the streaming merge
 * both check this way.
 */
export function checkAdapterTensors(f: SafetensorsReader, config: AdapterConfig, targets: ReadonlyArray<readonly [string, readonly number[]]>,
  params: Iterable<readonly [string, readonly number[]]>): string[] {
  const keys = new Set(f.names());
  const r = config.lora.r;
  for (const [p, [out, inF]] of targets) {
    const ka = `${PREFIX}${p}.lora_A.weight`;
    const kb = `${PREFIX}${p}.lora_B.weight`;
    for (const k of [ka, kb]) if (!keys.has(k)) throw new LongLoraError(`${f.path}: missing "${k}" for target module ${p}`);
    checkShape(f, ka, [r, inF!]);
    checkShape(f, kb, [out!, r]);
    keys.delete(ka);
    keys.delete(kb);
  }
  const saved: string[] = [];
  for (const [name, shape] of params) {
    if (!keys.has(PREFIX + name) || !inModulesToSave(name, config.modulesToSave)) continue;
    checkShape(f, PREFIX + name, shape);
    keys.delete(PREFIX + name);
    saved.push(name);
  }
  const left = [...keys];
  if (left.length > 0) {
    throw new LongLoraError(`${f.path}: ${left.length} tensor(s) match nothing in the model (e.g. ${left[0]}); the adapter was trained for another model or layout`);
  }
  return saved;
}

/**
 * Puts a PEFT adapter into a model: wraps the adapter's target layers with LoRA holding
 * its weights, and replaces the modules_to_save parameters with the adapter's copies.
 * Everything is checked before the model is touched, so a bad adapter leaves it as it was.
 * Returns the adapter's config and the names of the replaced parameters. `dir` names the
 * adapter in messages; `f` holds its weights (a file, or bytes in a browser).
 */
export function applyAdapter(model: Module, config: AdapterConfig, f: SafetensorsReader, runtime: LoraRuntime, dir: string): { config: AdapterConfig; replaced: string[] } {
  const r = config.lora.r;
  const adapted = resolveTargets(model, config.targetModules).map((p) => {
    const base = model.getAt(p);
    if (!isBaseLinear(base)) throw new LongLoraError(`${dir}: ${p} is not a plain linear layer (already adapted?)`);
    const [out, inF] = base.weight.shape as [number, number];
    return { p, base, ka: `${PREFIX}${p}.lora_A.weight`, kb: `${PREFIX}${p}.lora_B.weight`, out, inF };
  });
  const params = new Map(model.namedParameters());
  const savedNames = checkAdapterTensors(f, config, adapted.map((a) => [a.p, [a.out, a.inF]] as const), [...params].map(([n, t]) => [n, t.shape] as const));
  const saved = savedNames.map((n) => [n, params.get(n)!] as const);
  for (const a of adapted) {
    const dt = adapterDType(a.base.weight);
    const A = readTensor(f, a.ka, [r, a.inF], dt, a.base.weight.backend);
    const B = readTensor(f, a.kb, [a.out, r], dt, a.base.weight.backend);
    model.setAt(a.p, new LoRALinear(a.base, config.lora, A, B, runtime));
  }
  for (const [name, t] of saved) {
    const nt = readTensor(f, PREFIX + name, t.shape, t.dtype === 'f64' ? 'f64' : 'f32', t.backend);
    nt.name = name;
    model.setAt(name, nt);
    t.dispose();
  }
  return { config, replaced: saved.map(([n]) => n) };
}

/**
 * Puts an adapter held in memory into a model (see `applyAdapter`): `files` maps file
 * names to bytes as `encodeAdapter` gives them (adapter_config.json and
 * adapter_model.safetensors are needed; the rest is ignored).
 */
export function loadAdapterBytes(model: Module, files: ReadonlyMap<string, Uint8Array>, runtime: LoraRuntime, name = 'adapter'): { config: AdapterConfig; replaced: string[] } {
  const need = (f: string): Uint8Array => {
    const b = files.get(f);
    if (!b) throw new LongLoraError(`${name}: no ${f}; a PEFT adapter needs ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS}`);
    return b;
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(need(ADAPTER_CONFIG)));
  } catch (e) {
    if (e instanceof LongLoraError) throw e;
    throw new LongLoraError(`${name}/${ADAPTER_CONFIG}: not valid JSON (${(e as Error).message}); the adapter is corrupt`);
  }
  const config = parseAdapterConfig(json, `${name}/${ADAPTER_CONFIG}`);
  return applyAdapter(model, config, SafetensorsBytes.parse(need(ADAPTER_WEIGHTS), `${name}/${ADAPTER_WEIGHTS}`), runtime, name);
}
