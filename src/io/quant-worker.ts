/**
 * A worker of QuantPool (quant-pool.ts): quantises its share of a tensor's blocks from
 * shared memory into shared memory and says so through an Int32Array slot (1 done, 2
 * failed), which the blocked host waits on.
 */
import { parentPort } from 'node:worker_threads';
import { quantize } from './ggml-quants.js';
import type { QuantJob } from './quant-pool.js';

parentPort!.on('message', (job: QuantJob) => {
  const state = new Int32Array(job.state);
  try {
    const x = new Float32Array(job.input, job.from * 4, job.count);
    new Uint8Array(job.output).set(quantize(job.type, x, job.importance), job.outOffset);
    Atomics.store(state, job.slot, 1);
  } catch {
    Atomics.store(state, job.slot, 2);
  }
  Atomics.notify(state, job.slot);
});
