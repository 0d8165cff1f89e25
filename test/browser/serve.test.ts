/**
 * The browser example's static server, checked in Node (no browser needed): what it
 * serves, with the cross-origin isolation headers, and what it refuses.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { byteRange, serveStatic, type StaticServer } from '../../examples/browser/serve.js';

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
    for (const p of ['/package.json', '/src/browser.ts', '/examples/../package.json', '/examples/browser/nothing.js', '/scripts/', '/models/../README.md', '/runs']) {
      assert.equal((await fetch(`${server.origin}${p}`)).status, 404, p);
    }
    assert.equal((await fetch(`${server.origin}/examples/browser/`, { method: 'POST' })).status, 404);
  });

  it('serves the shipped model with byte ranges (a GGUF file is read a tensor at a time)', async () => {
    const url = `${server.origin}/models/tiny-longlora/model.safetensors`;
    const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
    const part = await fetch(url, { headers: { range: 'bytes=8-23' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 8-23/${whole.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), whole.subarray(8, 24));
    const tail = await fetch(url, { headers: { range: 'bytes=-4' } });
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), whole.subarray(whole.length - 4));
    assert.equal((await fetch(url, { headers: { range: `bytes=${whole.length}-` } })).status, 416);
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.headers.get('content-length'), String(whole.length));
    assert.equal(head.headers.get('accept-ranges'), 'bytes');
    assert.deepEqual([byteRange(undefined, 10), byteRange('bytes=0-3,5-6', 10), byteRange('bytes=2-99', 10), byteRange('bytes=-0', 10)], [null, null, [2, 9], 'unsatisfiable']);
  });
});
