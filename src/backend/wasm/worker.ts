/**
 * A worker thread of the wasm backend's pool (protocol.ts). It receives one start-up
 * message, instantiates the kernels over the shared memory, says "ready", and from then
 * on only polls/waits on the control block and runs the chunks it claims. Written for
 * Node worker_threads; in a browser Web Worker the same `serve` runs from `onmessage`.
 */
import { CTRL, KERNELS, writeError, type KernelFn, type StartMessage } from './protocol.js';
import { IN_NODE, wasmApi } from './wasm-api.js';

type Post = (message: unknown) => void;

/** Runs jobs until STOP. After "ready" it posts nothing: errors go through the control block. */
function serve(msg: StartMessage, post: Post): void {
  const ctrl = new Int32Array(msg.control, 0, CTRL.SIZE);
  let fns: KernelFn[];
  try {
    const inst = new wasmApi!.Instance(msg.module, { env: { memory: msg.memory } });
    fns = KERNELS.map((k) => inst.exports[k] as KernelFn);
  } catch (e) {
    post({ error: `wasm worker ${msg.tid}: ${e instanceof Error ? e.message : String(e)}` });
    return;
  }
  let seen = Atomics.load(ctrl, CTRL.GEN);
  post({ ready: msg.tid });
  for (;;) {
    // Poll for a while (jobs often come back to back), then sleep until GEN changes.
    let gen = Atomics.load(ctrl, CTRL.GEN);
    for (let spin = Atomics.load(ctrl, CTRL.SPIN); gen === seen && spin > 0; spin--) gen = Atomics.load(ctrl, CTRL.GEN);
    if (gen === seen) {
      Atomics.wait(ctrl, CTRL.GEN, seen);
      continue;
    }
    seen = gen;
    if (Atomics.load(ctrl, CTRL.STOP)) return;
    const fn = fns[Atomics.load(ctrl, CTRL.KERNEL)]!;
    const args = Atomics.load(ctrl, CTRL.ARGS);
    const n = Atomics.load(ctrl, CTRL.NCHUNKS);
    try {
      for (let c = Atomics.add(ctrl, CTRL.NEXT, 1); c < n; c = Atomics.add(ctrl, CTRL.NEXT, 1)) fn(args, c, msg.tid);
    } catch (e) {
      writeError(msg.control, `worker ${msg.tid}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (Atomics.sub(ctrl, CTRL.ACTIVE, 1) === 1) Atomics.notify(ctrl, CTRL.ACTIVE);
  }
}

if (IN_NODE) {
  const { parentPort } = await import('node:worker_threads');
  parentPort!.once('message', (m: StartMessage) => serve(m, (x) => parentPort!.postMessage(x)));
} else {
  const scope = globalThis as unknown as { onmessage: ((e: { data: StartMessage }) => void) | null; postMessage: Post };
  scope.onmessage = (e) => { scope.onmessage = null; serve(e.data, (x) => scope.postMessage(x)); };
}
