/**
 * The wasm backend's runtime: the allocator (alignment, reuse, coalescing, the 4 GiB
 * message), the worker pool (workers exit on dispose, never keep the process alive, a
 * trap in a kernel is an error and the pool goes on), and leaks (training steps return
 * to the same live buffers and heap size).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { autoBackend, getBackend, registerBackend, setBackend } from '../../src/backend/registry.js';
import { detectFeatures } from '../../src/backend/wasm/loader.js';
import { WasmAllocator } from '../../src/backend/wasm/allocator.js';
import { KERNEL_INDEX } from '../../src/backend/wasm/protocol.js';
import { WasmBackend } from '../../src/backend/wasm/wasm.js';
import { wasmApi } from '../../src/backend/wasm/wasm-api.js';
import { LongLoraError } from '../../src/errors.js';
import { applyLora, setTrainable } from '../../src/lora/inject.js';
import { parseLlamaConfig } from '../../src/models/llama/config.js';
import { randomLlama } from '../../src/models/llama/load.js';
import { zeroGrad } from '../../src/tensor/autograd.js';
import { Rng } from '../../src/tensor/random.js';
import { accumulate } from '../../src/train/step.js';

describe('wasm allocator', () => {
  const make = (pages: number, maxPages: number): { a: WasmAllocator; grows: () => number } => {
    let grows = 0;
    const memory = new wasmApi!.Memory({ initial: pages, maximum: maxPages, shared: true });
    return { a: new WasmAllocator(memory, 1000, () => { grows++; }), grows: () => grows };
  };

  it('aligns to 64 bytes, reuses freed blocks, coalesces neighbours and gives the top back', () => {
    const { a } = make(1, 64);
    const xs = [10, 100, 64, 1, 4000].map((n) => a.alloc(n));
    for (const x of xs) assert.equal(x % 64, 0);
    assert.equal(xs[0], 1024, 'the heap starts at the first aligned address above base');
    a.free(xs[1]!);
    a.free(xs[2]!);
    assert.equal(a.freeBlocks, 1, 'two adjacent free blocks are one');
    assert.equal(a.alloc(192), xs[1], 'a request that fits the coalesced hole reuses it');
    const heap = a.heapBytes;
    a.free(xs[4]!);
    assert.ok(a.heapBytes < heap, 'the last block returns to the top');
    for (const x of [xs[0]!, xs[1]!, xs[3]!]) a.free(x);
    assert.equal(a.heapBytes, 0);
    assert.equal(a.freeBlocks, 0);
    assert.equal(a.liveBytes, 0);
    assert.throws(() => a.free(xs[0]!), /unknown block/);
  });

  it('grows the memory on demand and says what the 4 GiB limit means when it cannot', () => {
    const { a, grows } = make(1, 4);
    const big = a.alloc(3 * 65536);
    assert.ok(grows() >= 1);
    assert.ok(a.memoryBytes >= 4 * 65536 - 65536);
    assert.throws(() => a.alloc(8 * 65536), (e: unknown) => e instanceof LongLoraError && /at most 4 GiB/.test(e.message) && /cpu backend/.test(e.message) && /--quantize nf4/.test(e.message));
    a.free(big);
  });

  it('many random allocations and frees keep blocks disjoint and end empty', () => {
    const { a } = make(1, 1024);
    const rng = new Rng(5);
    const live = new Map<number, number>();
    for (let i = 0; i < 2000; i++) {
      if (live.size > 0 && rng.uniform() < 0.45) {
        const keys = [...live.keys()];
        const k = keys[rng.int(keys.length)]!;
        a.free(k);
        live.delete(k);
      } else {
        const n = 1 + rng.int(rng.uniform() < 0.1 ? 200000 : 3000);
        const at = a.alloc(n);
        for (const [b, m] of live) assert.ok(at + n <= b || b + m <= at, 'blocks do not overlap');
        live.set(at, n);
      }
    }
    for (const k of live.keys()) a.free(k);
    assert.equal(a.heapBytes, 0);
  });
});

describe('wasm worker pool', () => {
  it('runs kernels on every thread and the workers exit on dispose', async () => {
    const be = await WasmBackend.create({ threads: 3, parallelMin: 0 });
    assert.equal(be.threads, 3);
    assert.equal(be.liveWorkers, 2);
    const x = be.alloc('f32', 10000);
    be.fill(x, 2);
    const y = be.alloc('f32', 1);
    be.reduceSum(x, y, 1, 10000, 1);
    assert.equal((await be.download(y))[0], 20000);
    await be.dispose();
    assert.equal(be.liveWorkers, 0);
    assert.throws(() => be.fill(x, 1), /disposed/);
  });

  it('a trap in a kernel is an error, and the pool keeps working', async () => {
    const be = await WasmBackend.create({ threads: 2, parallelMin: 0 });
    const pool = Reflect.get(be, 'pool') as { run: (k: number, args: number, n: number, parallel: boolean) => void };
    const args = Reflect.get(be, 'argsAddr') as number;
    const f64 = new Float64Array((Reflect.get(be, 'wasmMemory') as { buffer: ArrayBuffer }).buffer);
    // fill: chunk c writes [c·per, (c+1)·per) of a range that runs far past the memory
    f64.set([1 << 20, 2 ** 30, 0, 4, 1 << 16], args / 8);
    assert.throws(() => pool.run(KERNEL_INDEX.fill, args, 64, true), /out of bounds|failed in a worker/);
    const x = be.alloc('f32', 5000);
    be.fill(x, 3);
    assert.ok((await be.download(x)).every((v) => v === 3), 'later kernels run normally');
    await be.dispose();
  });

  it('workers never keep a process alive', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const mod = path.join(here, '..', '..', 'src', 'backend', 'wasm', 'wasm.js');
    const script = `const { WasmBackend } = await import(${JSON.stringify(`file://${mod}`)});
      const be = await WasmBackend.create({ threads: 2, parallelMin: 0 });
      const a = be.alloc('f32', 4096); be.fill(a, 1); console.log('ran');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 30000, encoding: 'utf8' });
    assert.equal(r.error, undefined, 'the child exits by itself (no timeout)');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ran/);
  });
});

describe('wasm start-up', () => {
  it('reports the build it chose and refuses a build the engine cannot run, saying why', async () => {
    const be = await getBackend('wasm') as WasmBackend;
    const features = detectFeatures();
    assert.equal(be.flavour, features.relaxedSimd ? 'relaxed' : 'simd');
    if (!features.relaxedSimd) {
      await assert.rejects(WasmBackend.create({ flavour: 'relaxed' }), /relaxed SIMD was asked for but this engine does not support it/);
    }
  });

  it('on Node.js 20 turns relaxed SIMD on by itself (validate decides), and LONGLORA_WASM_BUILD=simd leaves it off', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const dir = path.join(here, '..', '..', 'src', 'backend', 'wasm');
    const script = `const { WasmBackend } = await import(${JSON.stringify(`file://${path.join(dir, 'wasm.js')}`)});
      const { detectFeatures } = await import(${JSON.stringify(`file://${path.join(dir, 'loader.js')}`)});
      const before = detectFeatures().relaxedSimd;
      const be = await WasmBackend.create({ threads: 2, parallelMin: 0 });
      const a = be.alloc('f32', 4096), b = be.alloc('f32', 4096), c = be.alloc('f32', 4096);
      be.fill(a, 1); be.fill(b, 2);
      be.matmul(a, b, c, { batch: 1, m: 64, n: 64, k: 64, transA: false, transB: false, alpha: 1, beta: 0, strideA: 0, strideB: 0 });
      const y = await be.download(c);
      console.log(JSON.stringify({ before, after: detectFeatures().relaxedSimd, flavour: be.flavour, y: y[0] }));
      await be.dispose();`;
    const runChild = (build?: string): { before: boolean; after: boolean; flavour: string; y: number } => {
      const env = { ...process.env };
      delete env.LONGLORA_WASM_BUILD;
      if (build) env.LONGLORA_WASM_BUILD = build;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 60000, encoding: 'utf8', env });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: boolean; after: boolean; flavour: string; y: number };
    };
    const auto = runChild();
    assert.equal(auto.flavour, auto.after ? 'relaxed' : 'simd', 'the build follows WebAssembly.validate');
    assert.equal(auto.y, 128);
    if (Number(process.versions.node.split('.')[0]) === 20) assert.equal(auto.flavour, 'relaxed', 'Node.js 20 runs the relaxed build');
    const plain = runChild('simd');
    assert.equal(plain.flavour, 'simd');
    assert.equal(plain.after, plain.before, 'asking for the plain build changes no engine flag');
    assert.equal(plain.y, 128);
  });

  it('autoBackend passes over a backend that fails to initialise and reports the reason', async () => {
    registerBackend('broken-test', 1000, () => { throw new Error('wasm backend: this JavaScript engine has no WebAssembly SIMD'); });
    try {
      const { backend, skipped } = await autoBackend();
      assert.notEqual(backend.name, 'broken-test');
      assert.ok(skipped.some((s) => s.name === 'broken-test' && /no WebAssembly SIMD/.test(s.error)));
    } finally {
      registerBackend('broken-test', -1000, () => { throw new Error('unused'); });
      await setBackend('cpu');
    }
  });
});

describe('wasm memory over training steps', () => {
  it('repeated steps return to the same live buffers and do not grow the heap', async () => {
    const be = await getBackend('wasm');
    await setBackend('wasm');
    try {
      const config = parseLlamaConfig({
        model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
        num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5,
      }, 'test');
      const model = randomLlama(config, { seed: 1 });
      const runtime = { training: true, rng: new Rng(2) };
      applyLora(model, ['q_proj', 'v_proj'], { r: 4, alpha: 8, dropout: 0, rslora: false }, new Rng(3), runtime);
      setTrainable(model, 'longlora', ['embed', 'norm']);
      const rng = new Rng(4);
      const ids = Int32Array.from({ length: 2 * 40 }, () => rng.int(64));
      const counts: number[] = [];
      const heaps: number[] = [];
      for (let step = 0; step < 4; step++) {
        for (const checkpointing of [false, true]) {
          await accumulate(model, { ids, B: 2, N: 40 }, 1, { mask: { kind: 's2', form: 'segmented', group: 10 }, checkpointing, rngs: [runtime.rng] });
        }
        zeroGrad(model.parameters());
        counts.push(be.memory().buffers);
        heaps.push((be as WasmBackend).stats().heapBytes);
      }
      assert.ok(counts.every((c) => c === counts[0]), `live buffers after each step: ${counts.join(', ')}`);
      assert.ok(heaps.slice(1).every((h) => h === heaps[1]), `heap after each step: ${heaps.join(', ')}`);
      model.dispose();
    } finally {
      await setBackend('cpu');
    }
  });
});
