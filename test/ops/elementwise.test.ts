import { describe, it } from 'node:test';
import * as op from '../../src/tensor/ops/index.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { checkOp } from '../helpers/optest.js';

const map = (f: (x: number) => number) => (x: Float64Array): Float64Array => x.map(f);
const sig = (x: number): number => 1 / (1 + Math.exp(-x));

describe('elementwise ops', () => {
  const unary: Array<[string, (x: Tensor) => Tensor, (x: number) => number, 'float' | 'positive']> = [
    ['neg', op.neg, (x) => -x, 'float'],
    ['exp', op.exp, Math.exp, 'float'],
    ['log', op.log, Math.log, 'positive'],
    ['silu', op.silu, (x) => x * sig(x), 'float'],
    ['sigmoid', op.sigmoid, sig, 'float'],
    ['square', op.square, (x) => x * x, 'float'],
    ['sqrt', op.sqrt, Math.sqrt, 'positive'],
    ['tanh', op.tanh, Math.tanh, 'float'],
    ['relu', op.relu, (x) => Math.max(0, x), 'float'],
  ];
  for (const [name, fn, ref, kind] of unary) {
    it(name, (t) => checkOp({ name, inputs: [{ shape: [3, 5], kind }], fn, reference: map(ref) }, (s) => t.diagnostic(s)));
  }

  it('affine', (t) => checkOp({
    name: 'affine', inputs: [{ shape: [7] }], fn: (x) => op.affine(x, -1.5, 0.25), reference: map((x) => -1.5 * x + 0.25),
  }, (s) => t.diagnostic(s)));

  const bin: Array<[string, (a: Tensor, b: Tensor) => Tensor, (a: number, b: number) => number]> = [
    ['add', op.add, (a, b) => a + b],
    ['sub', op.sub, (a, b) => a - b],
    ['mul', op.mul, (a, b) => a * b],
    ['div', op.div, (a, b) => a / b],
  ];
  for (const [name, fn, f] of bin) {
    const ref = (a: Float64Array, b: Float64Array): Float64Array => a.map((x, i) => f(x, b[i % b.length]!));
    it(`${name}, same shape`, (t) => checkOp({
      name, inputs: [{ shape: [4, 3] }, { shape: [4, 3], kind: name === 'div' ? 'positive' : 'float' }], fn, reference: ref,
    }, (s) => t.diagnostic(s)));
    it(`${name}, trailing broadcast (b: [3] onto [2, 4, 3])`, (t) => checkOp({
      name, inputs: [{ shape: [2, 4, 3] }, { shape: [3], kind: name === 'div' ? 'positive' : 'float' }], fn, reference: ref,
    }, (s) => t.diagnostic(s)));
    it(`${name}, scalar broadcast`, (t) => checkOp({
      name, inputs: [{ shape: [5] }, { shape: [1], kind: name === 'div' ? 'positive' : 'float' }], fn, reference: ref,
    }, (s) => t.diagnostic(s)));
  }

  it('add swaps a broadcast first operand', (t) => checkOp({
    name: 'add (b, a)', inputs: [{ shape: [3] }, { shape: [2, 3] }], fn: op.add,
    reference: (b, a) => a.map((x, i) => x + b[i % 3]!),
  }, (s) => t.diagnostic(s)));

  it('the same tensor used twice accumulates both gradients', (t) => checkOp({
    name: 'x*x + x', inputs: [{ shape: [6] }], fn: (x) => op.add(op.mul(x, x), x), reference: map((x) => x * x + x),
  }, (s) => t.diagnostic(s)));
});
