/**
 * The worker pool of the wasm backend: `threads − 1` workers plus the calling thread run
 * every kernel's chunks over the shared memory (protocol in protocol.ts). From the
 * caller's view a kernel stays one synchronous call: the host thread takes its share of
 * the chunks, then waits (Atomics.wait) for the workers to finish theirs.
 *
 * In Node the workers are worker_threads, unref'd so they never keep the process alive;
 * in a browser they are module Web Workers (the page must be cross-origin isolated for
 * shared memory), and on a page's main thread, where Atomics.wait is not allowed, the
 * host spins instead of sleeping. `dispose()` stops and terminates them.
 */
import { InternalError, LongLoraError } from '../../errors.js';
import { CONTROL_BYTES, CTRL, KERNELS, takeError, type KernelFn, type StartMessage } from './protocol.js';
import { IN_NODE, type WasmMemory, type WasmModule } from './wasm-api.js';

/** Poll iterations before sleeping: a worker and the waiting host (about 10–50 µs). */
const WORKER_SPIN = 20000;
const HOST_SPIN = 20000;
/** A job never waits this long for a chunk; past it a worker is taken to be dead. */
const WAIT_LIMIT_MS = 60000;

/** What the pool needs of a worker, in Node (worker_threads) and in browsers (Web Workers). */
interface PoolWorker {
  terminate(): Promise<unknown> | void;
}

/** A started worker and the promise of its "ready" (or its start-up failure). */
interface Started {
  worker: PoolWorker;
  ready: Promise<void>;
  /** Drops the start-up listeners (Node: and lets the process exit without it). */
  settle(): void;
}

type ReadyMessage = { ready?: number; error?: string };

function readyFrom(m: ReadyMessage, resolve: () => void, reject: (e: Error) => void): void {
  if (m.error) reject(new LongLoraError(m.error)); else resolve();
}

type NodeWorkerClass = typeof import('node:worker_threads').Worker;

function startNodeWorker(Worker: NodeWorkerClass, url: URL, tid: number, msg: StartMessage): Started {
  const w = new Worker(url, { execArgv: [] }); // the host's flags (e.g. --input-type) are not for workers
  const ready = new Promise<void>((resolve, reject) => {
    w.once('message', (m: ReadyMessage) => readyFrom(m, resolve, reject));
    w.once('error', (e) => reject(new LongLoraError(`wasm worker ${tid} failed to start: ${e.message}`)));
    w.once('exit', (code) => reject(new LongLoraError(`wasm worker ${tid} exited during start-up (code ${code})`)));
  });
  w.postMessage(msg);
  return {
    worker: w,
    ready,
    settle: () => {
      // From here on the protocol is shared memory only. Listeners would keep the process
      // alive, so they go, and the worker is unref'd.
      w.removeAllListeners();
      w.on('error', () => {}); // a dying worker must not crash the host; ERROR/timeouts report it
      w.unref();
    },
  };
}

interface WebWorker extends PoolWorker {
  postMessage(m: unknown): void;
  onmessage: ((e: { data: ReadyMessage }) => void) | null;
  onerror: ((e: { message?: string }) => void) | null;
}

function startWebWorker(url: URL, tid: number, msg: StartMessage): Started {
  const Ctor = (globalThis as unknown as { Worker?: new (u: URL, o: { type: 'module' }) => WebWorker }).Worker;
  if (!Ctor) throw new LongLoraError('wasm backend: this JavaScript engine has neither Node worker threads nor Web Workers; use the cpu backend');
  const w = new Ctor(url, { type: 'module' });
  const ready = new Promise<void>((resolve, reject) => {
    w.onmessage = (e) => readyFrom(e.data, resolve, reject);
    w.onerror = (e) => reject(new LongLoraError(`wasm worker ${tid} failed to start: ${e.message ?? 'script error'} (is ${url.href} served?)`));
  });
  w.postMessage(msg);
  return { worker: w, ready, settle: () => { w.onmessage = null; w.onerror = null; } };
}

/** Whether this thread may block in Atomics.wait (not on a browser page's main thread). */
function canBlock(): boolean {
  if (IN_NODE) return true;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

export class WorkerPool {
  private readonly ctrl: Int32Array;
  private workers: PoolWorker[] = [];
  private readonly blocking = canBlock();
  private disposed = false;
  private live = 0;
  private closed: Promise<void> = Promise.resolve();

  private constructor(readonly threads: number, private readonly fns: KernelFn[], private readonly control: SharedArrayBuffer) {
    this.ctrl = new Int32Array(control, 0, CTRL.SIZE);
  }

  /**
   * Starts `threads − 1` workers over `memory` and waits until each has instantiated the
   * module. `fns` are the host thread's own kernel exports.
   */
  static async create(module: WasmModule, memory: WasmMemory, fns: KernelFn[], threads: number): Promise<WorkerPool> {
    const pool = new WorkerPool(threads, fns, new SharedArrayBuffer(CONTROL_BYTES));
    Atomics.store(pool.ctrl, CTRL.SPIN, WORKER_SPIN);
    if (threads > 1) {
      const url = new URL('./worker.js', import.meta.url);
      const NodeWorker = IN_NODE ? (await import('node:worker_threads')).Worker : null;
      const started: Started[] = [];
      try {
        // Started synchronously, so every start-up promise has its handler (Promise.all)
        // before any worker can report a failure.
        for (let tid = 1; tid < threads; tid++) {
          const msg: StartMessage = { module, memory, control: pool.control, tid };
          const st = NodeWorker ? startNodeWorker(NodeWorker, url, tid, msg) : startWebWorker(url, tid, msg);
          started.push(st);
          pool.workers.push(st.worker);
          pool.live++;
        }
        await Promise.all(started.map((st) => st.ready));
      } catch (e) {
        await pool.dispose();
        throw e;
      }
      for (const st of started) st.settle();
    }
    return pool;
  }

  /** Number of worker threads (not counting the host's). */
  get workerCount(): number { return this.workers.length; }

  /**
   * Runs chunks 0..n−1 of `kernel` with the arguments at `args`: on every thread when
   * `parallel` (and there are workers and more than one chunk), else on this thread only.
   */
  run(kernel: number, args: number, n: number, parallel: boolean): void {
    if (this.disposed) throw new InternalError('wasm backend: kernel call after dispose()');
    const fn = this.fns[kernel]!;
    if (!parallel || n <= 1 || this.workers.length === 0) {
      for (let c = 0; c < n; c++) fn(args, c, 0);
      return;
    }
    const ctrl = this.ctrl;
    Atomics.store(ctrl, CTRL.KERNEL, kernel);
    Atomics.store(ctrl, CTRL.ARGS, args);
    Atomics.store(ctrl, CTRL.NCHUNKS, n);
    Atomics.store(ctrl, CTRL.NEXT, 0);
    Atomics.store(ctrl, CTRL.ACTIVE, this.workers.length);
    Atomics.add(ctrl, CTRL.GEN, 1);
    Atomics.notify(ctrl, CTRL.GEN);
    let failure: unknown = null;
    try {
      for (let c = Atomics.add(ctrl, CTRL.NEXT, 1); c < n; c = Atomics.add(ctrl, CTRL.NEXT, 1)) fn(args, c, 0);
    } catch (e) {
      failure = e;
      Atomics.store(ctrl, CTRL.NEXT, n); // let the workers stop early
    }
    this.waitIdle();
    const error = Atomics.load(ctrl, CTRL.ERROR) ? takeError(this.control) : null;
    if (failure) throw failure;
    if (error !== null) throw new InternalError(`wasm backend: kernel ${KERNELS[kernel]} failed in a worker thread: ${error}`);
  }

  /** Waits until every worker has finished the current job. */
  private waitIdle(): void {
    const ctrl = this.ctrl;
    let active = Atomics.load(ctrl, CTRL.ACTIVE);
    for (let spin = HOST_SPIN; active !== 0 && spin > 0; spin--) active = Atomics.load(ctrl, CTRL.ACTIVE);
    const t0 = Date.now();
    while (active !== 0) {
      if (this.blocking) Atomics.wait(ctrl, CTRL.ACTIVE, active, 1000);
      active = Atomics.load(ctrl, CTRL.ACTIVE);
      if (active !== 0 && Date.now() - t0 > WAIT_LIMIT_MS) {
        throw new InternalError(`wasm backend: ${active} worker thread(s) did not finish kernel ${KERNELS[Atomics.load(ctrl, CTRL.KERNEL)]} within ${WAIT_LIMIT_MS / 1000} s`);
      }
    }
  }

  /** Workers not yet exited. */
  get liveWorkers(): number { return this.live; }

  /** Stops and terminates the workers; resolves once they have exited. Idempotent. */
  dispose(): Promise<void> {
    if (!this.disposed) {
      this.disposed = true;
      Atomics.store(this.ctrl, CTRL.STOP, 1);
      Atomics.add(this.ctrl, CTRL.GEN, 1);
      Atomics.notify(this.ctrl, CTRL.GEN);
      this.closed = Promise.all(this.workers.map((w) => w.terminate())).then(() => { this.live = 0; });
      this.workers = [];
    }
    return this.closed;
  }
}
