/**
 * Memory ownership (JavaScript has no destructors, and GPU memory must be freed on time).
 *
 * THE RULE. A tensor belongs to the innermost `tidy` scope open when it was created.
 * When `tidy(fn)` returns, it disposes every tensor it owns except (a) the tensors found
 * in fn's return value (arrays and plain objects are searched), which move to the
 * enclosing scope, and (b) tensors marked with `keep()`. Tensors created outside any
 * scope, and kept tensors (parameters, gradients, optimizer state), are owned by their
 * creator, who calls `dispose()`. The autograd tape holds its own reference to every
 * tensor it saved for the backward pass and drops it once `backward()` has used it.
 *
 * Under the hood, device buffers are reference counted (`Storage`): views such as
 * `reshape` share one buffer, and the buffer is freed when its last tensor is disposed.
 */
import type { Tensor } from './tensor.js';

const stack: Array<Set<Tensor>> = [];

/** Registers a new tensor with the innermost open scope (no-op outside scopes). */
export function track(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Removes a tensor from the innermost scope that owns it (used by `keep`). */
export function untrack(t: Tensor): void {
  for (let i = stack.length - 1; i >= 0; i--) if (stack[i]!.delete(t)) return;
}

/** Number of open scopes (for tests). */
export function scopeDepth(): number {
  return stack.length;
}

function collect(value: unknown, into: Set<Tensor>, isTensor: (v: unknown) => v is Tensor, depth = 0): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (isTensor(value)) { into.add(value); return; }
  if (Array.isArray(value)) { for (const v of value) collect(v, into, isTensor, depth + 1); return; }
  if (value instanceof Map) { for (const v of value.values()) collect(v, into, isTensor, depth + 1); return; }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, isTensor, depth + 1);
  }
}

let isTensorFn: ((v: unknown) => v is Tensor) | null = null;

/** Wires the Tensor class in without an import cycle (called once by tensor.ts). */
export function setTensorPredicate(fn: (v: unknown) => v is Tensor): void {
  isTensorFn = fn;
}

/**
 * Runs `fn` in a new scope and frees every tensor it created that is neither returned
 * nor kept. `fn` must be synchronous: tensors created after an `await` would land in
 * whatever scope is open at that moment.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) if (!t.kept) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new TypeError('tidy(fn): fn returned a Promise; tidy scopes must be synchronous');
  }
  const keepSet = new Set<Tensor>();
  collect(result, keepSet, isTensorFn!);
  const parent = stack[stack.length - 1];
  for (const t of scope) {
    if (keepSet.has(t)) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
  return result;
}
