/**
 * Headless Chromium for the browser tests and the browser benchmark: Debian's `chromium`
 * (or LONGLORA_CHROMIUM) driven by playwright-core, with WebGPU switched on, opened on the
 * repository's static server. `openChromium` returns why it cannot run instead of throwing
 * when the browser or the driver is missing.
 */
import fs from 'node:fs';
import { serveStatic, type StaticServer } from '../../examples/browser/serve.js';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];
const FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan'];

export interface Page {
  goto(url: string): Promise<unknown>;
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  waitForFunction(fn: () => unknown, arg?: unknown, opts?: { timeout?: number }): Promise<unknown>;
  on(event: 'console' | 'pageerror', fn: (m: { text?: () => string; message?: string }) => void): void;
  setInputFiles(selector: string, files: { name: string; mimeType: string; buffer: Buffer }): Promise<void>;
  click(selector: string): Promise<void>;
}

export interface Chromium {
  page: Page;
  server: StaticServer;
  /** Messages of uncaught errors in the page. */
  pageErrors: string[];
  /** Calls an export of a module under dist/ (e.g. '/dist/test/browser/page.js') inside the page. */
  call<R>(module: string, fn: string, ...args: unknown[]): Promise<R>;
  close(): Promise<void>;
}

interface Browser { newPage(): Promise<Page>; close(): Promise<void> }

/** Launches Chromium on the blank test page, or says why it cannot. */
export async function openChromium(): Promise<Chromium | { unavailable: string }> {
  const asked = process.env.LONGLORA_CHROMIUM;
  if (asked && !fs.existsSync(asked)) return { unavailable: `LONGLORA_CHROMIUM is ${asked}, which does not exist; point it at a Chromium or Chrome binary` };
  const exe = asked || CANDIDATES.find((p) => fs.existsSync(p));
  if (!exe) return { unavailable: 'no Chromium found (install Debian\'s `chromium` package, or set LONGLORA_CHROMIUM to a Chromium or Chrome binary)' };
  let pw: { chromium: { launch(o: { executablePath: string; args: string[]; headless: boolean }): Promise<Browser> } };
  try {
    const spec = 'playwright-core';
    pw = await import(spec) as typeof pw;
  } catch (e) {
    return { unavailable: `playwright-core is not installed (${(e as Error).message.split('\n')[0]}); run npm install` };
  }
  const server = await serveStatic();
  const browser = await pw.chromium.launch({ executablePath: exe, args: FLAGS, headless: true });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => { pageErrors.push(e.message ?? String(e)); });
  await page.goto(`${server.origin}/test/browser/`);
  return {
    page, server, pageErrors,
    call: <R>(module: string, fn: string, ...args: unknown[]) => page.evaluate(async ([url, name, a]) => {
      const m = await import(url) as Record<string, (...x: unknown[]) => Promise<unknown>>;
      return m[name]!(...a);
    }, [module, fn, args] as const) as Promise<R>,
    close: async () => { await browser.close(); await server.close(); },
  };
}
