/**
 * The data and evaluation commands as a user runs them: tokenize, eval ppl, eval passkey,
 * generate, chat (piped), flops — outputs, JSON reports, and clear errors.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, goldenDir } from '../helpers/fixtures.js';
import { tempFolders } from '../helpers/tmp.js';
import { LLAMA_BPE, TINY_96 } from '../tokenizer/fixtures.js';

const fresh = tempFolders('eval-cli');
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = ['--model', goldenDir('tiny-llama'), '--tokenizer', TINY_96, '--backend', 'cpu'];

function cli(args: string[], input?: string): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function corpus(): string {
  const dir = path.join(fresh(), 'docs');
  fs.mkdirSync(dir);
  for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(dir, `d${i}.txt`), 'The grass is green. The sky is blue. Here we go. '.repeat(30 + i));
  return dir;
}

describe('longlora data and evaluation commands', () => {
  it('flops: the attention share of Llama-2 7B at 8k and 64k, dense and S²-Attn', () => {
    const r = cli(['flops', '--seq-lens', '8k,64k', '--memory']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^8192 .* 24\.5% .* 7\.5%$/m);
    assert.match(r.out, /^65536 .* 72\.2% .* 39\.4%$/m);
    assert.match(r.out, /activation memory of one training sequence/);
    const g = cli(['flops', '--model', '70b', '--seq-lens', '4096']);
    assert.equal(g.code, 0, g.err);
    assert.match(g.out, /Llama-2 70B: .*Hkv 8/);
  });

  it('tokenize: a folder into a token file, reused the second time; SFT records with a report', () => {
    const dir = corpus();
    const out = path.join(path.dirname(dir), 'train.bin');
    const a = cli(['tokenize', dir, '--tokenizer', TINY_96, '--output', out]);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /tokens from 3 document\(s\) in .*train\.bin \(uint16; built\)/);
    assert.ok(fs.existsSync(`${out}.json`));
    assert.match(cli(['tokenize', dir, '--tokenizer', TINY_96, '--output', out]).out, /cache reused/);
    const other = path.join(path.dirname(dir), 'notes.bin');
    fs.writeFileSync(other, 'not tokens');
    const refused = cli(['tokenize', dir, '--tokenizer', TINY_96, '--output', other]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /--output .*notes\.bin exists and is not a token file written by longlora/);
    assert.equal(fs.readFileSync(other, 'utf8'), 'not tokens', 'left as it was');
    const sft = path.join(path.dirname(dir), 'sft.jsonl');
    fs.writeFileSync(sft, '{"instruction": "Hi", "output": "Hello"}\n{"instruction": "x"}\n');
    const b = cli(['tokenize', sft, '--tokenizer', TINY_96, '--format', 'sft', '--seq-len', '64', '--bad-records', 'skip']);
    assert.equal(b.code, 0, b.err);
    assert.match(b.out, /1 of 1 record\(s\) kept; 1 bad record\(s\) skipped/);
    assert.match(b.err, /sft\.jsonl:2: no "output" string field/);
  });

  it('eval ppl: both procedures at two lengths, a table and JSON that name the procedure', () => {
    const dir = corpus();
    const json = path.join(path.dirname(dir), 'ppl.json');
    const r = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16,32', '--max-windows', '2', '--max-tokens', '900', '--json', json]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^windowed +16 +step 256 +[\d.]+ +[\d.]+ +\d+\/\d+/m);
    assert.match(r.out, /^sliding +32 +stride 16 /m);
    assert.match(r.out, /windowed: the official eval\.py/);
    assert.match(r.err, /tokens \d+\/\d+/);
    const rep = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ procedure: string; seqLen: number; ppl: number; description: string }> };
    assert.deepEqual(rep.results.map((x) => `${x.procedure}@${x.seqLen}`), ['windowed@16', 'sliding@16', 'windowed@32', 'sliding@32']);
    assert.ok(rep.results.every((x) => x.ppl > 1 && x.description.length > 10));
  });

  it('eval ppl on a pre-tokenized .bin needs no tokenizer', () => {
    const dir = fresh();
    const bin = path.join(dir, 'test.bin');
    fs.writeFileSync(bin, new Uint8Array(Uint16Array.from({ length: 600 }, (_, i) => (i * 7) % 96).buffer));
    const r = cli(['eval', 'ppl', '--model', goldenDir('tiny-llama'), '--backend', 'cpu', '--data', bin, '--seq-len', '16', '--procedure', 'sliding']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /tokenizer: none \(not needed for pre-tokenized data\)/);
    assert.match(r.out, /^sliding\s+16\s/m);
    const t = cli(['eval', 'ppl', '--model', goldenDir('tiny-llama'), '--backend', 'cpu', '--data', corpus(), '--seq-len', '16']);
    assert.equal(t.code, 1);
    assert.match(t.err, /has no tokenizer\.json to tokenize .*; pass --tokenizer/);
  });

  it('eval ppl on a .bin that longlora tokenize wrote: another tokenizer\'s data and an SFT set are refused by name', () => {
    const dir = corpus();
    const other = path.join(path.dirname(dir), 'other.bin');
    assert.equal(cli(['tokenize', dir, '--tokenizer', LLAMA_BPE, '--output', other]).code, 0);
    const r = cli(['eval', 'ppl', ...MODEL, '--data', other, '--seq-len', '16']);
    assert.equal(r.code, 1);
    assert.match(r.err, /other\.bin was tokenized with .* \(vocabulary \d+\), not with the model's tokenizer .* \(vocabulary 96\)/);
    const sft = path.join(path.dirname(dir), 'sft.jsonl');
    fs.writeFileSync(sft, '{"instruction": "Hi", "output": "Hello there"}\n'.repeat(4));
    const set = path.join(path.dirname(dir), 'sft.bin');
    assert.equal(cli(['tokenize', sft, '--tokenizer', TINY_96, '--format', 'sft', '--seq-len', '64', '--output', set]).code, 0);
    const s = cli(['eval', 'ppl', ...MODEL, '--data', set, '--seq-len', '16']);
    assert.equal(s.code, 1);
    assert.match(s.err, /sft\.bin is an SFT set written by longlora tokenize --format sft .*not a stream of text tokens/);
  });

  it('eval passkey: accuracy per length as a table and JSON', () => {
    const json = path.join(fresh(), 'pk.json');
    const r = cli(['eval', 'passkey', ...MODEL, '--lengths', '200', '--trials', '2', '--json', json]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^200 +\d+ +0\/2 +0\.00/m);
    const rep = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ accuracy: number; trials: Array<{ passkey: string }> }> };
    assert.deepEqual(rep.results[0]!.trials.map((t) => t.passkey), ['43568', '33004'], 'the official keys of seeds 0 and 1');
  });

  it('generate: greedy output is reproducible, from a flag or stdin; tokens/s reported', () => {
    const a = cli(['generate', ...MODEL, '--prompt', 'The sky is', '--greedy', '--max-new-tokens', '12']);
    assert.equal(a.code, 0, a.err);
    assert.match(a.err, /12 tokens in [\d.]+ s \([\d.]+ tokens\/s decoding\); prompt \d+ tokens/);
    const b = cli(['generate', ...MODEL, '--greedy', '--max-new-tokens', '12'], 'The sky is');
    assert.equal(b.out, a.out);
    const s1 = cli(['generate', ...MODEL, '--prompt', 'The sky is', '--max-new-tokens', '12', '--seed', '5']);
    const s2 = cli(['generate', ...MODEL, '--prompt', 'The sky is', '--max-new-tokens', '12', '--seed', '5']);
    assert.equal(s1.out, s2.out, 'seeded sampling is reproducible');
    const h = cli(['generate', ...MODEL, '--prompt', 'The sky is', '--greedy', '--max-new-tokens', '12', '--kv-cache-dtype', 'bf16']);
    assert.equal(h.code, 0, h.err);
    assert.match(h.err, /12 tokens in /, 'a 16-bit KV cache generates as well');
    const p = cli(['generate', ...MODEL, '--prompt', 'The sky is', '--greedy', '--max-new-tokens', '12', '--prefill-chunk', '2']);
    assert.equal(p.code, 0, p.err);
    assert.equal(p.out, a.out, 'the prompt in pieces of 2 tokens: the same greedy text');
    assert.match(p.err, /prompt tokens \d+\/\d+/, 'a progress line for the prompt');
  });

  it('generate: the text continues the prompt (its first word keeps its space); a context note; the prompt read as UTF-8', () => {
    const tiny = ['--model', path.join(ROOT, 'models', 'tiny-longlora'), '--backend', 'cpu'];
    const a = cli(['generate', ...tiny, '--prompt', 'In the beginning', '--greedy', '--max-new-tokens', '8']);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /^ \S/, `the continuation starts with the space before its first word: ${JSON.stringify(a.out)}`);
    assert.doesNotMatch(a.err, /note: .*positions the model covers/);
    const long = cli(['generate', ...tiny, '--prompt', 'In the beginning', '--greedy', '--max-new-tokens', '1k']);
    assert.equal(long.code, 0, long.err);
    assert.match(long.err, /note: the prompt's \d+ tokens and up to 1024 new ones exceed the 256 positions the model covers; .*--context-size \d+/);
    const dir = fresh();
    const file = path.join(dir, 'prompt.txt');
    fs.writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('In the beginning')]));
    const bom = cli(['generate', ...tiny, '--prompt-file', file, '--greedy', '--max-new-tokens', '8']);
    assert.equal(bom.out, a.out, 'a byte-order mark is not part of the prompt');
    fs.writeFileSync(file, Buffer.from([0x49, 0x6e, 0xe9, 0x20, 0x74]));
    assert.match(cli(['generate', ...tiny, '--prompt-file', file, '--max-new-tokens', '2']).err, /note: prompt file .* is not valid UTF-8/);
    const folder = cli(['generate', ...tiny, '--prompt-file', dir]);
    assert.equal(folder.code, 1);
    assert.match(folder.err, /--prompt-file .* is a folder; give a text file/);
    assert.match(cli(['generate', ...tiny, '--prompt', 'x', '--stop', '']).err, /--stop needs a non-empty string/);
    assert.match(cli(['generate', ...tiny, '--prompt', 'x', '--greedy', '--temperature=0.8']).err, /--greedy always takes the most likely token, so --temperature would have no effect/);
    assert.match(cli(['generate', ...tiny, '--prompt', 'x', '--chat-template', 'llama2']).err, /--chat-template is the template --template chat renders; add --template chat/);
  });

  it('generate and chat on a model with a sliding window: a generation that cannot fit is refused before it starts; chat goes on', () => {
    const dir = path.join(fresh(), 'mistral');
    fs.cpSync(path.join(ROOT, 'models', 'tiny-longlora'), dir, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 24 }));
    const g = cli(['generate', '--model', dir, '--backend', 'cpu', '--prompt', 'In the beginning', '--greedy', '--max-new-tokens', '40']);
    assert.equal(g.code, 1);
    assert.equal(g.out, '', 'nothing generated before the error');
    assert.match(g.err, /generation: the prompt's 5 tokens and up to 40 new ones \(--max-new-tokens 19 fits in the window\): 45 tokens exceed the model's sliding_window \(24\)/);
    const c = cli(['chat', '--model', dir, '--backend', 'cpu', '--greedy', '--max-new-tokens', '4'], 'Hi\nand a much longer second message that cannot fit\nHi\n');
    assert.equal(c.code, 0, c.err);
    assert.match(c.err, /sliding_window \(24\)[^]*that message was not answered/);
    assert.equal(c.out.split('\n').filter(Boolean).length, 1, 'the first turn answered, the second refused, the third refused too (the conversation still holds the first)');
  });

  it('chat: piped turns, /reset and /quit', () => {
    const r = cli(['chat', ...MODEL, '--max-new-tokens', '6', '--greedy'], 'Hi there\n/reset\nHi there\n/quit\nnever read\n');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split('\n').filter(Boolean);
    assert.equal(lines.length, 2, r.out);
    assert.equal(lines[0], lines[1], 'after /reset the same question gets the same greedy answer');
    assert.match(r.err, /\(conversation reset\)/);
  });

  it('Ctrl-C: generate stops and still reports (exit 130); chat stops the reply, keeps the conversation, and ends at the prompt', async () => {
    const run = (args: string[]): { child: ReturnType<typeof spawn>; out: () => string; err: () => string; code: Promise<number | null> } => {
      const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      return { child, out: () => out, err: () => err, code: new Promise((r) => child.on('close', r)) };
    };
    const until = async (what: () => boolean, label: string): Promise<void> => {
      const t0 = Date.now();
      while (!what()) {
        if (Date.now() - t0 > 30000) throw new Error(`timed out waiting for ${label}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const g = run(['generate', ...MODEL, '--prompt', 'Hi', '--max-new-tokens', '1000000']);
    await until(() => g.out().length > 20, 'generated text');
    g.child.kill('SIGINT');
    assert.equal(await g.code, 130, g.err());
    assert.match(g.err(), /tokens in .*; stopped: interrupted/);
    const c = run(['chat', ...MODEL, '--max-new-tokens', '1000000']);
    c.child.stdin!.write('Hi there\n');
    await until(() => c.out().length > 20, 'the reply');
    c.child.kill('SIGINT');
    await until(() => /\(stopped; Ctrl-C at the prompt ends the chat\)/.test(c.err()), 'the stop note');
    c.child.kill('SIGINT');
    assert.equal(await c.code, 130, c.err());
  });

  it('clear errors: a tokenizer of another vocabulary, a test set shorter than one window, no model, tensor cores on the CPU, an unknown precision', () => {
    const dir = corpus();
    const a = cli(['eval', 'ppl', '--model', goldenDir('tiny-llama'), '--tokenizer', LLAMA_BPE, '--backend', 'cpu', '--data', dir, '--seq-len', '16']);
    assert.equal(a.code, 1);
    assert.match(a.err, /has 411 tokens but the model .* has 96 embedding rows.*--tokenizer/);
    const bin = path.join(path.dirname(dir), 'tiny.bin');
    fs.writeFileSync(bin, Buffer.alloc(40));
    const b = cli(['eval', 'ppl', ...MODEL, '--data', bin, '--seq-len', '16', '--procedure', 'windowed']);
    assert.equal(b.code, 1);
    assert.match(b.err, /holds 20 tokens: too few for one 16-token window/);
    const gone = cli(['generate', '--model', path.join(dir, 'no-such-model'), '--prompt', 'x']);
    assert.equal(gone.code, 1);
    assert.match(gone.err, /--model .*no-such-model does not exist; give a model folder, a \.gguf file, or a Hub repository/);
    assert.doesNotMatch(gone.err, /Warning:|backend:/, 'refused before a backend is started');
    const c = cli(['generate', '--prompt', 'x']);
    assert.equal(c.code, 1);
    assert.match(c.err, /--model is required/);
    for (const [flag, value, message] of [['--max-new-tokens', '0', /--max-new-tokens must be an integer ≥ 1, got "0"/], ['--top-p', '2', /topP \(--top-p\) must be in \(0, 1\], got 2/],
      ['--kv-cache-dtype', 'f8', /--kv-cache-dtype must be f32, bf16 or f16, got f8/], ['--prefill-chunk', '0', /--prefill-chunk must be an integer ≥ 1, got "0"/]] as const) {
      for (const command of ['generate', 'chat']) {
        const r = cli([command, ...MODEL, '--prompt', 'x', `${flag}=${value}`].filter((a) => command === 'generate' || !a.startsWith('--prompt') && a !== 'x'));
        assert.equal(r.code, 1);
        assert.match(r.err, message);
        assert.doesNotMatch(r.err, /tokenizer:/, `${command}: the flag is checked before the model is loaded`);
      }
    }
    const d = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16', '--tensor-cores']);
    assert.equal(d.code, 1);
    assert.match(d.err, /--tensor-cores runs matmuls on a GPU's tensor cores through the webgpu backend, not cpu; use --device webgpu/);
    const e = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16', '--precision', 'f64']);
    assert.equal(e.code, 1);
    assert.match(e.err, /--precision must be one of f32, bf16, f16, got f64/);
    const pk = cli(['eval', 'passkey', ...MODEL, '--lengths', '100', '--max-tokens', '200']);
    assert.equal(pk.code, 1);
    assert.match(pk.err, /give --lengths, or --max-tokens \(with --interval\) for the official ladder, not both/);
    const ladder = cli(['eval', 'passkey', ...MODEL]);
    assert.match(ladder.err, /passkey: the model covers \d+ positions, less than one step of the ladder \(--interval 1000\); pass --lengths/);
    const trials = cli(['eval', 'passkey', ...MODEL, '--lengths', '100', '--trials', '0']);
    assert.match(trials.err, /--trials must be an integer ≥ 1/);
    assert.doesNotMatch(trials.err, /tokenizer:/, 'checked before the model is loaded');
    const all = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16', '--procedure', 'windowed', '--max-windows', '0']);
    assert.equal(all.code, 0, all.err);
    assert.match(all.out, /windowed\s+16/, '--max-windows 0: every window');
    const j = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16', '--json', dir]);
    assert.equal(j.code, 1);
    assert.match(j.err, /--json .* is a folder; give a file path in it/);
    assert.doesNotMatch(j.err, /tokenizer:/, 'checked before the model is loaded');
    const j2 = cli(['eval', 'ppl', ...MODEL, '--data', dir, '--seq-len', '16', '--json', path.join(dir, 'no', 'such', 'r.json')]);
    assert.match(j2.err, /the folder .* does not exist; create it first/);
    assert.doesNotMatch(a.err + b.err + c.err + d.err + e.err, /at .*\.js:\d+/, 'no stack traces');
  });
});
