/**
 * Module: a node of the model tree. Parameters are the Tensor-valued properties, children
 * the Module-valued ones (and arrays of Modules), named by their property names — which
 * are the Hugging Face names (`self_attn`, `q_proj`, ...), so `namedParameters()` yields
 * checkpoint tensor names directly. Replacing a child (LoRA injection) is a plain
 * assignment. Packed (quantised) frozen weights are not parameters: they are listed by
 * `namedBuffers()` and freed by `dispose()` like the parameters.
 */
import type { Tensor } from '../tensor/tensor.js';
import { Tensor as TensorClass } from '../tensor/tensor.js';
import { PackedWeight } from './packed-weight.js';

export abstract class Module {
  /** [name, parameter] for every parameter, each tensor once (tied weights: first name wins). */
  namedParameters(prefix = ''): Array<[string, Tensor]> {
    const out: Array<[string, Tensor]> = [];
    const seen = new Set<Tensor>();
    this.walk(prefix, (name, t) => {
      if (!seen.has(t)) { seen.add(t); out.push([name, t]); }
    });
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters that receive gradients. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  /** Total element count of the (deduplicated) parameters. */
  numParameters(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  /** Direct child modules by property name (arrays as name.i). */
  namedChildren(): Array<[string, Module]> {
    const out: Array<[string, Module]> = [];
    for (const [key, v] of Object.entries(this)) {
      if (v instanceof Module) out.push([key, v]);
      else if (Array.isArray(v)) v.forEach((m, i) => { if (m instanceof Module) out.push([`${key}.${i}`, m]); });
    }
    return out;
  }

  /** Every module in the tree with its dotted path ('' for this one). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix, this]];
    for (const [k, m] of this.namedChildren()) out.push(...m.namedModules(prefix ? `${prefix}.${k}` : k));
    return out;
  }

  /** The module or tensor at a dotted path such as `model.layers.0.self_attn.q_proj`. */
  getAt(path: string): Module | Tensor | undefined {
    let cur: unknown = this;
    for (const seg of path.split('.')) {
      if (cur === null || typeof cur !== 'object') return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    }
    return cur instanceof Module || cur instanceof TensorClass ? cur : undefined;
  }

  /** Replaces the module or tensor at a dotted path (LoRA injection, merging, dtype promotion). */
  setAt(path: string, value: Module | Tensor): void {
    const segs = path.split('.');
    const last = segs.pop()!;
    const parent = segs.length ? this.getAt(segs.join('.')) ?? arrayAt(this, segs) : this;
    if (parent === undefined || parent === null || typeof parent !== 'object' || !(last in parent)) {
      throw new Error(`setAt: no '${path}' in this module`);
    }
    (parent as unknown as Record<string, unknown>)[last] = value;
  }

  /** [name, weight] for every packed frozen weight (quantised base layers), in model order. */
  namedBuffers(prefix = ''): Array<[string, PackedWeight]> {
    const out: Array<[string, PackedWeight]> = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [key, v] of Object.entries(m)) if (v instanceof PackedWeight) out.push([path ? `${path}.${key}` : key, v]);
    }
    return out;
  }

  /** Frees every parameter (and its gradient) and every packed weight. */
  dispose(): void {
    for (const t of this.parameters()) t.dispose();
    for (const [, w] of this.namedBuffers()) w.dispose();
  }

  private walk(prefix: string, fn: (name: string, t: Tensor) => void): void {
    const join = (k: string): string => (prefix ? `${prefix}.${k}` : k);
    for (const [key, v] of Object.entries(this)) {
      if (v instanceof TensorClass) fn(join(key), v);
    }
    for (const [key, m] of this.namedChildren()) m.walk(join(key), fn);
  }
}

/** Resolves a path that ends in an array (e.g. `model.layers`) for `setAt`. */
function arrayAt(root: Module, segs: string[]): unknown[] | undefined {
  let cur: unknown = root;
  for (const seg of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return Array.isArray(cur) ? cur : undefined;
}
