/**
 * Hub models without the network: the cache folder rule, reuse of a cached snapshot
 * (offline, and when the Hub cannot be reached), incomplete snapshots, the errors when
 * neither works, which weight files are fetched, and local folders.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cachedSnapshot, hubCacheDir, isRepoId, repoGgufFile, resolveAdapter, resolveGgufFile, resolveModel } from '../../src/io/hub.js';
import { openCheckpoint, writeCheckpoint } from '../../src/io/checkpoint.js';
import { goldenDir } from '../helpers/fixtures.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { Trainer } from '../../src/train/trainer.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('hub');
const COMMIT = 'a'.repeat(40);

/** A cache with org/tiny at `main` → COMMIT, laid out as huggingface_hub lays it out (blobs + symlinks). */
function fakeCache(): string {
  const cache = fresh();
  const repo = path.join(cache, 'models--org--tiny');
  const snap = path.join(repo, 'snapshots', COMMIT);
  fs.mkdirSync(snap, { recursive: true });
  fs.mkdirSync(path.join(repo, 'blobs'));
  fs.mkdirSync(path.join(repo, 'refs'));
  fs.writeFileSync(path.join(repo, 'refs', 'main'), COMMIT);
  for (const f of ['config.json', 'model.safetensors']) {
    const blob = path.join(repo, 'blobs', `${f}-blob`);
    fs.copyFileSync(path.join(goldenDir('tiny-llama'), f), blob);
    fs.symlinkSync(path.relative(snap, blob), path.join(snap, f));
  }
  return cache;
}

const failingFetch = (async () => { throw new TypeError('fetch failed (getaddrinfo ENOTFOUND huggingface.co)'); }) as unknown as typeof fetch;

/**
 * A stand-in for the Hub's HTTP API serving org/tiny at COMMIT (model info, file tree,
 * paths-info, ranged downloads), so the online path runs without the network. Records the
 * paths it served.
 */
function fakeHub(files: Record<string, Buffer>, repo = 'org/tiny'): { fetch: typeof fetch; served: string[]; origins: Set<string> } {
  const served: string[] = [];
  const origins = new Set<string>();
  const oid = (b: Buffer): string => crypto.createHash('sha1').update(b).digest('hex');
  const json = (v: unknown): Response => new Response(JSON.stringify(v), { status: 200, headers: { 'Content-Type': 'application/json' } });
  const f = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    const u = new URL(String(input));
    origins.add(u.origin);
    const p = decodeURIComponent(u.pathname);
    if (p === `/api/models/${repo}/revision/main`) return json({ _id: '1', id: repo, sha: COMMIT, lastModified: '2024-01-01' });
    if (p === `/api/models/${repo}/tree/${COMMIT}`) return json(Object.entries(files).map(([path, b]) => ({ type: 'file', path, size: b.length, oid: oid(b) })));
    if (p === `/api/models/${repo}/paths-info/${COMMIT}`) {
      const { paths } = JSON.parse(String(init?.body)) as { paths: string[] };
      return json(paths.map((path) => ({ type: 'file', path, size: files[path]!.length, oid: oid(files[path]!) })));
    }
    const m = new RegExp(`^/${repo}/resolve/${COMMIT}/(.+)$`).exec(p);
    if (m && files[m[1]!]) {
      const b = files[m[1]!]!;
      const range = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get('Range') ?? '');
      const [a, z] = range ? [Number(range[1]), Math.min(Number(range[2]), b.length - 1)] : [0, b.length - 1];
      if (!range || a > 0 || z > 0) served.push(m[1]!);
      return new Response(b.subarray(a, z + 1), { status: range ? 206 : 200, headers: { 'Content-Range': `bytes ${a}-${z}/${b.length}`, ETag: `"${oid(b)}"` } });
    }
    return new Response('not found', { status: 404 });
  };
  return { fetch: f as unknown as typeof fetch, served, origins };
}

describe('Hugging Face cache', () => {
  it('the cache folder follows huggingface_hub: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub', () => {
    assert.equal(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), '/c');
    assert.equal(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' }), path.join('/h', 'hub'));
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/x' }), path.join('/x', 'huggingface', 'hub'));
    assert.match(hubCacheDir({}), /\.cache[/\\]huggingface[/\\]hub$/);
  });

  it('repository ids versus local paths', () => {
    assert.ok(isRepoId('meta-llama/Llama-2-7b-hf'));
    assert.ok(!isRepoId(goldenDir('tiny-llama')), 'an existing path is local');
    assert.ok(!isRepoId('a/b/c'));
    assert.ok(!isRepoId('../x'));
  });

  it('offline: the cached snapshot is used (refs/main → snapshot), also by commit', async () => {
    const cache = fakeCache();
    const want = path.join(cache, 'models--org--tiny', 'snapshots', COMMIT);
    assert.equal(await resolveModel('org/tiny', { cacheDir: cache, offline: true }), want);
    assert.equal(await resolveModel('org/tiny', { env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' } }), want);
    assert.equal(await resolveModel('org/tiny', { cacheDir: cache, offline: true, revision: COMMIT }), want);
    const { loadLlama } = await import('../../src/models/llama/load.js');
    const m = await loadLlama(want);
    assert.equal(m.config.vocabSize, 96);
    m.dispose();
  });

  it('the Hub unreachable: the cache is used, and said so', async () => {
    const cache = fakeCache();
    const out = sink();
    const dir = await resolveModel('org/tiny', { cacheDir: cache, fetch: failingFetch, out });
    assert.equal(dir, path.join(cache, 'models--org--tiny', 'snapshots', COMMIT));
    assert.match(out.text(), /cannot reach the Hub \(fetch failed.*\); using the cached snapshot/);
  });

  it('neither cache nor Hub: errors that name the cache and the fix', async () => {
    const cache = fresh();
    await assert.rejects(resolveModel('org/none', { cacheDir: cache, offline: true }),
      (e: Error) => e.name === 'LongLoraError' && e.message.includes(`org/none: offline (HF_HUB_OFFLINE) and org/none@main is not in the cache ${cache}`) && e.message.includes('local model folder'));
    await assert.rejects(resolveModel('org/none', { cacheDir: cache, fetch: failingFetch, out: sink() }),
      /org\/none: cannot reach the Hub \(fetch failed.*\) and org\/none@main is not in the cache .*; connect to the internet once, or pass a local model folder/);
    await assert.rejects(resolveModel('./no/such/dir'), /does not exist; pass a model folder, or a Hub repository as org\/name/);
  });

  it('an incomplete snapshot is not used', async () => {
    const cache = fakeCache();
    const snap = path.join(cache, 'models--org--tiny', 'snapshots', COMMIT);
    fs.writeFileSync(path.join(snap, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'x': 'model-00002-of-00002.safetensors' } }));
    assert.match(cachedSnapshot('org/tiny', 'main', cache).why, /incomplete \(weight shard\(s\) missing: model-00002-of-00002\.safetensors\)/);
    await assert.rejects(resolveModel('org/tiny', { cacheDir: cache, offline: true }), /is incomplete/);
    fs.writeFileSync(path.join(snap, 'model.safetensors.index.json'), '{"weight_map": {"x": ');
    assert.match(cachedSnapshot('org/tiny', 'main', cache).why, /incomplete \(model\.safetensors\.index\.json is not valid JSON/);
  });

  it('online: the files a Llama needs land in the standard layout (blobs, snapshot links, refs) and load', async () => {
    const cache = fresh();
    const files: Record<string, Buffer> = {
      'config.json': fs.readFileSync(path.join(goldenDir('tiny-llama'), 'config.json')),
      'model.safetensors': fs.readFileSync(path.join(goldenDir('tiny-llama'), 'model.safetensors')),
      'README.md': Buffer.from('not needed'),
      'pytorch_model.bin': Buffer.from('not needed either'),
    };
    const hub = fakeHub(files);
    const out = sink();
    const dir = await resolveModel('org/tiny', { cacheDir: cache, fetch: hub.fetch, env: { HF_ENDPOINT: 'https://hub.test/' }, out });
    assert.deepEqual([...hub.origins], ['https://hub.test'], 'HF_ENDPOINT is the Hub asked');
    const root = path.join(cache, 'models--org--tiny');
    assert.equal(dir, path.join(root, 'snapshots', COMMIT));
    assert.equal(fs.readFileSync(path.join(root, 'refs', 'main'), 'utf8'), COMMIT);
    assert.ok(fs.lstatSync(path.join(dir, 'model.safetensors')).isSymbolicLink(), 'snapshot files link to blobs');
    assert.deepEqual(fs.readFileSync(path.join(dir, 'model.safetensors')), files['model.safetensors']);
    assert.ok(!fs.existsSync(path.join(dir, 'README.md')) && !fs.existsSync(path.join(dir, 'pytorch_model.bin')), 'only what a Llama needs');
    assert.match(out.text(), /downloading org\/tiny@aaaaaaaa: 2 file\(s\)/);
    assert.equal(await resolveModel('org/tiny', { cacheDir: cache, offline: true }), dir, 'reused offline afterwards');
  });

  it('adapters from the Hub: the PEFT files (and longlora.json) only; a model repository is refused as one', async () => {
    const cache = fresh();
    const files: Record<string, Buffer> = {
      'adapter_config.json': Buffer.from('{"peft_type": "LORA"}'),
      'adapter_model.safetensors': Buffer.from('weights'),
      'longlora.json': Buffer.from('{"format": 1}'),
      'README.md': Buffer.from('a card'),
      'checkpoint-000010/optimizer.safetensors': Buffer.from('not needed'),
    };
    const hub = fakeHub(files, 'me/run');
    const dir = await resolveAdapter('me/run', { cacheDir: cache, fetch: hub.fetch, hubUrl: 'https://hub.test', out: sink() });
    assert.deepEqual(fs.readdirSync(dir).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'longlora.json']);
    for (const f of fs.readdirSync(dir)) assert.deepEqual(fs.readFileSync(path.join(dir, f)), files[f]);
    assert.equal(await resolveAdapter('me/run', { cacheDir: cache, offline: true }), dir, 'reused offline afterwards');
    await assert.rejects(resolveModel('me/run', { cacheDir: cache, offline: true }), /incomplete \(config\.json is missing\)/, 'the snapshot is no model');
    const model = fakeHub({ 'config.json': Buffer.from('{}'), 'model.safetensors': Buffer.from('w') }, 'org/model');
    await assert.rejects(resolveAdapter('org/model', { cacheDir: cache, fetch: model.fetch, hubUrl: 'https://hub.test', out: sink() }),
      /org\/model has no adapter_config\.json or adapter_model\.safetensors: it is not a PEFT LoRA adapter \(for a model, pass it as --model\)/);
    await assert.rejects(resolveAdapter('no/such', { cacheDir: cache, offline: true }), /offline \(HF_HUB_OFFLINE\) and no\/such@main is not in the cache .*; download it once while online, or pass a local adapter folder/);
  });

  it('a GGUF file on the Hub (org/name/path/file.gguf): that one file, cached and reused offline; a missing one names those the repository has', async () => {
    assert.deepEqual(repoGgufFile('bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf'),
      { repo: 'bartowski/Llama-3.2-1B-Instruct-GGUF', file: 'Llama-3.2-1B-Instruct-Q4_K_M.gguf' });
    assert.deepEqual(repoGgufFile('org/tiny/q/m.gguf'), { repo: 'org/tiny', file: 'q/m.gguf' });
    for (const notOne of ['org/tiny', 'm.gguf', 'org/m.gguf', 'org/tiny/../m.gguf', 'org/tiny/m.bin']) assert.equal(repoGgufFile(notOne), null, notOne);
    const files = { 'q/m-Q8_0.gguf': Buffer.from('GGUF one'), 'm-f16.gguf': Buffer.from('GGUF two'), 'README.md': Buffer.from('# tiny') };
    const hub = fakeHub(files);
    const cache = fresh();
    const out = sink();
    const file = await resolveGgufFile('org/tiny/q/m-Q8_0.gguf', { cacheDir: cache, fetch: hub.fetch, hubUrl: 'https://hub.test', out });
    assert.equal(file, path.join(cache, 'models--org--tiny', 'snapshots', COMMIT, 'q', 'm-Q8_0.gguf'));
    assert.deepEqual(fs.readFileSync(file), files['q/m-Q8_0.gguf']);
    assert.deepEqual(hub.served, ['q/m-Q8_0.gguf'], 'only that file');
    assert.match(out.text(), /downloading org\/tiny@aaaaaaaa: 1 file\(s\)/);
    assert.equal(await resolveGgufFile('org/tiny/q/m-Q8_0.gguf', { cacheDir: cache, offline: true }), file, 'reused offline afterwards');
    await assert.rejects(resolveGgufFile('org/tiny/m-f16.gguf', { cacheDir: cache, offline: true }), /org\/tiny: offline \(HF_HUB_OFFLINE\) and the cached snapshot \S+ is incomplete \(m-f16\.gguf missing\); download it once while online, or pass a local GGUF file/);
    await assert.rejects(resolveGgufFile('org/tiny/m-Q4_K_M.gguf', { cacheDir: fresh(), fetch: hub.fetch, hubUrl: 'https://hub.test', out: sink() }),
      /org\/tiny has no file m-Q4_K_M\.gguf; its GGUF files: q\/m-Q8_0\.gguf, m-f16\.gguf/);
  });

  it('online, sharded: the shards the index names, not the other safetensors beside them (Mistral\'s consolidated.safetensors)', async () => {
    const src = fresh();
    const ck = openCheckpoint(goldenDir('tiny-llama'));
    writeCheckpoint(src, ck.names().map((n) => ({ name: n, ...ck.read(n) })), { maxShardBytes: 40_000 });
    ck.close();
    const files: Record<string, Buffer> = { 'config.json': fs.readFileSync(path.join(goldenDir('tiny-llama'), 'config.json')) };
    for (const f of fs.readdirSync(src)) files[f] = fs.readFileSync(path.join(src, f));
    const shards = Object.keys(files).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
    assert.ok(shards.length >= 2, `sharded: ${Object.keys(files).join(', ')}`);
    files['consolidated.safetensors'] = files['model-00001-of-0000' + shards.length + '.safetensors']!;
    const hub = fakeHub(files);
    const cache = fresh();
    const dir = await resolveModel('org/tiny', { cacheDir: cache, fetch: hub.fetch, hubUrl: 'https://hub.test', out: sink() });
    assert.ok(!hub.served.includes('consolidated.safetensors'), `served: ${hub.served.join(', ')}`);
    for (const f of shards) assert.ok(hub.served.includes(f), f);
    const { loadLlama } = await import('../../src/models/llama/load.js');
    const m = await loadLlama(dir);
    assert.equal(m.config.numLayers, 2);
    m.dispose();

    const only = fakeHub({ 'config.json': files['config.json']!, 'consolidated.safetensors': files['consolidated.safetensors']! });
    await assert.rejects(resolveModel('org/tiny', { cacheDir: fresh(), fetch: only.fetch, hubUrl: 'https://hub.test', out: sink() }),
      /has safetensors files \(consolidated\.safetensors\) but not in the Hugging Face layout/);
  });

  it('training a Hub model: the adapter names its base by the repository id, not the cached snapshot folder', async () => {
    const cache = fakeCache();
    const dir = fresh();
    const saved = { cache: process.env.HF_HUB_CACHE, offline: process.env.HF_HUB_OFFLINE };
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      const c = tinyConfig(dir, { model: 'org/tiny', steps: 1 });
      const trainer = await Trainer.create(c, { out: sink() });
      await trainer.run();
      trainer.dispose();
      const cfg = JSON.parse(fs.readFileSync(path.join(c.output, 'adapter_config.json'), 'utf8')) as { base_model_name_or_path: string };
      assert.equal(cfg.base_model_name_or_path, 'org/tiny');
    } finally {
      for (const [k, v] of [['HF_HUB_CACHE', saved.cache], ['HF_HUB_OFFLINE', saved.offline]] as const) {
        if (v === undefined) delete process.env[k]; else process.env[k] = v;
      }
    }
  });

  it('local folders are used as they are', async () => {
    assert.equal(await resolveModel(goldenDir('tiny-llama'), { offline: true }), goldenDir('tiny-llama'));
  });
});
