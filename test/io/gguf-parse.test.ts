/**
 * GGUF files read from bytes without Node (gguf-parse.ts, gguf-model.ts: the browser
 * entry's reader): the header parsed from a Uint8Array or a Blob equals what Hugging Face's
 * GGUF parser reads from the file (metadata, tensor list, data offset) for exports of
 * three kinds; the model built from the bytes gives the logits of the model Node loads
 * from the file; the tokenizer of the metadata gives Node's ids (embedded and rebuilt); a
 * file at an http address is read with range requests (and without, where a server ignores
 * them); and cut or foreign bytes, and failed requests, are refused, naming the problem.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseGguf } from '../../src/io/gguf-parse.js';
import { readGgufHeader } from '../../src/io/gguf-read.js';
import { exportGguf, type GgufDType } from '../../src/models/llama/gguf.js';
import { ggufToFolder, ggufTokenizer, loadLlamaGguf } from '../../src/models/llama/gguf-load.js';
import { loadLlama } from '../../src/models/llama/load.js';
import { packedMemory } from '../../src/quant/quantize-model.js';
import { llamaFromGguf } from '../../src/models/llama/gguf-model.js';
import { tokenizerOfGguf } from '../../src/tokenizer/gguf-tokenizer.js';
import { ROOT } from '../helpers/fixtures.js';
import { logitsOf } from '../helpers/forward.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('gguf-parse');
const TINY = path.join(ROOT, 'models', 'tiny-longlora');
const TEXTS = ['The quick brown fox, 1234 times.', '  leading spaces and\nnew lines', 'Naïve café 😀'];

/** A copy of the main job's model (its data left out) with config.json changed by `edit`. */
function edited(edit: (c: Record<string, unknown>) => void): string {
  const dir = path.join(fresh(), 'model');
  fs.cpSync(TINY, dir, { recursive: true, filter: (f) => !f.includes(`${path.sep}data`) });
  const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(c);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
  return dir;
}

/** Exports of the main job's model: f16 with its tokenizer embedded, Llama 3 scaling (rope_freqs) in q8_0, q4_0 with only the tokenizer.ggml vocabulary. */
function exports(): Array<{ label: string; file: string }> {
  const make = (label: string, dir: string, dtype: GgufDType, opts: { embedTokenizer?: boolean } = {}): { label: string; file: string } => {
    const file = path.join(fresh(), 'm.gguf');
    exportGguf(dir, file, { dtype, modelfile: false, ...opts });
    return { label, file };
  };
  return [
    make('f16', TINY, 'f16'),
    make('llama3 q8_0', edited((c) => { c.rope_scaling = { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }; }), 'q8_0'),
    make('q4_0 (tokenizer.ggml only)', TINY, 'q4_0', { embedTokenizer: false }),
  ];
}

describe('GGUF from bytes (the browser entry\'s reader)', () => {
  it('parses the header as Hugging Face\'s parser reads the file: from bytes and from a Blob read in pieces', async (t) => {
    for (const { label, file } of exports()) {
      const want = await readGgufHeader(file);
      const bytes = fs.readFileSync(file);
      for (const src of [new Uint8Array(bytes), new Blob([bytes])]) {
        const got = await parseGguf(src, label);
        assert.deepEqual(got.header.metadata, want.metadata, `${label}: metadata`);
        assert.deepEqual(got.header.tensorInfos, want.tensorInfos, `${label}: tensors`);
        assert.equal(got.header.tensorDataOffset, want.tensorDataOffset, `${label}: data offset`);
        assert.equal(got.size, bytes.length);
      }
      t.diagnostic(`${label}: ${want.tensorInfos.length} tensors, ${Object.keys(want.metadata).length} keys, header ${Number(want.tensorDataOffset).toLocaleString('en')} bytes`);
    }
  });

  it('a Blob whose header is larger than the first piece read is read on until the header is whole, never in full', async () => {
    const { file } = exports()[0]!;
    const want = await readGgufHeader(file);
    const header = Number(want.tensorDataOffset);
    const blob = new Blob([fs.readFileSync(file)]);
    const reads: number[] = [];
    const spy = new Proxy(blob, { get: (b, k) => (k === 'slice' ? (a?: number, e?: number) => { reads.push((e ?? b.size) - (a ?? 0)); return b.slice(a, e); } : Reflect.get(b, k, b)) });
    const got = await parseGguf(spy, 'spy', { firstRead: 1000 });
    assert.deepEqual(got.header.metadata, want.metadata);
    assert.deepEqual(reads, [1000, 3000, 12000, 48000, 192000].slice(0, reads.length), `pieces read: ${reads.join(', ')}`);
    const total = reads.reduce((a, b) => a + b, 0);
    assert.ok(reads.length >= 3 && total < blob.size && total >= header, `read in ${reads.length} pieces, the header (${header} bytes) but not the file (${blob.size})`);
  });

  it('builds the model Node loads from the file (same logits), counting its tensors, and the tokenizer of its metadata gives Node\'s ids', async (t) => {
    for (const { label, file } of exports()) {
      const node = await loadLlamaGguf(file);
      const ids = Int32Array.from({ length: 10 }, (_, i) => (i * 37 + 1) % node.config.vocabSize);
      const want = await logitsOf(node, ids, 1, ids.length);
      const bytes = fs.readFileSync(file);
      for (const src of [new Uint8Array(bytes), bytes, new Blob([bytes])]) { // (a Node Buffer too: its slice() shares memory)
        let ticks = 0;
        const got = await llamaFromGguf(src, { source: label, onTensor: () => { ticks++; } });
        assert.deepEqual(got.config, node.config, `${label}: config`);
        assert.deepEqual(await logitsOf(got.model, ids, 1, ids.length), want, `${label}: logits`);
        assert.equal(ticks, got.model.parameters().length, `${label}: one tick per tensor`);
        got.model.dispose();
        const tok = tokenizerOfGguf(got.metadata, label)!;
        const nodeTok = ggufTokenizer(await readGgufHeader(file), file)!;
        for (const text of TEXTS) assert.deepEqual(tok.encode(text), nodeTok.encode(text), `${label}: ${JSON.stringify(text)}`);
        assert.equal(tok.chatTemplate?.source, nodeTok.chatTemplate?.source);
        assert.match(tok.source, label.includes('tokenizer.ggml') ? /\(tokenizer\.ggml vocabulary\)$/ : /\(embedded tokenizer\)$/);
      }
      node.dispose();
      t.diagnostic(`${label}: logits and ids as in Node`);
    }
  });

  it('refuses bytes that are no GGUF file, an old or cut header, and data cut short, naming the problem', async () => {
    const { file } = exports()[2]!;
    const bytes = new Uint8Array(fs.readFileSync(file));
    await assert.rejects(parseGguf(new TextEncoder().encode('{"not": "gguf"}'), 'x.json'), /x\.json is not a readable GGUF file \(it does not start with "GGUF"\)/);
    const v1 = bytes.slice();
    new DataView(v1.buffer).setUint32(4, 1, true);
    await assert.rejects(parseGguf(v1, 'old.gguf'), /old\.gguf is not a readable GGUF file \(it is GGUF version 1, .*convert the model again/);
    const old = path.join(fresh(), 'old.gguf');
    fs.writeFileSync(old, v1);
    await assert.rejects(readGgufHeader(old), /old\.gguf is not a readable GGUF file \(it is GGUF version 1, .*convert the model again/);
    fs.writeFileSync(old, bytes.subarray(0, 6));
    await assert.rejects(readGgufHeader(old), /old\.gguf is not a readable GGUF file \(it ends at byte 6, inside its header\)/);
    await assert.rejects(parseGguf(bytes.subarray(0, 1000), 'cut.gguf'), /cut\.gguf is not a readable GGUF file \(it ends at byte 1000, inside its header\); .*check that the download is complete/);
    await assert.rejects(parseGguf(new Blob([bytes.subarray(0, 1000)]), 'cut.gguf'), /it ends at byte 1000, inside its header/);
    for (const src of [bytes.subarray(0, bytes.length - 100), new Blob([bytes.subarray(0, bytes.length - 100)])]) {
      await assert.rejects(llamaFromGguf(src, { source: 'short.gguf' }), /short\.gguf ends early \(truncated\?\); download or export it again/);
    }
    // A File (what a page's file picker gives) is named by its own name.
    await assert.rejects(llamaFromGguf(new File([bytes.subarray(0, bytes.length - 100)], 'picked.gguf')), /^LongLoraError: picked\.gguf ends early/);
    await assert.rejects(parseGguf(new File([new TextEncoder().encode('{}')], 'model.safetensors')), /model\.safetensors is not a readable GGUF file/);
    // A dtype that is no weight dtype (a page passes one from its address) is named.
    await assert.rejects(llamaFromGguf(bytes, { source: 'm.gguf', dtype: 'f8' as 'f16' }), /^LongLoraError: m\.gguf: dtype must be f32, f64, bf16, f16, got "f8"$/);
  });

  it('reads a file at an http address with range requests (its size from Content-Range, else a HEAD), or whole where the server ignores ranges; failed requests name the fix', async (t) => {
    const { file, label } = exports()[1]!;
    const bytes = fs.readFileSync(file);
    const header = Number((await readGgufHeader(file)).tensorDataOffset);
    const node = await loadLlamaGguf(file);
    const ids = Int32Array.from([1, 80, 412, 7, 1999, 33]);
    const want = await logitsOf(node, ids, 1, ids.length);
    node.dispose();
    for (const mode of ['ranges', 'ranges, no Content-Range', 'no ranges'] as const) {
      const log: Array<{ method: string; range: string | undefined; sent: number }> = [];
      const server = http.createServer((req, res) => {
        if (req.url !== '/m.gguf') { res.writeHead(404).end(); return; }
        if (req.headers.authorization !== 'Bearer token') { res.writeHead(401).end(); return; }
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (req.method === 'HEAD') { log.push({ method: 'HEAD', range: undefined, sent: 0 }); res.writeHead(200, { 'content-length': bytes.length }).end(); return; }
        if (!m || mode === 'no ranges') { log.push({ method: 'GET', range: req.headers.range, sent: bytes.length }); res.writeHead(200, { 'content-length': bytes.length }).end(bytes); return; }
        const a = Number(m[1]);
        const b = Math.min(Number(m[2]), bytes.length - 1);
        log.push({ method: 'GET', range: req.headers.range, sent: b - a + 1 });
        res.writeHead(206, { ...(mode === 'ranges' ? { 'content-range': `bytes ${a}-${b}/${bytes.length}` } : {}), 'content-length': b - a + 1 }).end(bytes.subarray(a, b + 1));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      try {
        const atTick: number[] = []; // requests served when each weight is on the backend
        const got = await llamaFromGguf(`${url}/m.gguf`, { headers: { Authorization: 'Bearer token' }, firstRead: 4096, onTensor: () => atTick.push(log.length) });
        if (mode !== 'no ranges') assert.deepEqual(atTick.map((n) => n - atTick[0]!), atTick.map((_, i) => i), 'one weight read, then put on the backend, then the next');
        assert.deepEqual(await logitsOf(got.model, ids, 1, ids.length), want, `${label} over http (${mode}): logits`);
        assert.equal(got.source, `${url}/m.gguf`);
        assert.equal(tokenizerOfGguf(got.metadata, got.source)!.source, `${url}/m.gguf (embedded tokenizer)`);
        got.model.dispose();
        const sent = log.reduce((a, r) => a + r.sent, 0);
        if (mode === 'no ranges') assert.equal(log.filter((r) => r.sent === bytes.length).length, 1, 'one whole download');
        else {
          assert.ok(log.every((r) => r.method === 'HEAD' || r.sent < bytes.length), 'never the whole file at once');
          assert.ok(sent <= bytes.length + 4 * header, `${sent} bytes sent for a file of ${bytes.length} (header ${header})`);
          assert.equal(log.filter((r) => r.method === 'HEAD').length, mode === 'ranges' ? 0 : 1);
        }
        t.diagnostic(`${mode}: ${log.length} requests, ${sent.toLocaleString('en')} bytes sent for a file of ${bytes.length.toLocaleString('en')}`);
        if (mode === 'ranges') {
          await assert.rejects(llamaFromGguf(`${url}/m.gguf`), /m\.gguf: HTTP 401 .*needs an access token \(pass headers: \{ Authorization/);
          await assert.rejects(llamaFromGguf(`${url}/other.gguf`, { headers: { Authorization: 'Bearer token' } }), /other\.gguf: HTTP 404 .*; check the address/);
        }
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    }
    await assert.rejects(llamaFromGguf('http://127.0.0.1:1/none.gguf'), /cannot fetch http:\/\/127\.0\.0\.1:1\/none\.gguf \(.*\); check the address and the network/);
  });

  it('quantize: \'nf4\' puts the linear layers in NF4 as they are read: the fingerprint and logits of the folder the file converts into, loaded with quantize nf4', async (t) => {
    const { file } = exports()[0]!;
    const dir = path.join(fresh(), 'hf');
    await ggufToFolder(file, dir, { dtype: 'f32' });
    const want = await loadLlama(dir, { quantize: 'nf4' });
    const ids = Int32Array.from([1, 80, 412, 7, 1999, 33]);
    const logits = await logitsOf(want, ids, 1, ids.length);
    const node = await loadLlamaGguf(file, { quantize: 'nf4' });
    let ticks = 0;
    const web = await llamaFromGguf(new Blob([fs.readFileSync(file)]), { quantize: 'nf4', onTensor: () => { ticks++; } });
    for (const [label, m] of [['loadLlamaGguf', node], ['llamaFromGguf', web.model]] as const) {
      assert.deepEqual(m.quantization, want.quantization, `${label}: what was quantised, and the fingerprint`);
      assert.deepEqual(await logitsOf(m, ids, 1, ids.length), logits, `${label}: logits`);
      assert.equal(packedMemory(m).tensors, 28);
    }
    assert.equal(ticks, 39);
    t.diagnostic(`NF4 from the GGUF file: ${want.quantization!.tensors} layers, fingerprint ${want.quantization!.fingerprint.slice(0, 19)}…, ${packedMemory(node).ratio.toFixed(3)}× their 16-bit memory`);
    for (const m of [want, node, web.model]) m.dispose();
    await assert.rejects(llamaFromGguf(fs.readFileSync(file), { quantize: 'q4' as 'nf4' }), /quantize must be none or nf4, got q4/);
  });
});
