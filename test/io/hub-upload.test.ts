/**
 * Model cards and `push`: the card a run and a merge write (metadata at the top, the RoPE
 * scaling in the loading snippet), and an upload to a fake Hub over HTTP that speaks the
 * Hub's commit protocol (create, preupload, LFS batch and PUT, NDJSON commit), checked
 * file by file against the folder.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { hubToken } from '../../src/io/hub.js';
import { pushPlan, pushToHub, retargetCard } from '../../src/io/hub-upload.js';
import { adapterCard, CARD_MARK, cardFacts } from '../../src/io/model-card.js';
import { mergeAdapter } from '../../src/lora/adapted.js';
import { exportGguf } from '../../src/models/llama/gguf.js';
import { ROOT } from '../helpers/fixtures.js';
import { Trainer } from '../../src/train/trainer.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('hub-upload');

/** What the fake Hub received. */
interface FakeHub {
  url: string;
  repos: Map<string, { private: boolean }>;
  /** Committed files per repo: path → bytes. */
  commits: Array<{ repo: string; branch: string; title: string; files: Map<string, Buffer> }>;
  tokens: string[];
  close(): Promise<void>;
}

async function body(req: http.IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of req) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A Hub that keeps what it is sent: .safetensors files go through LFS, the rest inline. */
async function fakeHub(): Promise<FakeHub> {
  const lfs = new Map<string, Buffer>();
  const hub: Omit<FakeHub, 'url' | 'close'> = { repos: new Map(), commits: [], tokens: [] };
  const server = http.createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url!, 'http://x');
      const data = await body(req);
      hub.tokens.push(String(req.headers.authorization ?? ''));
      const json = (status: number, v: unknown): void => { res.writeHead(status, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(v)); };
      let m: RegExpExecArray | null;
      if (req.method === 'POST' && u.pathname === '/api/repos/create') {
        const b = JSON.parse(data.toString()) as { name: string; organization: string; visibility?: string };
        const name = `${b.organization}/${b.name}`;
        if (hub.repos.has(name)) return json(409, { error: 'You already created this model repo' });
        hub.repos.set(name, { private: b.visibility === 'private' });
        return json(200, { url: `${addr}/${name}` });
      }
      if (req.method === 'POST' && (m = /^\/api\/models\/(.+)\/preupload\/(.+)$/.exec(u.pathname))) {
        const b = JSON.parse(data.toString()) as { files: Array<{ path: string }> };
        return json(200, { files: b.files.map((f) => ({ path: f.path, uploadMode: f.path.endsWith('.safetensors') ? 'lfs' : 'regular' })) });
      }
      if (req.method === 'POST' && (m = /^\/(.+)\.git\/info\/lfs\/objects\/batch$/.exec(u.pathname))) {
        const b = JSON.parse(data.toString()) as { objects: Array<{ oid: string; size: number }> };
        return json(200, { transfer: 'basic', objects: b.objects.map((o) => ({ ...o, actions: { upload: { href: `${addr}/lfs-upload/${o.oid}` } } })) });
      }
      if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(u.pathname))) {
        assert.equal(crypto.createHash('sha256').update(data).digest('hex'), m[1], 'an LFS object is stored under its sha256');
        lfs.set(m[1]!, data);
        res.writeHead(200); res.end(); return;
      }
      if (req.method === 'POST' && (m = /^\/api\/models\/(.+)\/commit\/(.+)$/.exec(u.pathname))) {
        const lines = data.toString().split('\n').map((l) => JSON.parse(l) as { key: string; value: Record<string, string> });
        const files = new Map<string, Buffer>();
        for (const { key, value } of lines.slice(1)) {
          if (key === 'file') files.set(value.path!, Buffer.from(value.content!, 'base64'));
          else if (key === 'lfsFile') files.set(value.path!, lfs.get(value.oid!)!);
          else throw new Error(`unexpected ${key}`);
        }
        hub.commits.push({ repo: m[1]!, branch: decodeURIComponent(m[2]!), title: lines[0]!.value.summary!, files });
        return json(200, { commitOid: 'c0ffee'.padEnd(40, '0'), commitUrl: `${addr}/${m[1]}/commit/c0ffee` });
      }
      json(404, { error: `no route ${req.method} ${u.pathname}` });
    })().catch((e: Error) => { res.writeHead(500); res.end(e.message); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { ...hub, url: addr, close: () => new Promise((r) => server.close(() => r())) };
}

describe('model cards and push to the Hub', () => {
  let dir = '';
  let run = '';
  before(async () => {
    dir = fresh();
    const c = tinyConfig(dir, { steps: 2, seqLen: 64, saveEvery: 10 });
    run = c.output;
    const t = await Trainer.create(c, { out: sink() });
    await t.run();
    t.dispose();
  });

  it('the card says a run within the base\'s context was fine-tuned there, not extended', () => {
    assert.match(adapterCard(cardFacts(run, { originalContext: 64 })), /A LongLoRA adapter for tiny-llama-short fine-tuned at 64 tokens \(within the 64 the base covers\), with/);
    assert.match(adapterCard(cardFacts(run)), /extended from 8 to 64 tokens/, 'the base folder\'s max_position_embeddings');
  });

  it('a run writes a model card: metadata first, the RoPE scaling PEFT needs in the snippet', () => {
    const card = fs.readFileSync(path.join(run, 'README.md'), 'utf8');
    assert.ok(card.startsWith('---\nlibrary_name: peft\n'), 'the Hub reads metadata only at the very top');
    assert.ok(card.includes(CARD_MARK));
    assert.match(card, /A LongLoRA adapter for tiny-llama-short extended from 8 to 64 tokens, with linear position interpolation ×8\./);
    assert.match(card, /from_pretrained\("tiny-llama-short", rope_scaling=\{"rope_type": "linear", "type": "linear", "factor": 8\.0\}, torch_dtype="auto"\)/);
    assert.match(card, /PeftModel\.from_pretrained\(model, "run"\)/);
    assert.match(card, /- LoRA r=4, alpha 8 on q_proj, k_proj, v_proj, o_proj\n- trained in full .*: embed_tokens, input_layernorm, post_attention_layernorm, norm\n/);
    assert.match(card, /- attention while training: S²-Attn, segmented form, groups of 16 tokens/);
    assert.match(card, /- 2 steps of 2 × 64 tokens \(256 tokens\)/);
  });

  it('a merged model gets its own card; a README.md of the user\'s own is never overwritten', async () => {
    const merged = path.join(dir, 'merged');
    await mergeAdapter(tinyConfig(dir).model!, run, merged);
    const card = fs.readFileSync(path.join(merged, 'README.md'), 'utf8');
    assert.ok(card.startsWith('---\npipeline_tag: text-generation\n'));
    assert.match(card, /`config\.json` carries the `rope_scaling`/);
    assert.match(card, /AutoModelForCausalLM\.from_pretrained\("merged", torch_dtype="auto"\)/);
    fs.writeFileSync(path.join(merged, 'README.md'), '# my own words\n');
    await mergeAdapter(tinyConfig(dir).model!, run, merged);
    assert.equal(fs.readFileSync(path.join(merged, 'README.md'), 'utf8'), '# my own words\n');
    assert.equal(retargetCard('# my own words\n', 'merged', 'me/x'), '# my own words\n');
  });

  it('push uploads the adapter, file by file, to a new private repository; a second push reuses it', async () => {
    const hub = await fakeHub();
    try {
      const out = sink();
      const r = await pushToHub(run, { repo: 'me/tiny-64', private: true, token: 'hf_test', hubUrl: hub.url, out });
      assert.deepEqual(r.files, ['adapter_config.json', 'adapter_model.safetensors', 'longlora.json', 'README.md']);
      assert.equal(r.url, `${hub.url}/me/tiny-64`);
      assert.deepEqual([...hub.repos], [['me/tiny-64', { private: true }]]);
      const c = hub.commits[0]!;
      assert.deepEqual([c.repo, c.branch, c.title], ['me/tiny-64', 'main', 'Upload LongLoRA adapter with longlora']);
      assert.deepEqual([...c.files.keys()].sort(), [...r.files].sort(), 'no checkpoints, no trainable_params duplicate');
      for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'longlora.json']) {
        assert.ok(c.files.get(f)!.equals(fs.readFileSync(path.join(run, f))), `${f} arrives byte for byte`);
      }
      const card = c.files.get('README.md')!.toString();
      assert.match(card, /PeftModel\.from_pretrained\(model, "me\/tiny-64"\)/);
      assert.match(card, /\n# me\/tiny-64\n/);
      assert.match(card, /longlora generate --model tiny-llama-short --adapter me\/tiny-64 --prompt/);
      assert.match(fs.readFileSync(path.join(run, 'README.md'), 'utf8'), /from_pretrained\(model, "run"\)/, 'the local card is left as it is');
      assert.ok(hub.tokens.every((t) => t === 'Bearer hf_test' || t === ''), 'the token is sent');
      assert.match(out.text(), /pushing the LongLoRA adapter in .* to me\/tiny-64 \(4 files/);
      await pushToHub(run, { repo: 'me/tiny-64', token: 'hf_test', hubUrl: hub.url, revision: 'v2', message: 'again', out: sink() });
      assert.deepEqual(hub.commits.map((x) => [x.branch, x.title]), [['main', 'Upload LongLoRA adapter with longlora'], ['v2', 'again']]);
    } finally {
      await hub.close();
    }
  });

  it('push of a model folder sends all of it; bad folders, names and missing tokens are refused with the fix', async () => {
    const hub = await fakeHub();
    try {
      const merged = path.join(dir, 'merged');
      const r = await pushToHub(merged, { repo: 'me/merged', token: 'hf_t', hubUrl: hub.url, out: sink() });
      assert.equal(r.kind, 'model');
      const sent = hub.commits[0]!.files;
      assert.deepEqual([...sent.keys()].sort(), fs.readdirSync(merged).sort());
      for (const f of sent.keys()) assert.ok(sent.get(f)!.equals(fs.readFileSync(path.join(merged, f))), f);
    } finally {
      await hub.close();
    }
    await assert.rejects(pushToHub(dir, { repo: 'me/x', token: 't' }), /is neither an adapter \(adapter_config\.json\) nor a model folder/);
    await assert.rejects(pushToHub(run, { repo: 'no-slash', token: 't' }), /--repo must be "user\/name" or "org\/name"/);
    const empty = fresh();
    await assert.rejects(pushToHub(run, { repo: 'me/x', env: { HF_HOME: empty } }), /no Hugging Face access token; set HF_TOKEN/);
    fs.writeFileSync(path.join(empty, 'token'), 'hf_saved\n');
    assert.equal(hubToken({ HF_HOME: empty }), 'hf_saved');
    assert.equal(hubToken({ HF_HOME: empty, HF_TOKEN: 'hf_env' }), 'hf_env');
    assert.deepEqual(pushPlan(run).kind, 'adapter');
  });

  it('push of a GGUF file sends it with its Modelfile and a card read from its header and its run', async () => {
    // (the shipped model's GGUF, whose tokenizer GGUF takes, placed in the run's folder)
    const gguf = path.join(run, 'model.gguf');
    exportGguf(path.join(ROOT, 'models', 'tiny-longlora'), gguf, { dtype: 'f16' });
    const hub = await fakeHub();
    try {
      const r = await pushToHub(gguf, { repo: 'me/tiny-64-GGUF', token: 'hf_t', hubUrl: hub.url, out: sink() });
      assert.equal(r.kind, 'gguf');
      const sent = hub.commits[0]!.files;
      assert.deepEqual([...sent.keys()].sort(), ['README.md', 'model.Modelfile', 'model.gguf']);
      assert.ok(sent.get('model.gguf')!.equals(fs.readFileSync(gguf)));
      const card = sent.get('README.md')!.toString();
      assert.ok(card.startsWith('---\npipeline_tag: text-generation\ntags:\n- gguf\n'));
      assert.match(card, /# me\/tiny-64-GGUF\n/);
      assert.match(card, /`model\.gguf`: tiny-longlora \(llama\.cpp's `llama` architecture\) for llama\.cpp and ollama, with a context of 256 tokens; tensors \d+ F16, \d+ F32\./);
      assert.match(card, /tiny-llama-short extended from 8 to 64 tokens with LongLoRA/);
      assert.match(card, /ollama create model -f model\.Modelfile/);
      assert.equal(hub.commits[0]!.title, 'Upload GGUF file with longlora');
    } finally {
      await hub.close();
    }
  });
});
