/**
 * A small static file server for the browser example and the browser tests: serves, on
 * localhost, the repository's built library (dist/) with the two packages its text entry
 * imports (node_modules/@huggingface/), the examples, the browser test pages and the test
 * fixtures, the shipped model and the training runs (models/, runs/: the main job's
 * runs/quickstart/model.gguf opens in the GGUF example), with the headers that make a page
 * cross-origin isolated (SharedArrayBuffer) and byte ranges (a GGUF file is read a tensor
 * at a time).
 *
 *   npm run example:browser            # then open the printed address
 *   node dist/examples/browser/serve.js --port 8080
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseStrict } from '../../src/cli/args.js';

/** The repository root (this file runs from dist/examples/browser/). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Only these folders are served. */
const SERVED = ['dist/', 'examples/', 'test/fixtures/', 'test/browser/', 'node_modules/@huggingface/', 'models/', 'runs/'];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm', '.css': 'text/css',
};

export interface StaticServer {
  /** e.g. http://127.0.0.1:41234 (no trailing slash). */
  origin: string;
  close(): Promise<void>;
}

/**
 * Serves `root` on 127.0.0.1 (`port` 0 picks a free one). `isolated: false` leaves out the
 * cross-origin isolation headers (tests of a page without shared memory).
 */
export function serveStatic(root = REPO_ROOT, port = 0, isolated = true): Promise<StaticServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rel = decodeURIComponent(url.pathname).replace(/^\/+/, '');
    if (rel === '') { res.writeHead(302, { location: '/examples/browser/' }).end(); return; }
    const file = path.resolve(root, rel.endsWith('/') ? `${rel}index.html` : rel);
    const inside = path.relative(root, file).split(path.sep).join('/');
    if ((req.method !== 'GET' && req.method !== 'HEAD') || inside.startsWith('..') || !SERVED.some((p) => inside.startsWith(p) || `${inside}/` === p)) {
      res.writeHead(404).end('not found');
      return;
    }
    if (!rel.endsWith('/') && fs.statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
      // A folder asked for without its slash (/examples/browser): its page's relative links need the slash.
      res.writeHead(301, { location: `${url.pathname}/${url.search}` }).end();
      return;
    }
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    if (!stat?.isFile()) { res.writeHead(404).end('not found'); return; }
    const headers = {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      ...(isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {}),
      'cache-control': 'no-store', 'accept-ranges': 'bytes',
    };
    const range = byteRange(req.headers.range, stat.size);
    if (range === 'unsatisfiable') { res.writeHead(416, { 'content-range': `bytes */${stat.size}` }).end(); return; }
    const [start, end] = range ?? [0, stat.size - 1];
    res.writeHead(range ? 206 : 200, {
      ...headers, 'content-length': String(Math.max(0, end - start + 1)),
      ...(range ? { 'content-range': `bytes ${start}-${end}/${stat.size}` } : {}),
    });
    if (req.method === 'HEAD' || end < start) { res.end(); return; }
    fs.createReadStream(file, { start, end }).on('error', () => res.destroy()).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const addr = server.address() as { port: number };
      resolve({
        origin: `http://127.0.0.1:${addr.port}`,
        close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

/**
 * The one byte range of a Range header ("bytes=a-b", "bytes=a-", "bytes=-n") within a file of
 * `size` bytes; null for none (or a form this server does not take, such as several
 * ranges: the whole file is sent), 'unsatisfiable' for one that starts past the end.
 */
export function byteRange(header: string | undefined, size: number): [number, number] | null | 'unsatisfiable' {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') return size === 0 || Number(m[2]) === 0 ? 'unsatisfiable' : [Math.max(0, size - Number(m[2])), size - 1];
  const start = Number(m[1]);
  if (start >= size) return 'unsatisfiable';
  return [start, m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const usage = 'node dist/examples/browser/serve.js [--port 8080]';
  let values: Record<string, unknown>;
  try {
    values = parseStrict(process.argv.slice(2), { port: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, 'serve.js', false, usage).values;
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  if (values.help) { console.log(`usage: ${usage}`); process.exit(0); }
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be a whole number from 0 to 65535 (0: any free port), got '${String(values.port)}'`);
    process.exit(2);
  }
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'src', 'browser.js'))) {
    console.error('dist/src/browser.js is missing; run `npm run build` first');
    process.exit(1);
  }
  serveStatic(REPO_ROOT, port).then((s) => {
    console.log(`serving the browser examples at ${s.origin}/examples/browser/ (training) and ${s.origin}/examples/browser/gguf.html (a GGUF model); Ctrl-C stops`);
  }, (e: Error) => {
    console.error(`cannot serve on port ${port}: ${e.message}; pick another with --port N`);
    process.exit(1);
  });
}
