/**
 * The Wasm backend in a browser against the same backend in Node, in one run on one
 * machine: headless Chromium (as in the browser tests) loads bench/browser-page.ts from
 * dist/ and measures a 1024³ f32 matmul and one LongLoRA training step of the fixed small
 * Llama (8 layers, hidden 512, vocab 32000; S²-Attn, activation checkpointing); Node runs
 * the same function. In the page the worker pool is Web Workers and the calling thread,
 * being a page's main thread, spins instead of sleeping while they finish.
 *
 *   npm run bench:browser [-- --tokens 4096 --matmul 1024 --backend wasm]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { openChromium } from '../test/helpers/chromium.js';
import { measure, type BrowserBenchResult } from './browser-page.js';

const { values: flags } = parseArgs({ options: {
  tokens: { type: 'string', default: '4096' },
  matmul: { type: 'string', default: '1024' },
  backend: { type: 'string', default: 'wasm' },
} });
const N = Number(flags.tokens);
const n = Number(flags.matmul);
if (!(Number.isInteger(N) && N >= 256 && N % 4 === 0)) throw new Error(`--tokens must be a multiple of 4 and at least 256, got ${flags.tokens}`);
if (!(Number.isInteger(n) && n >= 64)) throw new Error(`--matmul must be an integer ≥ 64, got ${flags.matmul}`);

console.log(`# ${flags.backend} in headless Chromium against Node ${process.version}, ${os.cpus().length} cores; ${new Date().toISOString().slice(0, 10)}`);
const chromium = await openChromium();
if ('unavailable' in chromium) {
  console.error(`cannot run: ${chromium.unavailable}`);
  process.exit(1);
}
const ua = await chromium.page.evaluate(() => (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent ?? '', undefined);
console.log(`# page: ${ua.match(/(Headless)?Chrome\/[\d.]+/)?.[0] ?? ua}`);
let page: BrowserBenchResult;
try {
  page = await chromium.call<BrowserBenchResult>('/dist/bench/browser-page.js', 'measure', flags.backend, n, N);
} finally {
  await chromium.close();
}
const node = await measure(flags.backend!, n, N);
const row = (where: string, r: BrowserBenchResult): string =>
  `| ${where} | ${r.threads}${r.flavour ? `, ${r.flavour}` : ''} | ${r.matmulGflops.toFixed(1)} | ${r.trainTokensPerSecond.toFixed(1)} | ${r.trainSeconds.toFixed(1)} | ${r.loss.toFixed(4)} |`;
console.log(`| where | threads, build | ${n}³ matmul GFLOP/s | S²-Attn step at ${N} tokens: tokens/s | step s | loss |`);
console.log('|---|---:|---:|---:|---:|---:|');
console.log(row('Chromium page', page));
console.log(row('Node', node));
console.log(`page / Node: matmul ${(page.matmulGflops / node.matmulGflops).toFixed(2)}×, training step ${(page.trainTokensPerSecond / node.trainTokensPerSecond).toFixed(2)}×`);
process.exit(0); // the Wasm worker threads are unref'd; the exit is only for speed
