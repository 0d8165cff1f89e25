/**
 * The library in a browser: headless Chromium (Debian's `chromium`, driven by
 * playwright-core) loads the browser entry from dist/ with no bundler and runs, in the
 * page, the golden parity runs against PyTorch — on WebGPU through `navigator.gpu`
 * (Chromium's SwiftShader adapter on machines without a GPU), on the Wasm backend (its
 * worker pool as Web Workers) and on the CPU backend — and a LongLoRA fine-tune, which
 * must match the same run in Node and whose adapter must load in Node and give the page's
 * logits. Without Chromium, or without WebGPU in it, the tests are skipped with a message
 * that says what to install.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cpuBackend, setBackend } from '../../src/backend/registry.js';
import { loadAdapter } from '../../src/io/peft.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { Rng } from '../../src/tensor/random.js';
import { assertClose } from '../helpers/compare.js';
import { ROOT, goldenDir, nodeGoldenEnv } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/forward.js';
import { longloraBatch, longloraRun } from '../helpers/golden-runs.js';
import { tempFolders } from '../helpers/tmp.js';
import { openChromium, type Chromium } from '../helpers/chromium.js';
import { REPO_ROOT, serveStatic } from '../../examples/browser/serve.js';
import type { PageEnvironment, PageLongLoraRun, PageReport } from './page.js';
import type { GgufReport, TextReport } from './text-page.js';
import { exportGguf } from '../../src/models/llama/gguf.js';
import { ggufTokenizer, loadLlamaGguf } from '../../src/models/llama/gguf-load.js';
import { readGgufHeader } from '../../src/io/gguf-read.js';
import { generate } from '../../src/eval/generate.js';
import { GREEDY } from '../../src/eval/sampling.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import type { ChatMessage } from '../../src/tokenizer/chat-template.js';

let chromium: Chromium | null = null;
/** Why the browser tests cannot run here (null when they can). */
let unavailable: string | null = null;
/** Why the WebGPU tests cannot run in the browser (null when they can). */
let noWebGpu: string | null = null;

/** Calls an export of dist/test/browser/page.js inside the page. */
function inPage<R>(fn: string, ...args: unknown[]): Promise<R> {
  return chromium!.call<R>('/dist/test/browser/page.js', fn, ...args);
}

/** Asserts every comparison and check the page made, printing the comparisons. */
function assertReport(r: PageReport, log: (s: string) => void, comparisons = true): void {
  for (const line of r.log) log(line);
  let compared = 0;
  for (const c of r.checks) {
    if (c.ok !== undefined) { assert.ok(c.ok, `in the page (${r.backend}): ${c.label}`); continue; }
    compared++;
    const line = `${c.label}: max|diff| ${c.maxAbs!.toExponential(2)}, rel ${c.rel!.toExponential(2)} (tol ${c.rtol!.toExponential(0)})`;
    if (!/^step \d/.test(c.label)) log(line);
    assert.ok(c.rel! <= c.rtol!, `in the page (${r.backend}): ${line}; worst at ${c.worst}`);
  }
  log(`${compared} comparisons and ${r.checks.length - compared} checks made in the page on ${r.backend}, all within tolerance`);
  if (comparisons) assert.ok(compared > 0, 'the page compared something');
}

describe('in a browser (headless Chromium)', () => {
  before(async () => {
    const c = await openChromium();
    if ('unavailable' in c) unavailable = c.unavailable; else chromium = c;
    if (unavailable) { console.log(`# browser tests skipped: ${unavailable}`); return; }
    const env = await inPage<PageEnvironment>('environment');
    if (!env.gpu || !env.adapter) noWebGpu = env.gpu ? 'Chromium offers navigator.gpu but no adapter' : 'this Chromium has no navigator.gpu';
    if (noWebGpu) console.log(`# browser WebGPU tests skipped: ${noWebGpu}`);
  });
  after(async () => {
    await chromium?.close();
  });

  it('loads the browser entry from dist/ without a bundler, and picks a backend that works there', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const env = await inPage<PageEnvironment>('environment');
    t.diagnostic(`navigator.gpu: ${env.gpu}, adapter: ${env.adapter ?? 'none'}; automatic choice: ${env.auto}`);
    for (const s of env.skipped) t.diagnostic(`passed over ${s.name}: ${s.error}`);
    // Served cross-origin isolated, the page has shared memory, so the Wasm backend starts
    // its Web Workers; WebGPU is passed over only for a software adapter.
    assert.ok(!env.skipped.some((s) => s.name === 'wasm'), 'the wasm backend starts in the page');
    const webgpu = env.skipped.find((s) => s.name === 'webgpu');
    if (webgpu) assert.match(webgpu.error, /software adapter|no GPU adapter|navigator/);
    assert.equal(env.auto, webgpu ? 'wasm' : 'webgpu');
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('on a page that is not cross-origin isolated, passes over the Wasm backend with a message that says why', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const plain = await serveStatic(REPO_ROOT, 0, false);
    try {
      await chromium!.page.goto(`${plain.origin}/test/browser/`);
      const env = await inPage<PageEnvironment>('environment');
      const wasm = env.skipped.find((s) => s.name === 'wasm');
      t.diagnostic(`automatic choice: ${env.auto}; wasm: ${wasm?.error}`);
      assert.ok(wasm, 'the wasm backend is passed over');
      assert.match(wasm.error, /shared WebAssembly memory is unavailable .*cross-origin isolated/);
      assert.doesNotMatch(wasm.error, /using another backend/, 'the same message refuses setBackend(\'wasm\'), which uses no other');
      assert.ok(['webgpu', 'cpu'].includes(env.auto));
    } finally {
      await chromium!.page.goto(`${chromium!.server.origin}/test/browser/`);
      await plain.close();
    }
  });

  it('without WebGPU in the page, says what the browser lacks (not what Node would install)', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const r = await inPage<{ missing: string; noAdapter: string }>('webgpuRefusals');
    t.diagnostic(`no navigator.gpu: ${r.missing}`);
    t.diagnostic(`no adapter: ${r.noAdapter}`);
    assert.match(r.missing, /navigator\.gpu is missing.*secure context.*setBackend\('wasm'\)/);
    assert.match(r.noAdapter, /no GPU adapter.*setBackend\('wasm'\)/);
    for (const m of [r.missing, r.noAdapter]) assert.doesNotMatch(m, /npm install|--backend|mesa/);
  });

  for (const backend of ['webgpu', 'wasm', 'cpu']) {
    it(`matches PyTorch's golden tensors on ${backend} in the page (tiny Llamas; S²-Attn LongLoRA training, 3 steps)`, async (t) => {
      if (unavailable) { t.skip(unavailable); return; }
      if (backend === 'webgpu' && noWebGpu) { t.skip(noWebGpu); return; }
      assertReport(await inPage<PageReport>('golden', backend), (s) => t.diagnostic(s));
    });
  }

  it('runs the Wasm backend\'s worker pool as Web Workers in the page (the host spins where it may not block)', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const r = await inPage<{ threads: number; isolated: boolean; matmul: number; attention: number }>('wasmPool');
    t.diagnostic(`cross-origin isolated: ${r.isolated}; wasm threads: ${r.threads}; vs cpu: matmul rel ${r.matmul.toExponential(2)}, S²-Attn rel ${r.attention.toExponential(2)}`);
    assert.ok(r.isolated);
    assert.ok(r.threads >= 2, `the pool has workers (navigator.hardwareConcurrency gave ${r.threads} threads)`);
    assert.ok(r.matmul <= 1e-5 && r.attention <= 1e-5);
  });

  it('quantises a base to 4-bit NF4 in the page: the same fingerprint (plain-JavaScript SHA-256) and logits as Node', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const ids = [1, 5, 9, 20, 33, 2, 7, 8];
    const web = await inPage<{ fingerprint: string; tensors: number; logits: number[] }>('nf4', 'tiny-qwen2', ids);
    const model = await loadLlama(goldenDir('tiny-qwen2'), { quantize: 'nf4', backend: cpuBackend() });
    assert.equal(web.tensors, 14);
    assert.equal(web.fingerprint, model.quantization!.fingerprint);
    assert.deepEqual(web.logits, [...await logitsOf(model, Int32Array.from(ids), 1, ids.length)]);
    model.dispose();
    t.diagnostic(`fingerprint ${web.fingerprint.slice(0, 19)}… in the page and in Node`);
  });

  const newFolder = tempFolders('browser');
  it('fine-tunes with LongLoRA on WebGPU in the page like Node does, generates the same tokens, and the adapter it exports loads in Node', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    if (noWebGpu) { t.skip(noWebGpu); return; }
    const log = (s: string): void => t.diagnostic(s);
    const steps = 4;
    const web = await inPage<PageLongLoraRun>('longlora', 'webgpu', steps);
    assertReport(web, log, false);
    await setBackend('cpu');
    const node = await longloraRun(nodeGoldenEnv(log), steps);
    log(`losses in the page (webgpu): ${web.losses.map((l) => l.toFixed(5)).join(' ')}`);
    assert.ok(web.losses[steps - 1]! < web.losses[0]!, 'the loss falls');
    assertClose(web.losses, node.losses, 1e-4, 'losses, page (webgpu) vs Node (cpu)', log);
    assertClose(web.logits, node.logits, 1e-4, 'logits after training, page vs Node', log);
    log(`greedy continuation in the page: ${web.generated.join(' ')}`);
    assert.equal(web.generated.length, 8);
    assert.deepEqual(web.generated, node.generated, 'the same greedy continuation (KV cache) as Node');
    assert.deepEqual(Object.keys(web.files).sort(), [...node.files.keys()].sort(), 'the same adapter files');
    assert.equal(Buffer.from(web.files['adapter_config.json']!).toString(), Buffer.from(node.files.get('adapter_config.json')!).toString());

    // The page's adapter, written as a folder, loads in Node through the PEFT folder reader.
    const dir = newFolder();
    for (const [name, bytes] of Object.entries(web.files)) fs.writeFileSync(path.join(dir, name), Uint8Array.from(bytes));
    const model = await loadLlama(goldenDir('tiny-llama'), { backend: cpuBackend() });
    const { replaced } = loadAdapter(model, dir, { training: false, rng: new Rng(0) });
    assert.equal(replaced.length, 6, 'embed_tokens and the five norms are replaced');
    const { ids, B, N } = longloraBatch();
    assertClose(await logitsOf(model, ids, B, N), web.logits, 1e-4, 'logits in Node with the page\'s adapter vs the page', log);
    model.dispose();
  });

  it('tokenizes, decodes, streams and renders chat templates in the page exactly as Node does', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    await chromium!.page.goto(`${chromium!.server.origin}/test/browser/text.html`);
    const texts = ['', 'Hello world', ' leading space and  double  spaces', 'unicode: é ✓ 𝄞 日本語 🙂',
      '<s> special tokens in text </s>', 'a long line that takes the word-by-word fast path, well over sixty-four characters of it.\nnew line'];
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }];
    for (const dir of ['llama-bpe', 'tiny-96']) {
      const web = await chromium!.call<TextReport>('/dist/test/browser/text-page.js', 'tokenize', dir, texts, messages);
      const tok = Tokenizer.load(path.join(ROOT, 'test', 'fixtures', 'tokenizer', dir));
      assert.equal(web.hash, tok.hash, `${dir}: hash`);
      assert.equal(web.vocabSize, tok.vocabSize);
      assert.deepEqual(web.special, [tok.bosId, tok.eosId, tok.padId, tok.unkId]);
      assert.deepEqual(web.ids, texts.map((x) => tok.encode(x)), `${dir}: ids`);
      assert.deepEqual(web.decoded, web.ids.map((row) => tok.decode(row)), `${dir}: decoded`);
      assert.deepEqual(web.streamed, web.ids.map((row) => tok.decode(row, { skipSpecialTokens: true })), `${dir}: streamed pieces add up to the decoded text (special tokens skipped)`);
      assert.equal(web.chat, tok.chatTemplate ? tok.chatTemplate.render(messages as ChatMessage[], { bosToken: tok.bosToken, eosToken: tok.eosToken }) : null);
      t.diagnostic(`${dir}: ${web.ids.flat().length} ids over ${texts.length} texts match Node${web.chat ? '; chat template renders the same' : ''}`);
    }
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('runs GGUF files in the page (a File read a piece at a time): the model, logits and tokenizer Node loads from them', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    await chromium!.page.goto(`${chromium!.server.origin}/test/browser/text.html`);
    const dir = newFolder();
    const files = (['q4_k_m', 'q8_0'] as const).map((dtype) => {
      const file = path.join(dir, `tiny-${dtype}.gguf`);
      exportGguf(path.join(ROOT, 'models', 'tiny-longlora'), file, { dtype, modelfile: false, embedTokenizer: dtype === 'q8_0' });
      return file;
    });
    const ids = [1, 5, 9, 20, 33, 2, 7, 8];
    const texts = ['Hello world', 'unicode: é ✓ 日本語 🙂', '<s> special tokens in text </s>'];
    const web = await chromium!.call<GgufReport[]>('/dist/test/browser/text-page.js', 'gguf',
      files.map((f) => ({ name: path.basename(f), base64: fs.readFileSync(f).toString('base64') })), ids, texts);
    await setBackend('cpu');
    for (const [i, file] of files.entries()) {
      const model = await loadLlamaGguf(file);
      const tok = ggufTokenizer(await readGgufHeader(file), file)!;
      assert.deepEqual(web[i]!.config, model.config, `${path.basename(file)}: config`);
      assert.equal(web[i]!.tensors, model.parameters().length);
      assert.deepEqual(web[i]!.logits, [...await logitsOf(model, Int32Array.from(ids), 1, ids.length)], `${path.basename(file)}: logits`);
      assert.deepEqual(web[i]!.ids, texts.map((x) => tok.encode(x)), `${path.basename(file)}: ids`);
      model.dispose();
      t.diagnostic(`${path.basename(file)}: ${web[i]!.tensors} tensors; logits and ids as in Node (tokenizer: ${web[i]!.tokenizer})`);
    }
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('runs the GGUF example: a file picked in the page, read onto the backend, continues a prompt as Node does', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const file = path.join(newFolder(), 'tiny-q8_0.gguf');
    exportGguf(path.join(ROOT, 'models', 'tiny-longlora'), file, { dtype: 'q8_0', modelfile: false });
    type State = { loaded: boolean; quantized: boolean; done: boolean; backend: string; ids: number[]; text: string; error?: string };
    const state = (): Promise<State> => chromium!.page.evaluate(() => (globalThis as unknown as { longlora: State }).longlora, undefined);
    const { auto } = await inPage<PageEnvironment>('environment');
    for (const backend of ['cpu', null, ...(noWebGpu ? [] : ['webgpu'] as const)] as const) {
      await chromium!.page.goto(`${chromium!.server.origin}/examples/browser/gguf.html?greedy=1&tokens=24${backend ? `&backend=${backend}` : '&quantize=nf4'}`);
      await chromium!.page.setInputFiles('#file', { name: 'tiny-q8_0.gguf', mimeType: 'application/octet-stream', buffer: fs.readFileSync(file) });
      await chromium!.page.waitForFunction(() => { const s = (globalThis as { longlora?: { loaded: boolean; done: boolean } }).longlora; return s?.loaded || s?.done; }, undefined, { timeout: 60_000 });
      await chromium!.page.click('#run');
      await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { done?: boolean } }).longlora?.done === true, undefined, { timeout: 60_000 });
      const r = await state();
      assert.equal(r.error, undefined);
      t.diagnostic(`on ${r.backend}${r.quantized ? ' (NF4)' : ''}: ${r.ids.length} tokens: ${JSON.stringify(r.text)}`);
      assert.equal(r.quantized, backend === null, 'NF4 when asked (?quantize=nf4)');
      if (backend !== 'cpu') { assert.equal(r.backend, backend ?? auto, 'the automatic choice'); assert.ok(r.ids.length > 0); continue; }
      assert.equal(r.backend, 'cpu');
      await setBackend('cpu');
      const model = await loadLlamaGguf(file);
      const tok = ggufTokenizer(await readGgufHeader(file), file)!;
      const want = await generate(model, tok.encode('Once upon a time'), { ...GREEDY, maxNewTokens: 24, stopIds: tok.stopIds([model.config.eosTokenId].flat()), tokenizer: tok });
      model.dispose();
      assert.deepEqual(r.ids, want.ids, 'the greedy continuation Node generates from the file');
      assert.equal(r.text, tok.decode(want.ids, { skipSpecialTokens: true }));
    }
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('the GGUF example: a file picked while a prompt runs is read after it, not under it', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const file = path.join(newFolder(), 'tiny-q8_0.gguf');
    exportGguf(path.join(ROOT, 'models', 'tiny-longlora'), file, { dtype: 'q8_0', modelfile: false });
    const buffer = fs.readFileSync(file);
    type State = { loaded: boolean; done: boolean; ids: number[]; error?: string };
    const state = (): Promise<State & { status: string }> => chromium!.page.evaluate(() => {
      const g = globalThis as unknown as { longlora: State; document: { querySelector(s: string): { textContent: string } } };
      return { ...g.longlora, status: g.document.querySelector('#status').textContent };
    }, undefined);
    // On WebGPU each token waits for the GPU, so the worker takes messages between tokens.
    await chromium!.page.goto(`${chromium!.server.origin}/examples/browser/gguf.html?greedy=1&tokens=40${noWebGpu ? '' : '&backend=webgpu'}`);
    await chromium!.page.setInputFiles('#file', { name: 'first.gguf', mimeType: 'application/octet-stream', buffer });
    await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { loaded: boolean } }).longlora?.loaded === true, undefined, { timeout: 60_000 });
    await chromium!.page.click('#run');
    await chromium!.page.waitForFunction(() => ((globalThis as { longlora?: { ids: number[] } }).longlora?.ids.length ?? 0) >= 3, undefined, { timeout: 60_000 });
    await chromium!.page.setInputFiles('#file', { name: 'second.gguf', mimeType: 'application/octet-stream', buffer });
    await chromium!.page.waitForFunction(() => { const s = (globalThis as { longlora?: { loaded: boolean; done: boolean } }).longlora; return s?.loaded && s.done; }, undefined, { timeout: 120_000 });
    const r = await state();
    t.diagnostic(`${r.ids.length} tokens, then: ${r.status}`);
    assert.equal(r.error, undefined, 'the generation ran to its end on the model it started with');
    assert.match(r.status, /^second\.gguf: llama/);
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('the GGUF example: Stop ends a generation where it is, and the model takes the next prompt', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    const file = path.join(newFolder(), 'tiny-q8_0.gguf');
    exportGguf(path.join(ROOT, 'models', 'tiny-longlora'), file, { dtype: 'q8_0', modelfile: false });
    type State = { loaded: boolean; done: boolean; ids: number[]; error?: string };
    const state = (): Promise<State & { status: string }> => chromium!.page.evaluate(() => {
      const g = globalThis as unknown as { longlora: State; document: { querySelector(s: string): { textContent: string } } };
      return { ...g.longlora, status: g.document.querySelector('#status').textContent };
    }, undefined);
    // On Wasm the kernels run to the end of each token without a break: the generation itself must let the message in.
    await chromium!.page.goto(`${chromium!.server.origin}/examples/browser/gguf.html?greedy=1&tokens=100000&backend=wasm`);
    await chromium!.page.setInputFiles('#file', { name: 'tiny.gguf', mimeType: 'application/octet-stream', buffer: fs.readFileSync(file) });
    await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { loaded: boolean } }).longlora?.loaded === true, undefined, { timeout: 60_000 });
    for (let round = 0; round < 2; round++) {
      await chromium!.page.click('#run');
      await chromium!.page.waitForFunction(() => ((globalThis as { longlora?: { ids: number[] } }).longlora?.ids.length ?? 0) >= 5, undefined, { timeout: 60_000 });
      await chromium!.page.click('#stop');
      await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { done?: boolean } }).longlora?.done === true, undefined, { timeout: 30_000 });
      const r = await state();
      t.diagnostic(`round ${round + 1}: ${r.ids.length} tokens, then: ${r.status}`);
      assert.equal(r.error, undefined);
      assert.match(r.status, /; stopped; note: the prompt's \d+ tokens and up to 100000 new ones exceed the 256 positions the model covers$/);
      assert.ok(r.ids.length < 100000);
    }
    assert.deepEqual(chromium!.pageErrors, []);
  });

  it('the browser example refuses a ?steps that is no whole number, saying so in the page', async (t) => {
    if (unavailable) { t.skip(unavailable); return; }
    for (const steps of ['abc', '0', '2.5']) {
      await chromium!.page.goto(`${chromium!.server.origin}/examples/browser/?steps=${steps}`);
      await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { done?: boolean } }).longlora?.done === true, undefined, { timeout: 30_000 });
      const r = await chromium!.page.evaluate(() => {
        const g = globalThis as unknown as { longlora: { error?: string; losses: number[] }; document: { querySelector(s: string): { textContent: string } } };
        return { error: g.longlora.error, losses: g.longlora.losses.length, status: g.document.querySelector('#status').textContent };
      }, undefined);
      t.diagnostic(`?steps=${steps}: ${r.status}`);
      assert.match(r.status, new RegExp(`^failed: \\?steps=${steps.replace('.', '\\.')} is not a whole number of at least 1; try \\?steps=40$`));
      assert.equal(r.losses, 0);
    }
    assert.deepEqual(chromium!.pageErrors, []);
  });

  for (const asked of [null, 'wasm', 'webgpu'] as const) {
    it(`runs the browser example${asked ? ` on ${asked}` : ' on the automatic choice'}: LongLoRA training with S²-Attn in a Web Worker, generation, the adapter offered for download`, async (t) => {
      if (unavailable) { t.skip(unavailable); return; }
      if (asked === 'webgpu' && noWebGpu) { t.skip(noWebGpu); return; }
      const { auto } = await inPage<PageEnvironment>('environment');
      await chromium!.page.goto(`${chromium!.server.origin}/examples/browser/?steps=8${asked ? `&backend=${asked}` : ''}`);
      await chromium!.page.waitForFunction(() => (globalThis as { longlora?: { done?: boolean } }).longlora?.done === true, undefined, { timeout: 120_000 });
      const r = await chromium!.page.evaluate(() => {
        const g = globalThis as unknown as { longlora: { backend: string; losses: number[]; generated?: number[]; error?: string }; document: { querySelectorAll(s: string): ArrayLike<{ getAttribute(a: string): string | null }> } };
        const links = Array.from(g.document.querySelectorAll('a[download]')).map((a) => a.getAttribute('download'));
        return { ...g.longlora, links };
      }, undefined);
      t.diagnostic(`example on ${r.backend}: losses ${r.losses.map((l) => l.toFixed(3)).join(' ')}`);
      assert.equal(r.error, undefined);
      assert.equal(r.backend, asked ?? auto, 'the backend asked for, else the automatic choice (a software WebGPU adapter is passed over)');
      assert.equal(r.losses.length, 8);
      assert.equal(r.generated?.length, 12, 'the example generates after training');
      assert.ok(r.losses[7]! < r.losses[0]!, 'the example\'s loss falls');
      assert.deepEqual([...r.links].sort(), ['adapter_config.json', 'adapter_model.safetensors', 'longlora.json', 'trainable_params.safetensors']);
      assert.deepEqual(chromium!.pageErrors, []);
    });
  }
});
