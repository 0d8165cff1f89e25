/** Reference embedding lookup and its gradient (scatter-add). */
import type { F } from './elementwise.js';

function checkId(id: number, V: number, t: number): void {
  if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} at position ${t} is outside the vocabulary [0, ${V})`);
}

export function gather(table: F, ids: Int32Array, out: F, V: number, C: number, T: number): void {
  for (let t = 0; t < T; t++) {
    const id = ids[t]!;
    checkId(id, V, t);
    for (let c = 0; c < C; c++) out[t * C + c] = table[id * C + c]!;
  }
}

export function scatterAdd(dy: F, ids: Int32Array, dtable: F, V: number, C: number, T: number): void {
  for (let t = 0; t < T; t++) {
    const id = ids[t]!;
    checkId(id, V, t);
    for (let c = 0; c < C; c++) dtable[id * C + c] = dtable[id * C + c]! + dy[t * C + c]!;
  }
}
