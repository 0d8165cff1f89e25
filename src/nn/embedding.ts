/** Embedding lookup; its gradient is a scatter-add into the table. */
import { LongLoraError } from '../errors.js';
import { record } from '../tensor/autograd.js';
import { zeros } from '../tensor/ops/create.js';
import { backendOf, computeDType, fmt } from '../tensor/ops/util.js';
import { Tensor } from '../tensor/tensor.js';
import { cast } from '../tensor/ops/elementwise.js';
import { isHalf } from '../tensor/dtype.js';
import { Module } from './module.js';

/** table [V, C], ids i32 [...] → [..., C]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  if (table.rank !== 2) throw new LongLoraError(`embedding: table must be [V, C], got ${fmt(table.shape)}`);
  if (ids.dtype !== 'i32') throw new LongLoraError(`embedding: ids must be i32, got ${ids.dtype}`);
  const be = backendOf('embedding', table, ids);
  computeDType('embedding', table);
  const [V, C] = table.shape as [number, number];
  const T = ids.size;
  const out = Tensor.empty([...ids.shape, C], table.dtype, be);
  be.gather(table.buffer, ids.buffer, out.buffer, V, C, T);
  record('embedding', out, [table], [ids], (g, [sids]) => {
    const dt = zeros(table.shape, table.dtype, be);
    be.scatterAdd(g.buffer, sids!.buffer, dt.buffer, V, C, T);
    return [dt];
  });
  return out;
}

/** Token embedding layer with weight [V, C]; outputs in `computeDType`. */
export class Embedding extends Module {
  constructor(public weight: Tensor, readonly computeDType: 'f32' | 'f64') {
    super();
  }

  forward(ids: Tensor): Tensor {
    const w = this.weight;
    if (w.dtype === this.computeDType) return embedding(w, ids);
    // A 16-bit table (frozen): gather its rows, then widen only those, never the whole table.
    if (isHalf(w.dtype)) return cast(embedding(w, ids), this.computeDType);
    return embedding(cast(w, this.computeDType), ids);
  }
}
