/**
 * The browser example's static server, checked in Node (no browser needed): what it
 * serves, with the cross-origin isolation headers, and what it refuses.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { serveStatic, type StaticServer } from '../../examples/browser/serve.js';

describe('the browser example\'s server', () => {
  let server: StaticServer;
  before(async () => { server = await serveStatic(); });
  after(async () => { await server.close(); });

  it('serves the example pages cross-origin isolated, a folder asked for without its slash too', async () => {
    const page = await fetch(`${server.origin}/examples/browser/?steps=3`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(page.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await page.text(), /<script type="module" src="\.\/main\.js">/);
    const bare = await fetch(`${server.origin}/examples/browser?steps=3`, { redirect: 'manual' });
    assert.equal(bare.status, 301);
    assert.equal(bare.headers.get('location'), '/examples/browser/?steps=3', 'the page\'s relative module addresses need the slash');
    assert.equal((await fetch(`${server.origin}/examples/browser`)).status, 200);
    const head = await fetch(`${server.origin}/dist/src/browser.js`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-type'), 'text/javascript; charset=utf-8');
  });

  it('serves nothing outside its folders', async () => {
    for (const p of ['/package.json', '/src/browser.ts', '/examples/../package.json', '/examples/browser/nothing.js', '/models/tiny-longlora/config.json']) {
      assert.equal((await fetch(`${server.origin}${p}`)).status, 404, p);
    }
    assert.equal((await fetch(`${server.origin}/examples/browser/`, { method: 'POST' })).status, 404);
  });
});
