/**
 * A small static file server for the browser example and the browser tests: serves, on
 * localhost, the repository's built library (dist/) with the two packages its text entry
 * imports (node_modules/@huggingface/), the examples, the browser test pages and the test
 * fixtures, with the headers that make a page cross-origin isolated (SharedArrayBuffer).
 *
 *   npm run example:browser            # then open the printed address
 *   node dist/examples/browser/serve.js --port 8080
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root (this file runs from dist/examples/browser/). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Only these folders are served. */
const SERVED = ['dist/', 'examples/', 'test/fixtures/', 'test/browser/', 'node_modules/@huggingface/'];

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
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404).end('not found'); return; }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        ...(isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {}),
        'cache-control': 'no-store',
      }).end(data);
    });
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

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
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
