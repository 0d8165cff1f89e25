/**
 * Quantising a large tensor on several threads, synchronously: the GGUF writer asks for
 * each tensor's bytes in turn, so the calling thread shares the blocks out to worker
 * threads (quant-worker.ts) through shared memory, takes its own share, and blocks
 * (Atomics.wait) until the workers have done theirs. Blocks are independent, so the bytes
 * are those of one thread's quantize(). Node only; the workers are unref'd and end with
 * dispose().
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { InternalError } from '../errors.js';
import { BLOCKS, blocksOf, quantize, type Importance, type QuantType } from './ggml-quants.js';

/** One worker's share of a tensor. */
export interface QuantJob {
  type: QuantType;
  input: SharedArrayBuffer;
  /** First value and number of values of the share (whole blocks). */
  from: number;
  count: number;
  output: SharedArrayBuffer;
  outOffset: number;
  state: SharedArrayBuffer;
  slot: number;
  /** The tensor's importance (see quantize), with `first` the column of value `from`. */
  importance?: Importance;
}

/** Smallest tensor worth sharing out (values); below it the calling thread does it all. */
const MIN_PARALLEL = 1 << 20;
/** No share takes this long; past it a worker is taken to be dead. */
const WAIT_LIMIT_MS = 600_000;

export class QuantPool {
  private readonly workers: Worker[] = [];
  private readonly state = new SharedArrayBuffer(4 * 64);

  /** `threads` in all, the calling thread included (default: the machine's parallelism, at most 64). */
  constructor(threads = os.availableParallelism(), private readonly minParallel = MIN_PARALLEL) {
    const n = Math.max(0, Math.min(64, Math.floor(threads)) - 1);
    for (let i = 0; i < n; i++) {
      const w = new Worker(new URL('./quant-worker.js', import.meta.url), { execArgv: [] });
      w.on('error', () => {}); // reported through the state slot or the wait limit
      w.unref();
      this.workers.push(w);
    }
  }

  /** What quantize(type, x, imp) returns, computed on all the pool's threads. */
  quantize(type: QuantType, x: Float32Array, imp?: Importance): Uint8Array {
    if (this.workers.length === 0 || x.length < this.minParallel) return quantize(type, x, imp);
    const at = (from: number): Importance | undefined => (imp ? { weights: imp.weights, first: (imp.first ?? 0) + from } : undefined);
    const [per, size] = BLOCKS[type];
    const blocks = blocksOf(x, type); // the checks quantize makes, here where their errors reach the caller
    const parts = Math.min(this.workers.length + 1, blocks);
    const input = new SharedArrayBuffer(x.length * 4);
    new Float32Array(input).set(x);
    const output = new SharedArrayBuffer(blocks * size);
    const state = new Int32Array(this.state);
    const share = (p: number): [number, number] => [Math.floor((blocks * p) / parts), Math.floor((blocks * (p + 1)) / parts)];
    for (let p = 1; p < parts; p++) {
      const [b0, b1] = share(p);
      Atomics.store(state, p, 0);
      const job: QuantJob = { type, input, from: b0 * per, count: (b1 - b0) * per, output, outOffset: b0 * size, state: this.state, slot: p, ...(imp ? { importance: at(b0 * per)! } : {}) };
      this.workers[p - 1]!.postMessage(job);
    }
    const [b0, b1] = share(0);
    const out = new Uint8Array(output);
    out.set(quantize(type, x.subarray(b0 * per, b1 * per), at(b0 * per)), b0 * size);
    for (let p = 1; p < parts; p++) {
      if (Atomics.wait(state, p, 0, WAIT_LIMIT_MS) === 'timed-out') throw new InternalError(`GGUF quantising: worker ${p} did not finish its share in ${WAIT_LIMIT_MS / 1000} s`);
      if (Atomics.load(state, p) !== 1) throw new InternalError(`GGUF quantising: worker ${p} failed on its share of a ${type} tensor`);
    }
    return new Uint8Array(out); // a plain copy: callers may hold it after the next tensor
  }

  dispose(): void {
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
  }
}
