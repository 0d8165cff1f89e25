/**
 * What the browser tests run inside a page (Chromium, WebGPU through `navigator.gpu`):
 * loaded as an ES module straight from dist/ with no bundler, it uses only the browser
 * entry of the library and fetches the golden fixtures over HTTP. Each function returns
 * plain data; test/browser/chromium.test.ts asserts on it in Node.
 */
/// <reference types="@webgpu/types" />
import {
  Rng, SafetensorsBytes, attention, autoBackend, cpuBackend, currentBackend, fromHost, getBackend, ids as idsTensor, llamaFromSafetensors, loadAdapterBytes,
  matmul, noGrad, quantizeModel, setBackend, tidy,
} from '../../src/browser.js';
import { acquireDevice } from '../../src/backend/webgpu/device.js';
import { diff } from '../helpers/diff.js';
import { goldenForward, goldenTraining, longloraRun, type GoldenEnv } from '../helpers/golden-runs.js';

const FIXTURES = '/test/fixtures/golden';

/** One comparison or check made in the page. */
export interface PageCheck {
  label: string;
  /** A comparison: rel = max|a − e| / max|e| against `rtol`. */
  rel?: number;
  maxAbs?: number;
  rtol?: number;
  worst?: string;
  /** A condition. */
  ok?: boolean;
}

export interface PageReport {
  backend: string;
  checks: PageCheck[];
  log: string[];
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function fetchJson(url: string): Promise<unknown> {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(url)));
}

/** The golden runs' environment in a page: fixtures fetched, comparisons recorded. */
function pageEnv(report: PageReport): GoldenEnv {
  return {
    golden: async (variant) => SafetensorsBytes.parse(await fetchBytes(`${FIXTURES}/${variant}/golden.safetensors`), `${variant}/golden.safetensors`),
    model: async (variant, opts) => llamaFromSafetensors(await fetchJson(`${FIXTURES}/${variant}/config.json`), [await fetchBytes(`${FIXTURES}/${variant}/model.safetensors`)], opts),
    adapter: async (model, dir, runtime) => {
      const files = new Map<string, Uint8Array>();
      for (const f of ['adapter_config.json', 'adapter_model.safetensors']) files.set(f, await fetchBytes(`${FIXTURES}/${dir}/${f}`));
      loadAdapterBytes(model, files, runtime, dir);
    },
    close: (actual, expected, rtol, label) => {
      const d = diff(actual, expected);
      report.checks.push({ label, rel: d.rel, maxAbs: d.maxAbs, rtol, worst: `index ${d.worstIndex}: ${actual[d.worstIndex]} vs ${expected[d.worstIndex]}` });
      return d.rel;
    },
    ok: (value, label) => { report.checks.push({ label, ok: value }); },
    log: (line) => { report.log.push(line); },
  };
}

/** The adapter and the backends as the page sees them. */
/** What `environment` reports: WebGPU in the page, and the automatic backend choice with what it passed over. */
export interface PageEnvironment { gpu: boolean; adapter: string | null; auto: string; skipped: Array<{ name: string; error: string }> }

export async function environment(): Promise<PageEnvironment> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = !!nav?.gpu;
  let adapter: string | null = null;
  if (nav?.gpu) {
    const a = await nav.gpu.requestAdapter();
    adapter = a ? `${a.info.vendor} ${a.info.architecture}`.trim() : null;
  }
  const { backend, skipped } = await autoBackend();
  const auto = backend.name;
  await setBackend('cpu');
  return { gpu, adapter, auto, skipped };
}

/**
 * What the WebGPU backend says in a page without WebGPU: with navigator.gpu hidden (as in
 * a page that is not a secure context, or a browser without WebGPU), and with a GPU object
 * that has no adapter.
 */
export async function webgpuRefusals(): Promise<{ missing: string; noAdapter: string }> {
  const message = (p: Promise<unknown>): Promise<string> => p.then(() => 'no error', (e: Error) => e.message);
  const nav = (globalThis as unknown as { navigator: { gpu?: GPU } }).navigator;
  Object.defineProperty(nav, 'gpu', { value: undefined, configurable: true });
  let missing: string;
  try {
    missing = await message(acquireDevice());
  } finally {
    delete nav.gpu; // the own property; Navigator's own getter shows again
  }
  const noAdapter = await message(acquireDevice({ gpu: { requestAdapter: async () => null } as unknown as GPU }));
  return { missing, noAdapter };
}

async function onBackend<T>(name: string, run: (report: PageReport) => Promise<T>): Promise<PageReport & { result?: T }> {
  await getBackend(name);
  await setBackend(name);
  const report: PageReport = { backend: currentBackend().name, checks: [], log: [] };
  try {
    return { ...report, result: await run(report) };
  } finally {
    await setBackend('cpu');
  }
}

/** Golden parity with PyTorch on `backend`: both tiny models (full and chunked head), both S²-Attn training runs. */
export function golden(backend: string): Promise<PageReport> {
  return onBackend(backend, async (report) => {
    const env = pageEnv(report);
    for (const variant of ['tiny-llama', 'tiny-llama-tied', 'tiny-qwen2', 'tiny-qwen3']) {
      for (const chunked of [false, true]) await goldenForward(env, variant, 'f32', chunked);
    }
    for (const form of ['roll', 'segmented'] as const) await goldenTraining(env, form, 'f32');
  });
}

/** A LongLoRA fine-tune on `backend`; the adapter files come back as arrays of bytes. */
/** A LongLoRA run in the page, as plain data (adapter files as arrays of bytes). */
export type PageLongLoraRun = PageReport & { losses: number[]; logits: number[]; files: Record<string, number[]>; generated: number[] };

export async function longlora(backend: string, steps: number): Promise<PageLongLoraRun> {
  const r = await onBackend(backend, (report) => longloraRun(pageEnv(report), steps));
  const run = r.result!;
  const files: Record<string, number[]> = {};
  for (const [name, bytes] of run.files) files[name] = [...bytes];
  return { backend: r.backend, checks: r.checks, log: r.log, losses: run.losses, logits: [...run.logits], files, generated: run.generated };
}

/**
 * A 4-bit base in the page: `variant` built from its bytes on the CPU backend, quantised to
 * NF4 (fingerprinted with the plain-JavaScript SHA-256), and its logits for `ids` [1, N].
 */
export async function nf4(variant: string, ids: number[]): Promise<{ fingerprint: string; tensors: number; logits: number[] }> {
  const r = await onBackend('cpu', async () => {
    const model = llamaFromSafetensors(await fetchJson(`${FIXTURES}/${variant}/config.json`), [await fetchBytes(`${FIXTURES}/${variant}/model.safetensors`)]);
    const info = await quantizeModel(model);
    const logits = noGrad(() => tidy(() => model.forward(idsTensor(Int32Array.from(ids), [1, ids.length]))));
    const out = { fingerprint: info.fingerprint, tensors: info.tensors, logits: [...await logits.floats()] };
    logits.dispose();
    model.dispose();
    return out;
  });
  return r.result!;
}

/**
 * The Wasm backend's worker pool in the page: its size, and a matmul and an S²-Attn call
 * large enough to be split over every thread, against the CPU backend.
 */
export async function wasmPool(): Promise<{ threads: number; isolated: boolean; matmul: number; attention: number }> {
  const be = await getBackend('wasm');
  const threads = (be as unknown as { threads: number }).threads;
  const rng = new Rng(5);
  const a = new Float32Array(256 * 320).map(() => rng.normal());
  const b = new Float32Array(320 * 192).map(() => rng.normal());
  const q = new Float32Array(1 * 256 * 4 * 32).map(() => rng.normal());
  const run = async (backend: typeof be): Promise<[Float32Array | Float64Array, Float32Array | Float64Array]> => {
    const mm = noGrad(() => tidy(() => matmul(fromHost(a, [256, 320], 'f32', backend), fromHost(b, [320, 192], 'f32', backend))));
    const t = (): ReturnType<typeof fromHost> => fromHost(q, [1, 256, 4, 32], 'f32', backend);
    const at = noGrad(() => tidy(() => attention(t(), t(), t(), { mask: { kind: 's2', form: 'segmented', group: 64 } })));
    const out: [Float32Array | Float64Array, Float32Array | Float64Array] = [await mm.floats(), await at.floats()];
    mm.dispose();
    at.dispose();
    return out;
  };
  const [wm, wa] = await run(be);
  const [cm, ca] = await run(cpuBackend());
  return { threads, isolated: (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true, matmul: diff(wm, cm).rel, attention: diff(wa, ca).rel };
}
