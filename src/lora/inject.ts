/**
 * Putting LoRA into a model, choosing what trains, and merging adapters back.
 * Targets match module paths the way PEFT does: a target `q_proj` matches every module
 * whose path is `q_proj` or ends in `.q_proj`; `all-linear` means every linear layer
 * except the output head.
 */
import { LongLoraError } from '../errors.js';
import { isBaseLinear, Linear } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { cast } from '../tensor/ops/elementwise.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { LoRALinear, checkLoraOptions, type LoraOptions, type LoraRuntime } from './lora.js';

export const DEFAULT_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const ALL_LINEAR = 'all-linear';
const OUTPUT_HEAD = 'lm_head';

/** What trains: LongLoRA (LoRA + extras), plain LoRA, or everything. */
export type TrainMode = 'longlora' | 'lora' | 'full';
const TRAIN_MODES: readonly TrainMode[] = ['longlora', 'lora', 'full'];
/** The parameters LongLoRA trains besides the adapters (by name part): embeddings and norms. */
const LONGLORA_EXTRAS: readonly string[] = ['embed', 'norm'];

/** Paths of every linear layer (plain, packed or LoRA-wrapped). */
export function linearPaths(model: Module): string[] {
  return model.namedModules().filter(([, m]) => isBaseLinear(m) || m instanceof LoRALinear).map(([p]) => p)
    .filter((p) => !/\.lora_[AB]$/.test(p));
}

const baseName = (path: string): string => path.slice(path.lastIndexOf('.') + 1);

/**
 * Targets given as a test on module paths: what an adapter_config.json selects with
 * PEFT's other forms (a regular expression, layers_to_transform, exclude_modules).
 * `describe` says what was asked, for the error when nothing matches.
 */
export interface TargetFilter {
  readonly describe: string;
  test(path: string): boolean;
}

/** LoRA targets: module names, `all-linear`, or a filter on module paths. */
export type Targets = readonly string[] | typeof ALL_LINEAR | TargetFilter;

function isFilter(t: Targets): t is TargetFilter {
  return typeof t === 'object' && !Array.isArray(t);
}

/** Whether a target name selects a module path: the path itself, or its last parts (PEFT's rule for a list). */
export function targetNameMatches(path: string, name: string): boolean {
  return path === name || path.endsWith(`.${name}`);
}

/** `all-linear`: every linear layer but the output head. */
export function isAllLinearPath(path: string): boolean {
  return baseName(path) !== OUTPUT_HEAD;
}

/** The module paths the targets select; a target that selects nothing is an error. */
export function resolveTargets(model: Module, targets: Targets): string[] {
  return matchTargets(linearPaths(model), targets);
}

/** `resolveTargets` over a list of linear-layer paths (to check targets before loading weights). */
export function matchTargets(all: readonly string[], targets: Targets): string[] {
  if (targets === ALL_LINEAR) return all.filter(isAllLinearPath);
  if (typeof targets === 'string') {
    throw new LongLoraError(`LoRA targets are a list of module names or '${ALL_LINEAR}': give ['${targets}'], not the string '${targets}'`);
  }
  const kinds = [...new Set(all.map(baseName))];
  if (isFilter(targets)) {
    const hit = all.filter((p) => targets.test(p));
    if (hit.length === 0) throw new LongLoraError(`LoRA targets ${targets.describe} match no module. Linear modules in this model: ${kinds.join(', ')}.`);
    return hit;
  }
  if (targets.length === 0) throw new LongLoraError('no LoRA target modules given; use e.g. q_proj,k_proj,v_proj,o_proj or all-linear');
  const chosen = new Set<string>();
  for (const t of targets) {
    const hit = all.filter((p) => targetNameMatches(p, t));
    if (hit.length === 0 && t.toLowerCase() === ALL_LINEAR) {
      throw new LongLoraError(`'${ALL_LINEAR}' selects every linear layer only as the whole value (targets '${ALL_LINEAR}', not ['${ALL_LINEAR}']): in a list, as in PEFT, it is a module name`);
    }
    if (hit.length === 0) {
      throw new LongLoraError(`LoRA target '${t}' matches no module. Linear modules in this model: ${kinds.join(', ')} (or all-linear).`);
    }
    for (const p of hit) chosen.add(p);
  }
  return all.filter((p) => chosen.has(p));
}

/** Wraps the target layers with fresh adapters. Returns the wrapped paths. */
export function applyLora(model: Module, targets: readonly string[] | typeof ALL_LINEAR, options: LoraOptions, rng: Rng, runtime: LoraRuntime): string[] {
  checkLoraOptions(options);
  const paths = resolveTargets(model, targets);
  for (const p of paths) {
    const m = model.getAt(p);
    if (!isBaseLinear(m)) throw new LongLoraError(`${p} already has a LoRA adapter`);
    model.setAt(p, LoRALinear.fresh(m, options, rng, runtime));
  }
  return paths;
}

/** The LoRA layers of a model with their paths. */
export function loraLayers(model: Module): Array<[string, LoRALinear]> {
  return model.namedModules().filter((e): e is [string, LoRALinear] => e[1] instanceof LoRALinear);
}

/**
 * Replaces every LoRA layer by a plain linear layer with the merged weight (over a packed
 * base: the dequantised weight plus the update, in f32).
 */
export function mergeLora(model: Module): number {
  const layers = loraLayers(model);
  for (const [p, l] of layers) {
    const merged = l.mergedWeight().keep();
    merged.name = `${p}.weight`;
    const bias = l.bias; // the base's, kept by the merged layer
    l.bias = null;
    l.dispose();
    model.setAt(p, new Linear(merged, bias));
  }
  return layers.length;
}

export interface TrainableReport {
  names: string[];
  trainable: number;
  /** Every parameter and packed (4-bit) base weight, counted in values. */
  total: number;
}

/** Replaces a 16-bit parameter by an f32 copy (trainable tensors are f32 masters). */
function promote(model: Module, name: string, t: Tensor): Tensor {
  if (t.dtype === 'f32' || t.dtype === 'f64') return t;
  const f = cast(t, 'f32').keep();
  f.name = name;
  model.setAt(name, f);
  t.dispose();
  return f;
}

/**
 * Freezes everything, then opens what the mode trains: `full` every parameter (packed 4-bit
 * base weights are not parameters and stay frozen — the trainer refuses that pairing); `lora`
 * the adapters; `longlora` the adapters plus every parameter whose name contains one of
 * `extras` (default embed and norm, SPEC §4). Frozen tensors never get gradients.
 */
export function setTrainable(model: Module, mode: TrainMode, extras: readonly string[] = mode === 'longlora' ? LONGLORA_EXTRAS : []): TrainableReport {
  if (!TRAIN_MODES.includes(mode)) throw new LongLoraError(`unknown training mode '${String(mode)}'; choose one of ${TRAIN_MODES.join(', ')}`);
  const named = model.namedParameters();
  for (const [, t] of named) t.requiresGrad = false;
  const isLora = (n: string): boolean => /\.lora_[AB]\.weight$/.test(n);
  if (mode !== 'full' && !named.some(([n]) => isLora(n))) {
    throw new LongLoraError(`mode '${mode}' trains LoRA adapters, but the model has none; apply LoRA first or use mode 'full'`);
  }
  if (mode === 'lora' && extras.length > 0) throw new LongLoraError(`mode 'lora' trains adapters only; remove the trainable extras (${extras.join(', ')}) or use mode 'longlora'`);
  for (const e of extras) {
    if (!named.some(([n]) => !isLora(n) && n.includes(e))) {
      throw new LongLoraError(`trainable extra '${e}' matches no parameter name (e.g. ${named.slice(0, 3).map(([n]) => n).join(', ')})`);
    }
  }
  const names: string[] = [];
  for (const [n, t] of named) {
    const open = mode === 'full' || isLora(n) || (mode === 'longlora' && extras.some((e) => n.includes(e)));
    if (!open) continue;
    promote(model, n, t).requireGrad();
    names.push(n);
  }
  const after = model.namedParameters();
  return {
    names,
    trainable: after.filter(([, t]) => t.requiresGrad).reduce((a, [, t]) => a + t.size, 0),
    total: after.reduce((a, [, t]) => a + t.size, 0) + model.namedBuffers().reduce((a, [, w]) => a + w.numel, 0),
  };
}
