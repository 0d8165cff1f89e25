/**
 * The one op-test helper (after tinygrad's helper_test_op and mlx's fused-vs-fallback
 * checks). For an op given as a function of tensors it checks, in this order:
 *  1. forward in float64 on the CPU reference backend against an independent host
 *     `reference` (when given) and against a `twin` built from other ops (when given);
 *  2. the backward pass in float64 (a vector–Jacobian product with a random cotangent)
 *     against central finite differences, for every input that takes a gradient;
 *  3. the twin's gradients against the op's;
 *  4. on every test backend in float32: forward and gradients against the float64 run.
 * Failures throw (and so fail the test through the exit code); the measured errors are
 * logged either way.
 */
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backend/backend.js';
import { cpuBackend } from '../../src/backend/registry.js';
import { backward, noGrad } from '../../src/tensor/autograd.js';
import { fromHost } from '../../src/tensor/tensor.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { Rng } from '../../src/tensor/random.js';
import { tidy } from '../../src/tensor/scope.js';
import '../../src/tensor/ops/index.js';
import { assertClose } from './compare.js';
import { testBackends } from './backends.js';

export interface OpInput {
  shape: number[];
  /** float: N(0,1); positive: uniform [0.5, 2]; ids: integers in [0, max) (i32, no grad). */
  kind?: 'float' | 'positive' | 'ids';
  max?: number;
  /** Whether a gradient is checked for this input (default: true for floats). */
  grad?: boolean;
  /** Explicit values instead of random ones. */
  values?: ArrayLike<number>;
}

export interface OpSpec {
  name: string;
  inputs: OpInput[];
  fn: (...xs: Tensor[]) => Tensor;
  /** Independent host implementation of the forward pass, in float64. */
  reference?: (...xs: Float64Array[]) => ArrayLike<number>;
  /** The same function built from other ops; forward and gradients must agree. */
  twin?: (...xs: Tensor[]) => Tensor;
  seed?: number;
  /** float32 backends vs the float64 run (relative to the max magnitude). Default 1e-5. */
  rtol?: number;
  /** Finite differences vs the float64 backward. Default 1e-6. */
  fdTol?: number;
  /** Finite-difference step. Default 1e-6. */
  fdEps?: number;
  /** Elements probed per input by finite differences. Default 48. */
  fdSamples?: number;
  /**
   * A reason to skip a test backend (logged), or null to run on it; for ops whose kernel a
   * backend does not implement yet. Default: run on every backend.
   */
  skipBackend?: (backend: Backend) => string | null;
}

interface RunResult {
  out: Float64Array;
  grads: Array<Float64Array | null>;
}

function makeInputs(spec: OpSpec): Float64Array[] {
  const rng = new Rng(spec.seed ?? 1234);
  return spec.inputs.map((inp) => {
    const n = inp.shape.reduce((a, s) => a * s, 1);
    if (inp.values) {
      assert.equal(inp.values.length, n, `${spec.name}: values do not fill the shape`);
      return Float64Array.from(inp.values);
    }
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      if (inp.kind === 'ids') a[i] = rng.int(inp.max ?? 2);
      else if (inp.kind === 'positive') a[i] = 0.5 + 1.5 * rng.uniform();
      else a[i] = rng.normal();
    }
    return a;
  });
}

const wantsGrad = (inp: OpInput): boolean => inp.kind !== 'ids' && inp.grad !== false;

function toTensors(spec: OpSpec, host: Float64Array[], dtype: 'f32' | 'f64', be: Backend): Tensor[] {
  return spec.inputs.map((inp, i) => {
    const h = host[i]!;
    if (inp.kind === 'ids') return fromHost(Int32Array.from(h), inp.shape, 'i32', be);
    const t = fromHost(dtype === 'f64' ? h.slice() : Float32Array.from(h), inp.shape, dtype, be);
    return wantsGrad(inp) ? t.requireGrad() : t;
  });
}

/** Runs fn forward, then backward with cotangent `cot` (drawn here when not given). */
async function run(spec: OpSpec, fn: OpSpec['fn'], host: Float64Array[], dtype: 'f32' | 'f64', be: Backend, cot?: Float64Array): Promise<RunResult & { cot: Float64Array }> {
  const xs = toTensors(spec, host, dtype, be);
  const y = tidy(() => fn(...xs));
  const out = Float64Array.from(await y.floats());
  const c = cot ?? makeInputs({ ...spec, seed: (spec.seed ?? 1234) + 7, inputs: [{ shape: [...y.shape] }] })[0]!;
  const grads: Array<Float64Array | null> = [];
  if (y.requiresGrad) {
    const seed = fromHost(dtype === 'f64' ? c.slice() : Float32Array.from(c), y.shape, dtype, be);
    backward(y, seed);
    seed.dispose();
  }
  for (const x of xs) grads.push(x.grad ? Float64Array.from(await x.grad.floats()) : null);
  y.dispose();
  for (const x of xs) x.dispose();
  return { out, grads, cot: c };
}

/** Σ y·cot at `host` in float64, without recording. */
async function objective(spec: OpSpec, host: Float64Array[], cot: Float64Array): Promise<number> {
  const be = cpuBackend();
  const xs = toTensors(spec, host, 'f64', be);
  const y = noGrad(() => tidy(() => spec.fn(...xs)));
  const v = await y.floats();
  y.dispose();
  for (const x of xs) x.dispose();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * cot[i]!;
  return s;
}

async function finiteDifferences(spec: OpSpec, host: Float64Array[], base: RunResult & { cot: Float64Array }, log: (s: string) => void): Promise<void> {
  const eps = spec.fdEps ?? 1e-6;
  const tol = spec.fdTol ?? 1e-6;
  const rng = new Rng((spec.seed ?? 1234) + 99);
  for (let k = 0; k < spec.inputs.length; k++) {
    if (!wantsGrad(spec.inputs[k]!)) continue;
    const g = base.grads[k];
    assert.ok(g, `${spec.name}: input ${k} received no gradient`);
    const n = host[k]!.length;
    const samples = Math.min(n, spec.fdSamples ?? 48);
    const idx = samples === n ? [...Array(n).keys()] : Array.from({ length: samples }, () => rng.int(n));
    const scale = Math.max(1e-3, ...Array.from(g, Math.abs));
    let worst = 0;
    for (const i of idx) {
      const plus = host.map((h) => h.slice());
      const minus = host.map((h) => h.slice());
      plus[k]![i]! += eps;
      minus[k]![i]! -= eps;
      const fd = ((await objective(spec, plus, base.cot)) - (await objective(spec, minus, base.cot))) / (2 * eps);
      const err = Math.abs(fd - g[i]!) / scale;
      worst = Math.max(worst, err);
      assert.ok(err <= tol, `${spec.name}: d/d input${k}[${i}]: backward ${g[i]} vs finite difference ${fd} (rel ${err.toExponential(2)} > ${tol})`);
    }
    log(`${spec.name}: input ${k} finite differences (${idx.length} elements): rel ${worst.toExponential(2)} (tol ${tol.toExponential(0)})`);
  }
}

/** Runs every check of the op-test protocol; see the file comment. */
export async function checkOp(spec: OpSpec, log: (s: string) => void = () => {}): Promise<void> {
  const host = makeInputs(spec);
  const cpu = cpuBackend();
  const ref64 = await run(spec, spec.fn, host, 'f64', cpu);
  if (spec.reference) assertClose(ref64.out, spec.reference(...host.map((h) => h.slice())), 1e-10, `${spec.name}: forward vs host reference (f64)`, log);
  await finiteDifferences(spec, host, ref64, log);
  if (spec.twin) {
    const tw = await run(spec, spec.twin, host, 'f64', cpu, ref64.cot);
    assertClose(ref64.out, tw.out, 1e-10, `${spec.name}: forward vs twin (f64)`, log);
    ref64.grads.forEach((g, k) => { if (g) assertClose(g, tw.grads[k]!, 1e-10, `${spec.name}: grad ${k} vs twin (f64)`, log); });
  }
  const rtol = spec.rtol ?? 1e-5;
  for (const tb of await testBackends()) {
    if (!tb.backend) { log(`${spec.name}: backend ${tb.name} skipped: ${tb.skip}`); continue; }
    const skip = spec.skipBackend?.(tb.backend) ?? null;
    if (skip !== null) { log(`${spec.name}: backend ${tb.name} skipped: ${skip}`); continue; }
    const r32 = await run(spec, spec.fn, host, 'f32', tb.backend, ref64.cot);
    assertClose(r32.out, ref64.out, rtol, `${spec.name}: ${tb.name} f32 forward`, log);
    ref64.grads.forEach((g, k) => { if (g) assertClose(r32.grads[k]!, g, rtol, `${spec.name}: ${tb.name} f32 grad ${k}`, log); });
  }
}
