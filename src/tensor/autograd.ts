/**
 * Reverse-mode autograd with a tape.
 *
 * Ops call `record()` after computing their output. A node is recorded only when grad
 * mode is on and some input requires grad; it holds untracked views of the tensors its
 * backward rule needs (`saved`), so the forward's scopes may free their own handles.
 * `backward(root)` walks the tape from the end, calls each rule with the output's
 * gradient, accumulates leaf gradients into `leaf.grad` (kept, in place), frees every
 * intermediate gradient as soon as it has been used, and empties the tape.
 *
 * Backward rules run with grad mode off (no higher-order gradients) and receive `needs`,
 * which says which inputs want a gradient, so frozen weights cost no gradient work.
 */
import { InternalError, LongLoraError } from '../errors.js';
import { tidy } from './scope.js';
import { Tensor } from './tensor.js';
import type { DType } from './dtype.js';

export type BackwardRule = (g: Tensor, saved: readonly Tensor[], needs: readonly boolean[]) => Array<Tensor | null>;

interface Node {
  name: string;
  out: number;
  outShape: readonly number[];
  inputs: readonly Tensor[];
  needs: readonly boolean[];
  saved: Tensor[];
  backward: BackwardRule;
}

/** An ordered record of differentiable ops. Nested tapes serve activation checkpointing. */
export class Tape {
  nodes: Node[] = [];
  /** Drops every node and the tensors it saved. */
  clear(): void {
    for (const n of this.nodes) for (const t of n.saved) t.dispose();
    this.nodes = [];
  }
}

let tape = new Tape();
let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with recording off (evaluation, generation, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

/** Runs fn with `t` as the active tape (used by activation checkpointing). */
export function withTape<T>(t: Tape, fn: () => T): T {
  const prev = tape;
  const prevGrad = gradEnabled;
  tape = t;
  gradEnabled = true;
  try { return fn(); } finally { tape = prev; gradEnabled = prevGrad; }
}

/** Number of nodes on the active tape (for leak tests). */
export function tapeLength(): number {
  return tape.nodes.length;
}

/** Discards the active tape without computing gradients. */
export function clearTape(): void {
  tape.clear();
}

/**
 * Records `out = op(inputs)` with its backward rule. `save` lists the tensors the rule
 * reads; they are retained until the rule has run.
 */
export function record(name: string, out: Tensor, inputs: readonly Tensor[], save: readonly Tensor[], backward: BackwardRule): void {
  if (!gradEnabled) return;
  const needs = inputs.map((t) => t.requiresGrad);
  if (!needs.some(Boolean)) return;
  out.requiresGrad = true;
  out.isLeaf = false;
  tape.nodes.push({
    name, out: out.id, outShape: out.shape, inputs, needs,
    saved: save.map((t) => t.view(t.shape, false)),
    backward,
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** Adds `g` into `leaf.grad`, taking over `g` (an untracked view). */
function accumulateLeaf(leaf: Tensor, g: Tensor, add: (dst: Tensor, src: Tensor) => void, copy: (t: Tensor) => Tensor): void {
  if (leaf.grad === null) {
    if (g.storage.refCount === 1) leaf.grad = g.view(leaf.shape, false);
    else leaf.grad = copy(g).keep();
    leaf.grad.kept = true;
    g.dispose();
    return;
  }
  add(leaf.grad, g);
  g.dispose();
}

export interface BackwardHelpers {
  /** dst += src, in place. */
  addInto: (dst: Tensor, src: Tensor) => void;
  /** A fresh copy. */
  copy: (t: Tensor) => Tensor;
  /** dst + src as a new tensor. */
  add: (a: Tensor, b: Tensor) => Tensor;
  onesLike: (t: Tensor) => Tensor;
  /** A copy in another dtype. */
  cast: (t: Tensor, dtype: DType) => Tensor;
}

let helpers: BackwardHelpers | null = null;

/** Installs the few ops the engine itself needs (set by ops/index.ts; avoids an import cycle). */
export function setBackwardHelpers(h: BackwardHelpers): void {
  helpers = h;
}

/**
 * Back-propagates from `root` (a scalar unless `seed` is given) through the active tape
 * and empties it. Leaf gradients accumulate across calls (gradient accumulation);
 * zero them with `zeroGrad` between optimizer steps.
 */
export function backward(root: Tensor, seed?: Tensor): void {
  const nodes = tape.nodes;
  tape.nodes = [];
  backwardNodes(nodes, root, seed);
}

/** Back-propagates through a tape of one's own (activation checkpointing) and empties it. */
export function backwardOn(t: Tape, root: Tensor, seed?: Tensor): void {
  const nodes = t.nodes;
  t.nodes = [];
  backwardNodes(nodes, root, seed);
}

function backwardNodes(nodes: Node[], root: Tensor, seed?: Tensor): void {
  if (!helpers) throw new InternalError('autograd helpers not installed');
  const h = helpers;
  const release = (): void => { for (const n of nodes) for (const t of n.saved) t.dispose(); };
  if (!root.requiresGrad) {
    release();
    throw new LongLoraError('backward(): the tensor does not depend on any tensor that requires grad (were all parameters frozen, or was it computed under noGrad?)');
  }
  if (!seed && root.size !== 1) { release(); throw new LongLoraError(`backward(): root has shape [${root.shape.join(', ')}]; pass a seed gradient for non-scalars`); }
  if (seed && !sameShape(seed.shape, root.shape)) { release(); throw new LongLoraError('backward(): seed shape differs from the root shape'); }
  const grads = new Map<number, Tensor>();
  const prevGrad = gradEnabled;
  gradEnabled = false;
  let unreached = false;
  try {
    tidy(() => {
      const first = seed ? seed.view(root.shape, false) : h.onesLike(root).view(root.shape, false);
      if (root.isLeaf) { accumulateLeaf(root, first, h.addInto, h.copy); return; }
      grads.set(root.id, first);
      for (let i = nodes.length - 1; i >= 0; i--) {
        const node = nodes[i]!;
        const g = grads.get(node.out);
        if (g) {
          grads.delete(node.out);
          runNode(node, g, grads, h);
        }
        for (const t of node.saved) t.dispose();
        node.saved = [];
      }
      // No recorded op produced the root: its graph was already back-propagated (backward
      // empties the tape) or recorded elsewhere. Nothing was accumulated.
      unreached = grads.has(root.id);
    });
  } finally {
    gradEnabled = prevGrad;
    release();
    for (const g of grads.values()) g.dispose();
  }
  if (unreached) {
    throw new LongLoraError('backward(): no recorded operation produced this tensor: backward was already run through it (each ' +
      'backward consumes the graph; recompute the loss for another pass), or it was computed outside the current recording');
  }
}

function runNode(node: Node, g: Tensor, grads: Map<number, Tensor>, h: BackwardHelpers): void {
  if (!sameShape(g.shape, node.outShape)) throw new InternalError(`${node.name}: gradient shape [${g.shape}] != output [${node.outShape}]`);
  // Each gradient takes its input's dtype (mixed precision: an f32 weight used with 16-bit
  // activations gets an f32 gradient), when a rule has not produced it so already.
  const gins = tidy(() => node.backward(g, node.saved, node.needs).map((gi, k) => {
    const dt = node.inputs[k]!.dtype;
    return gi && node.needs[k] && gi.dtype !== dt ? h.cast(gi, dt) : gi;
  }));
  // Take untracked views of what we keep, then free the rule's own handles right away.
  const views: Array<Tensor | null> = gins.map((gi, k) => {
    const inp = node.inputs[k]!;
    if (!gi || !node.needs[k]) return null;
    if (!sameShape(gi.shape, inp.shape)) {
      throw new InternalError(`${node.name}: gradient of input ${k} has shape [${gi.shape}], input is [${inp.shape}]`);
    }
    return gi.view(inp.shape, false);
  });
  for (const gi of gins) gi?.dispose();
  g.dispose();
  views.forEach((v, k) => {
    if (!v) return;
    const inp = node.inputs[k]!;
    if (inp.isLeaf) { accumulateLeaf(inp, v, h.addInto, h.copy); return; }
    const prev = grads.get(inp.id);
    if (!prev) { grads.set(inp.id, v); return; }
    if (prev.storage.refCount === 1) { h.addInto(prev, v); v.dispose(); return; }
    const sum = tidy(() => h.add(prev, v).view(inp.shape, false));
    prev.dispose();
    v.dispose();
    grads.set(inp.id, sum);
  });
}

/** Frees the gradients of `params` (call between optimizer steps). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
