/** The command line, run as a user runs it (a child process on the built entry). */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, goldenDir } from './helpers/fixtures.js';
import { tempFolders } from './helpers/tmp.js';
import { tokenFile } from './helpers/train.js';
import { gguf as readGguf } from '@huggingface/gguf';
import { exportGguf } from '../src/models/llama/gguf.js';

const fresh = tempFolders('cli');
const TRAIN_ARGS = ['--seq-len', '32', '--grad-accum', '2', '--lr', '1e-2', '--warmup-steps', '1', '--lora-r', '4', '--backend', 'cpu'];

const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function cli(...args: string[]): { code: number | null; out: string; err: string } {
  return cliWith(process.env, ...args);
}

function cliWith(env: NodeJS.ProcessEnv, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('longlora command line', () => {
  it('demo: parity with PyTorch and a falling loss', () => {
    const r = cli('demo', '--steps', '10');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /parity with PyTorch/);
    const m = /loss ([\d.]+) → ([\d.]+)/.exec(r.out);
    assert.ok(m, r.out);
    assert.ok(Number(m[2]) < Number(m[1]) / 2, `loss fell: ${m[0]}`);
  });

  it('info describes a model folder', () => {
    const r = cli('info', path.join(ROOT, 'test', 'fixtures', 'golden', 'tiny-llama'), '--tensors');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Llama, 2 layers, hidden 32/);
    assert.match(cli('info', goldenDir('tiny-qwen2')).out, /Qwen 2, 2 layers.*\n.*tied embeddings yes, biases on q, k, v\n/);
    assert.match(cli('info', goldenDir('tiny-qwen3')).out, /Qwen 3, 2 layers.*head dim 16.*\n.*q\/k head norms\n/);
    assert.match(r.out, /model\.layers\.1\.mlp\.down_proj\.weight\s+F32\s+\[32, 64\]/);
  });

  it('usage errors: unknown command, unknown option, bad path', () => {
    const a = cli('frobnicate');
    assert.equal(a.code, 2);
    assert.match(a.err, /unknown command 'frobnicate'/);
    const b = cli('info', '--bogus');
    assert.equal(b.code, 2);
    assert.match(b.err, /unknown option '--bogus' for longlora info \(`longlora info --help` lists the options\)/);
    const m = cli('merge', '--base', 'b', '--adapter', 'a', '--output', 'o');
    assert.equal(m.code, 2);
    assert.match(m.err, /unknown option '--output' for longlora merge; did you mean --out\?/);
    const c = cli('info', path.join(ROOT, 'no-such-model'));
    assert.equal(c.code, 1);
    assert.match(c.err, /no-such-model does not exist; check the path/);
    assert.doesNotMatch(c.err, /at .*\.js:\d+/, 'no stack trace for user errors');
  });

  it('tokenize --format sft: conversations through a chat template file, and the flag it needs', () => {
    const dir = fresh();
    const data = path.join(dir, 'chats.jsonl');
    fs.writeFileSync(data, [
      { messages: [{ role: 'user', content: 'What is the pass key?' }, { role: 'assistant', content: 'It is 4821.' }] },
      { conversations: [{ from: 'human', value: 'Colour?' }, { from: 'gpt', value: 'Blue.' }, { from: 'human', value: 'Sure?' }, { from: 'gpt', value: 'Yes.' }] },
    ].map((r) => JSON.stringify(r)).join('\n'));
    const jinja = path.join(dir, 'chat.jinja');
    fs.writeFileSync(jinja, '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% if m.role == "assistant" %}{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}');
    const tok = path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'llama-bpe');
    const out = path.join(dir, 'chats.bin');
    const r = cli('tokenize', data, '--tokenizer', tok, '--format', 'sft', '--seq-len', '256', '--sft-template', 'chat', '--chat-template', jinja, '--output', out);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /2 of 2 record\(s\) kept; 2 of the records are conversations; .* response tokens carry labels\n[\d,]+ tokens in .*chats\.bin \(built\)/);
    for (const f of ['chats.bin', 'chats.idx', 'chats.spans', 'chats.bin.json']) assert.ok(fs.existsSync(path.join(dir, f)), f);
    const bad = cli('tokenize', data, '--tokenizer', tok, '--format', 'sft', '--seq-len', '256', '--chat-template', jinja);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--chat-template renders SFT conversations: it needs --format sft --sft-template chat/);
    const text = cli('tokenize', data, '--tokenizer', tok, '--chat-template', jinja);
    assert.equal(text.code, 1);
    assert.match(text.err, /it needs --format sft --sft-template chat/);
  });

  it('push: the folder, the repository and a token are asked for by name', () => {
    const dir = fresh();
    const run = path.join(dir, 'run');
    fs.mkdirSync(run);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) fs.writeFileSync(path.join(run, f), '{}');
    const env = { ...process.env, HF_TOKEN: '', HUGGING_FACE_HUB_TOKEN: '', HF_TOKEN_PATH: '', HF_HOME: dir };
    assert.match(cliWith(env, 'push', run).err, /push: --repo user\/name is required/);
    assert.match(cliWith(env, 'push', '--repo', 'me/x').err, /push: give one folder or \.gguf file to push, got 0/);
    const r = cliWith(env, 'push', run, '--repo', 'me/x');
    assert.equal(r.code, 1);
    assert.match(r.err, /no Hugging Face access token; set HF_TOKEN to a token with write access/);
    assert.match(cliWith(env, 'push', dir, '--repo', 'me/x').err, /is neither an adapter \(adapter_config\.json\) nor a model folder/);
  });

  it('backends: each backend with what it runs on (or why it cannot start), and which auto picks', () => {
    const r = cli('backends');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^cpu\s+plain TypeScript loops, f32 and f64/m);
    assert.match(r.out, /^wasm\s+(WebAssembly (relaxed SIMD \(fused multiply-add\)|SIMD) on \d+ threads?|unavailable: \S)/m);
    assert.match(r.out, /^webgpu\s+\S/m);
    assert.match(r.out, /--backend auto picks (cpu|wasm|webgpu)/);
    // with --tensor-cores, WebGPU (where it starts) says whether it has them
    const t = cli('backends', '--tensor-cores');
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /^webgpu\s+(unavailable: |.*; (no )?subgroup-matrix matmul)/m);
  });

  it('--help lists the commands', () => {
    const r = cli('--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /demo/);
    assert.match(r.out, /info/);
    assert.match(cli('--version').out, /^longlora \d+\.\d+\.\d+\n$/);
    const h = cli('help', 'generate');
    assert.equal(h.code, 0);
    assert.match(h.out, /^usage: longlora generate /);
    const typo = cli('generat');
    assert.equal(typo.code, 2);
    assert.match(typo.err, /unknown command 'generat'\. Did you mean 'generate'\?/);
    assert.equal(cli('eval').code, 2, 'eval without an evaluation is a usage mistake');
    assert.equal(cli('eval', 'perplexity').code, 2);
  });

  it('train, then merge: the main workflow from the command line', () => {
    const dir = fresh();
    const out = path.join(dir, 'run');
    const r = cli('train', '--model', goldenDir('tiny-llama-short'), '--data', tokenFile(dir), '--output', out, '--steps', '3', ...TRAIN_ARGS);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /context: target 32 > original context 8/);
    assert.match(r.err, /S²-Attn \(segmented, group 8\)/);
    assert.match(r.err, /trainable: [\d,]+ of [\d,]+ parameters/);
    assert.match(r.err, /done: 3 steps/);
    assert.ok(fs.existsSync(path.join(out, 'adapter_model.safetensors')));
    const m = cli('merge', '--base', goldenDir('tiny-llama-short'), '--adapter', out, '--out', path.join(dir, 'merged'));
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /merged 8 LoRA layers into .* config\.json carries the adapter's RoPE scaling \(linear ×4\)/);
    // a plain PEFT adapter (no longlora.json): merged with the base's RoPE, and said so
    const plain = path.join(dir, 'plain');
    fs.mkdirSync(plain);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) fs.copyFileSync(path.join(out, f), path.join(plain, f));
    const pm = cli('merge', '--base', goldenDir('tiny-llama-short'), '--adapter', plain, '--out', path.join(dir, 'merged-plain'));
    assert.equal(pm.code, 0, pm.err);
    assert.match(pm.out, /config\.json keeps the base's RoPE/);
    assert.match(pm.err, /has no longlora\.json, so no RoPE scaling came with it/);
    // output paths that cannot be folders are refused before anything runs
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const mf = cli('merge', '--base', goldenDir('tiny-llama-short'), '--adapter', out, '--out', file);
    assert.equal(mf.code, 1);
    assert.match(mf.err, /--out .*a-file is a file; give a folder/);
    for (const [o, re] of [[file, /--output .*a-file is a file; give a folder/], [path.join(file, 'sub'), /a-file is a file, so the folder cannot be created there/]] as const) {
      const t = cli('train', '--model', goldenDir('tiny-llama-short'), '--data', tokenFile(dir), '--output', o, '--steps', '3', ...TRAIN_ARGS);
      assert.equal(t.code, 1);
      assert.match(t.err, re);
      assert.doesNotMatch(t.err, /trainable:|at .*\.js:\d+/, 'refused before the model is loaded, without a stack trace');
    }
    // a dry run writes nothing
    const dry = path.join(dir, 'dry');
    const d = cli('train', '--model', goldenDir('tiny-llama-short'), '--data', tokenFile(dir), '--output', dry, '--steps', '3', '--dry-run', ...TRAIN_ARGS);
    assert.equal(d.code, 0, d.err);
    assert.ok(!fs.existsSync(dry), 'no output folder after --dry-run');
    const i = cli('info', out, '--tensors');
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /run: a LongLoRA adapter \(PEFT\) for tiny-llama-short extended from 8 to 32 tokens, with linear position interpolation ×4\n  LoRA r=4, alpha \d+ on q_proj, k_proj, v_proj, o_proj\n  trained in full .*embed_tokens/);
    assert.match(i.out, /  3 steps of 2 × 32 tokens \(192 tokens\)/);
    assert.match(i.out, /base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight\s+F32\s+\[4, 32\]/);
  });

  it('train the bundled model past its context, merge with --gguf, export: GGUF files with the adapter\'s RoPE scaling', async () => {
    const dir = fresh();
    const tiny = path.join(ROOT, 'models', 'tiny-longlora');
    const out = path.join(dir, 'run');
    const r = cli('train', '--model', tiny, '--data', path.join(tiny, 'data', 'train.bin'), '--output', out, '--steps', '1',
      '--seq-len', '512', '--grad-accum', '1', '--lora-r', '4', '--warmup-steps', '1', '--backend', 'wasm');
    assert.equal(r.code, 0, r.err);
    const gguf = path.join(dir, 'merged.gguf');
    const m = cli('merge', '--base', tiny, '--adapter', out, '--out', path.join(dir, 'merged'), '--gguf', gguf);
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /wrote .*merged\.gguf: 39 tensors, weights in f16, [\d.]+ MB, context 512 tokens/);
    assert.match(m.err, /tensors 39\/39/);
    assert.match(m.out, /ollama create NAME -f \S*merged\.Modelfile, which sets num_ctx 512/);
    assert.equal(fs.readFileSync(path.join(dir, 'merged.Modelfile'), 'utf8'),
      '# ollama create merged -f merged.Modelfile   (then: ollama run merged)\nFROM ./merged.gguf\nPARAMETER num_ctx 512\n');
    const { metadata } = await readGguf(gguf, { allowLocalFile: true });
    const meta = metadata as unknown as Record<string, unknown>;
    assert.deepEqual([meta['llama.rope.scaling.type'], meta['llama.rope.scaling.factor'], meta['general.name']], ['linear', 2, 'merged']);
    const e = cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'b.gguf'), '--dtype', 'bf16', '--name', 'x');
    assert.equal(e.code, 0, e.err);
    assert.match(e.out, /weights in bf16/);
    const i = cli('info', path.join(dir, 'b.gguf'), '--tensors');
    assert.equal(i.code, 0, i.err);
    assert.match(i.out, /GGUF v3, llama "x", 4 layers, hidden 128, intermediate 384, heads 4 \(kv 4\)\n  context 512, RoPE base 10000, scaling linear ×2\n  tokenizer llama \(default\), 2048 tokens, and the Hugging Face tokenizer\n  39 tensors \(30 BF16, 9 F32\), 1,377,408 parameters, 16\.0\d bits per weight \(mostly BF16\)\n/);
    assert.match(i.out, /blk\.3\.ffn_down\.weight\s+BF16\s+\[128, 384\]/);
    // The export evaluates as the merged folder does (f16 weights either way), and what a GGUF model cannot take is refused.
    const pplArgs = ['eval', 'ppl', '--data', path.join(tiny, 'data', 'heldout.bin'), '--seq-len', '256', '--procedure', 'windowed', '--max-windows', '2', '--backend', 'cpu'];
    const fromDir = cli(...pplArgs, '--model', path.join(dir, 'merged'));
    const fromGguf = cli(...pplArgs, '--model', gguf); // the file carries its tokenizer
    assert.equal(fromGguf.code, 0, fromGguf.err);
    assert.match(fromGguf.err, /model: \S*merged\.gguf \(GGUF, 4 layers, hidden 128, RoPE linear/);
    const ppl = (o: string): string | undefined => /windowed\s+256\s+step 256\s+([\d.]+)/.exec(o)?.[1];
    assert.ok(ppl(fromDir.out) !== undefined, fromDir.out + fromDir.err);
    assert.equal(ppl(fromGguf.out), ppl(fromDir.out));
    assert.match(fromGguf.err, /tokenizer: \S*merged\.gguf \(embedded tokenizer\)/);
    const bare = path.join(fresh(), 'bare.gguf');
    exportGguf(path.join(dir, 'merged'), bare, { embedTokenizer: false, modelfile: false });
    const rebuilt = cli('generate', '--model', bare, '--prompt', 'x', '--max-new-tokens', '2', '--backend', 'cpu'); // as llama.cpp's conversions: the tokenizer.ggml vocabulary only
    assert.equal(rebuilt.code, 0, rebuilt.err);
    assert.match(rebuilt.err, /tokenizer: \S*bare\.gguf \(tokenizer\.ggml vocabulary\): 2048 tokens; bos <s> \(1\), eos <\/s> \(2\)/);
    assert.equal(cli('generate', '--model', bare, '--tokenizer', path.join(dir, 'merged'), '--prompt', 'x', '--max-new-tokens', '2', '--backend', 'cpu').code, 0);
    // A vocabulary it cannot rebuild (the model's name patched to an unknown one) or none at all (the key renamed):
    // generating says what to pass; evaluating pre-tokenized data needs no tokenizer and says why it has none.
    const patched = (from: string, to: string): string => {
      const bytes = fs.readFileSync(bare);
      const at = bytes.indexOf(Buffer.from(from));
      assert.ok(at > 0 && from.length === to.length, from);
      bytes.write(to, at);
      const file = path.join(fresh(), 'patched.gguf');
      fs.writeFileSync(file, bytes);
      return file;
    };
    const value = (v: string): string => `tokenizer.ggml.model\u0008\u0000\u0000\u0000\u0005\u0000\u0000\u0000\u0000\u0000\u0000\u0000${v}`; // key, type string, length 5, value
    const unknown = patched(value('llama'), value('xxxxx'));
    assert.match(cli('generate', '--model', unknown, '--prompt', 'x', '--backend', 'cpu').err, /its vocabulary is llama\.cpp's "xxxxx" tokenizer; .*pass --tokenizer DIR/);
    const noVocab = patched('tokenizer.ggml.model', 'tokenizer.ggml.xxxxx');
    assert.match(cli('generate', '--model', noVocab, '--prompt', 'x', '--backend', 'cpu').err,
      /patched\.gguf carries no tokenizer \(neither a Hugging Face tokenizer, as files exported here have, nor a tokenizer\.ggml vocabulary\) and \S+ has no tokenizer\.json; pass --tokenizer DIR/);
    for (const [file, why] of [[unknown, /tokenizer: none \(not needed for pre-tokenized data; the file's: .*"xxxxx" tokenizer/], [noVocab, /tokenizer: none \(not needed for pre-tokenized data\)/]] as const) {
      const r = cli(...pplArgs, '--model', file);
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, why);
      assert.equal(ppl(r.out), ppl(fromGguf.out), 'the same model, whatever its tokenizer');
    }
    assert.match(cli(...pplArgs, '--model', gguf, '--adapter', out).err, /with a GGUF model \(\S*merged\.gguf\) the adapter must be a GGUF LoRA file \(longlora export --adapter RUN --out lora\.gguf\); a PEFT adapter folder applies to a model folder/);
    // --quantize nf4 re-quantises the file's linear layers to NF4 as they are read: as the folder with the same f16 values does.
    const nf4 = cli(...pplArgs, '--model', gguf, '--quantize', 'nf4');
    assert.equal(nf4.code, 0, nf4.err);
    assert.match(nf4.err, /weights dequantised to f32, the linear layers then to NF4\); dense attention\nbase: NF4 with double quantisation for 28 linear layers: /);
    assert.notEqual(ppl(nf4.out), ppl(fromGguf.out));
    assert.equal(ppl(nf4.out), ppl(cli(...pplArgs, '--model', path.join(dir, 'merged'), '--quantize', 'nf4').out));
    assert.match(cli(...pplArgs, '--model', gguf, '--quantize', 'q4').err, /--quantize must be none or nf4, got q4/);
    // What needs the Hugging Face folder says so when given the GGUF file, and how to make one of it; flops reads the file's shape.
    for (const args of [['train', '--model', gguf, '--data', path.join(tiny, 'data', 'train.bin'), '--output', path.join(fresh(), 'run')],
      ['merge', '--base', gguf, '--adapter', out, '--out', path.join(fresh(), 'm')]]) {
      assert.match(cli(...args).err, /merged\.gguf is a GGUF file, and this needs a Hugging Face model folder .*generate and chat take --model FILE\.gguf\); train, merge or export from the checkpoint folder it was made from, or convert it into one first: longlora export --model \S*merged\.gguf --out DIR/, args[0]);
    }
    assert.match(cli('export', '--model', gguf, '--out', path.join(dir, 'g.gguf')).err, /merged\.gguf is already a GGUF file; to convert it into a Hugging Face model folder, give --out a folder/);
    assert.match(cli('export', '--model', gguf, '--out', path.join(fresh(), 'x'), '--dtype', 'q8_0').err, /converting \S*merged\.gguf into a folder, --dtype must be f32, f16 or bf16/);
    // Converted into a folder (the llama.cpp-style file, its tokenizer rebuilt), it trains like any other and evaluates as the file does.
    const converted = path.join(fresh(), 'converted');
    const conv = cli('export', '--model', bare, '--out', converted);
    assert.equal(conv.code, 0, conv.err);
    assert.match(conv.out, /wrote \S*converted: a Hugging Face model folder of 39 tensors in f16, config\.json, and the tokenizer from \S*bare\.gguf \(tokenizer\.ggml vocabulary\)/);
    assert.deepEqual(fs.readdirSync(converted).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    assert.equal(ppl(cli(...pplArgs, '--model', converted).out), ppl(fromGguf.out));
    assert.match(cli('export', '--model', bare, '--out', converted).err, /converted already exists and is not an empty folder; pass a new folder/);
    const tuned = cli('train', '--model', converted, '--data', path.join(tiny, 'data', 'train.bin'), '--seq-len', '256', '--steps', '1', '--batch-size', '1',
      '--output', path.join(fresh(), 'run'), '--backend', 'cpu', '--ppl-data', 'null', '--no-merge', '--no-gguf');
    assert.equal(tuned.code, 0, tuned.err);
    assert.match(cli('flops', '--model', gguf, '--seq-lens', '1k').out, /^merged: forward FLOPs of one sequence \(C 128, I 384, L 4, H 4, Hkv 4, D 32, V 2048\)/);
    fs.writeFileSync(path.join(dir, 'bad.gguf'), 'not a gguf');
    assert.match(cli('info', path.join(dir, 'bad.gguf')).err, /bad\.gguf is not a readable GGUF file/);
    assert.match(cli('info', path.join(dir, 'none.gguf')).err, /none\.gguf does not exist/);
    const bad = cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'c.gguf'), '--dtype', 'q4');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--dtype must be one of f32, f16, bf16, q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q4_0, iq4_xs, iq4_nl, q3_k_l, q3_k_m, q3_k_s, q2_k, got q4/);
    assert.match(cli('export', '--out', 'x.gguf').err, /--model is required/);
    // An importance matrix from calibration tokens: for the quantised mixes only, from a .bin token file.
    const imat = cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'imat.gguf'), '--dtype', 'q4_0',
      '--imatrix-data', path.join(tiny, 'data', 'train.bin'), '--imatrix-tokens', '1024', '--imatrix-seq-len', '256');
    assert.equal(imat.code, 0, imat.err);
    assert.match(imat.err, /importance matrix: about 1,024 tokens of \S*train\.bin in windows of 256, on \w+\n[\s\S]*importance matrix: 29 weights, measured on 1,024 tokens/);
    assert.match(cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'x.gguf'), '--dtype', 'q8_0', '--imatrix-data', path.join(tiny, 'data', 'train.bin')).err,
      /--imatrix-data is for the quantised mixes \(q6_k … q2_k\); --dtype q8_0/);
    const calib = path.join(fresh(), 'calib.txt'); // text, tokenized first (its cache beside it)
    fs.copyFileSync(path.join(tiny, 'README.md'), calib);
    const merged2 = path.join(fresh(), 'merged2');
    const mi = cli('merge', '--base', tiny, '--adapter', out, '--out', merged2, '--gguf', path.join(dir, 'mi.gguf'), '--gguf-dtype', 'q3_k_m',
      '--imatrix-data', path.join(tiny, 'data', 'train.bin'), '--imatrix-tokens', '512', '--imatrix-seq-len', '256');
    assert.equal(mi.code, 0, mi.err);
    assert.match(mi.err, /importance matrix: 29 weights, measured on 512 tokens/);
    const noMerge = path.join(fresh(), 'never');
    assert.match(cli('merge', '--base', tiny, '--adapter', out, '--out', noMerge, '--gguf', path.join(dir, 'x.gguf'), '--imatrix-data', path.join(tiny, 'data', 'train.bin')).err,
      /merge: --imatrix-data is for the quantised mixes \(q6_k … q2_k\); --gguf-dtype is not set/);
    assert.ok(!fs.existsSync(noMerge), 'refused before the merge wrote anything');
    assert.match(cli('merge', '--base', tiny, '--adapter', out, '--out', noMerge, '--imatrix-data', path.join(tiny, 'data', 'train.bin')).err, /merge: --imatrix-data needs --gguf FILE\.gguf/);
    const fromText = cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'imat-text.gguf'), '--dtype', 'q4_0',
      '--imatrix-data', calib, '--imatrix-tokens', '256', '--imatrix-seq-len', '64');
    assert.equal(fromText.code, 0, fromText.err);
    assert.match(fromText.err, /importance matrix: 29 weights, measured on 256 tokens/);
    assert.match(cli('export', '--model', path.join(dir, 'merged'), '--out', path.join(dir, 'x.gguf'), '--dtype', 'q4_0', '--imatrix-data', path.join(dir, 'none.txt')).err,
      /--imatrix-data \S*none\.txt does not exist/);
    // A Hub repository id, from the cache (offline): named after the repository, not the snapshot's commit.
    const cache = path.join(dir, 'hub');
    const snap = path.join(cache, 'models--org--tiny', 'snapshots', 'c'.repeat(40));
    fs.mkdirSync(snap, { recursive: true });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tiny, f), path.join(snap, f));
    fs.mkdirSync(path.join(cache, 'models--org--tiny', 'refs'));
    fs.writeFileSync(path.join(cache, 'models--org--tiny', 'refs', 'main'), 'c'.repeat(40));
    const hub = cliWith({ ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' }, 'export', '--model', 'org/tiny', '--out', path.join(dir, 'hub.gguf'));
    assert.equal(hub.code, 0, hub.err);
    assert.match(cli('info', path.join(dir, 'hub.gguf')).out, /llama "tiny", 4 layers/);
    // A GGUF file on the Hub, as org/name/file.gguf (here from the cache): evaluated as it is, and converted into a folder.
    fs.copyFileSync(path.join(dir, 'hub.gguf'), path.join(snap, 'tiny-f16.gguf'));
    const offline = { ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' };
    const hubPpl = cliWith(offline, ...pplArgs, '--model', 'org/tiny/tiny-f16.gguf');
    assert.equal(hubPpl.code, 0, hubPpl.err);
    assert.match(hubPpl.err, /model: \S*models--org--tiny\/snapshots\/c{40}\/tiny-f16\.gguf \(GGUF, 4 layers/);
    const hubDir = path.join(fresh(), 'from-hub');
    assert.equal(cliWith(offline, 'export', '--model', 'org/tiny/tiny-f16.gguf', '--out', hubDir).code, 0);
    assert.ok(fs.existsSync(path.join(hubDir, 'config.json')));
    assert.match(cliWith(offline, ...pplArgs, '--model', 'org/tiny/tiny-q4.gguf').err, /offline \(HF_HUB_OFFLINE\) and the cached snapshot \S+ is incomplete \(tiny-q4\.gguf missing\)/);
    const lora = cli('export', '--model', tiny, '--adapter', out, '--out', path.join(dir, 'lora.gguf'));
    assert.equal(lora.code, 1);
    assert.match(lora.err, /also trained .*which a GGUF LoRA cannot carry.*longlora merge/);
    const plain = path.join(dir, 'plain');
    const p = cli('train', '--model', tiny, '--data', path.join(tiny, 'data', 'train.bin'), '--output', plain, '--steps', '1',
      '--seq-len', '512', '--grad-accum', '1', '--mode', 'lora', '--lora-r', '4', '--warmup-steps', '1', '--backend', 'wasm');
    assert.equal(p.code, 0, p.err);
    const pl = cli('export', '--model', tiny, '--adapter', plain, '--out', path.join(dir, 'plain.gguf'));
    assert.equal(pl.code, 0, pl.err);
    assert.match(pl.out, /plain\.gguf: 16 LoRA layers of rank 4 .*--lora \S*plain\.gguf --rope-scaling linear --rope-scale 2/);
    assert.match(cli('info', path.join(dir, 'plain.gguf')).out, /a lora adapter for llama "plain", 16 adapted weights, rank 4, alpha/);
    const full = path.join(dir, 'full');
    const f = cli('train', '--model', tiny, '--data', path.join(tiny, 'data', 'train.bin'), '--output', full, '--steps', '1',
      '--seq-len', '64', '--grad-accum', '1', '--mode', 'full', '--warmup-steps', '1', '--gguf', '--gguf-dtype', 'q8_0', '--backend', 'wasm');
    assert.equal(f.code, 0, f.err);
    assert.match(f.err, /nothing to merge\n.*wrote \S*model\.gguf \(39 tensors, q8_0, context 256\)/s);
    assert.ok(fs.existsSync(path.join(full, 'model.gguf')), 'full fine-tuning: the saved model as GGUF, with the base\'s tokenizer');
    // A quantised model.gguf with an importance matrix from the training data; what it cannot be used with is refused before training.
    const trainArgs = ['train', '--model', tiny, '--data', path.join(tiny, 'data', 'train.bin'), '--steps', '1', '--seq-len', '64', '--grad-accum', '1',
      '--mode', 'lora', '--warmup-steps', '1', '--backend', 'wasm', '--ppl-data', 'null'];
    const withImatrix = path.join(fresh(), 'imatrix-run');
    const ti = cli(...trainArgs, '--output', withImatrix, '--gguf', '--gguf-dtype', 'q4_0', '--gguf-imatrix', '512');
    assert.equal(ti.code, 0, ti.err);
    assert.match(ti.err, /importance matrix for model\.gguf: 29 weights, measured on 512 tokens of the training data\n.*wrote \S*model\.gguf \(39 tensors, q4_0/s);
    assert.match(cli(...trainArgs, '--output', path.join(fresh(), 'r'), '--gguf', '--gguf-dtype', 'q8_0', '--gguf-imatrix', '512').err,
      /--gguf-imatrix is for a quantised model\.gguf: set --gguf and a --gguf-dtype among the mixes \(q6_k … q2_k\), not q8_0/);
    assert.match(cli(...trainArgs, '--output', path.join(fresh(), 'r'), '--gguf-imatrix', '512').err, /--gguf-imatrix is for a quantised model\.gguf: set --gguf and a --gguf-dtype/);
    const dyn = cli(...trainArgs, '--output', path.join(fresh(), 'r'), '--gguf', '--rope-type', 'dynamic');
    assert.match(dyn.err, /--gguf: llama\.cpp does not implement dynamic NTK RoPE scaling \(--rope-type dynamic\)/);
    assert.doesNotMatch(dyn.err, /trainable:/, 'refused before the model is loaded');
    assert.match(cli('merge', '--base', tiny, '--adapter', out, '--out', path.join(dir, 'm2'), '--gguf', 'x.bin').err, /--gguf must name a \.gguf file/);
    assert.match(cli('merge', '--base', tiny, '--adapter', out, '--out', path.join(dir, 'm2'), '--gguf-dtype', 'q8_0').err, /--gguf-dtype needs --gguf/);
    const q = cli('merge', '--base', tiny, '--adapter', out, '--out', path.join(dir, 'm3'), '--gguf', path.join(dir, 'm3.gguf'), '--gguf-dtype', 'q8_0');
    assert.equal(q.code, 0, q.err);
    assert.match(q.out, /m3\.gguf: 39 tensors, weights in q8_0/);
  });

  it('train: help, a bad value and a missing argument are clear', () => {
    const h = cli('train', '--help');
    assert.equal(h.code, 0);
    assert.match(h.out, /--seq-len <int>/);
    assert.match(h.out, /--s2-form <segmented\|roll\|short>/);
    const bad = cli('train', '--seq-len', '8q');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /option --seq-len must be a number, got "8q"/);
    assert.match(cli('train', '--seq-len', '8k').err, /no base model: set --model/, '8k is a length (8192)');
    const none = cli('train', '--data', 'x.bin');
    assert.equal(none.code, 1);
    assert.match(none.err, /no base model: set --model/);
    const merge = cli('merge', '--base', 'a');
    assert.equal(merge.code, 1);
    assert.match(merge.err, /--adapter is required/);
  });

  it('Ctrl-C during the perplexity evaluation before training stops it between windows', async () => {
    const dir = fresh();
    const evalDir = path.join(dir, 'eval');
    fs.mkdirSync(evalDir);
    const ppl = tokenFile(evalDir, 400_000); // about 1500 windows of 32 tokens per model: seconds, not one
    const args = [MAIN, 'train', '--model', goldenDir('tiny-llama-short'), '--data', tokenFile(dir), '--output', path.join(dir, 'run'), '--steps', '5',
      '--ppl-data', ppl, '--ppl-seq-lens', '32', '--ppl-windows', '0', ...TRAIN_ARGS];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const started = Date.now();
    while (!err.includes('perplexity of the base model')) {
      if (Date.now() - started > 30000) { child.kill('SIGKILL'); throw new Error(`the evaluation did not start: ${err}`); }
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 130, err);
    assert.match(err, /stopping the perplexity evaluation of the starting model; nothing has been trained yet \(Ctrl-C again/);
    assert.match(err, /stopped before the first step, during the perplexity evaluation of the starting model; nothing was trained \(.* holds only the run's options, train_config\.json\)/);
    assert.doesNotMatch(err, /perplexity with RoPE/, 'the second evaluation never started');
  });

  it('Ctrl-C stops after the current step, saves a checkpoint, and --resume continues', async () => {
    const dir = fresh();
    const out = path.join(dir, 'run');
    const args = [MAIN, 'train', '--model', goldenDir('tiny-llama-short'), '--data', tokenFile(dir), '--output', out, '--steps', '2000', '--save-every', '1000', ...TRAIN_ARGS];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const metrics = path.join(out, 'metrics.jsonl');
    const started = Date.now();
    while (!(fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').split('\n').length > 3)) {
      if (Date.now() - started > 30000) { child.kill('SIGKILL'); throw new Error(`no progress: ${err}`); }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 130, `an interrupted run exits with 130, not as a finished one: ${err}`);
    const m = /stopped at step (\d+); checkpoint/.exec(err);
    assert.ok(m, err);
    const step = Number(m[1]);
    assert.ok(fs.existsSync(path.join(out, `checkpoint-${String(step).padStart(6, '0')}`, 'trainer_state.json')));
    // the model folder written another way (a trailing slash) is the same model
    const resumeArgs = args.slice(1, 8).map((a) => (a === goldenDir('tiny-llama-short') ? `${a}/` : a));
    assert.notDeepEqual(resumeArgs, args.slice(1, 8));
    const again = cli(...resumeArgs, '--steps', String(step + 2), '--save-every', '1000', ...TRAIN_ARGS, '--resume');
    assert.equal(again.code, 0, again.err);
    assert.match(again.err, new RegExp(`resumed from .*checkpoint-0*${step} at step ${step}`));
    assert.match(again.err, new RegExp(`done: ${step + 2} steps`));
    // --output and --resume alone: the run's own options (train_config.json), --steps raised
    const short = cli('train', '--output', out, '--steps', String(step + 3), '--resume');
    assert.equal(short.code, 0, short.err);
    assert.match(short.err, new RegExp(`resumed from .*checkpoint-0*${step + 2} at step ${step + 2}`));
    assert.match(short.err, new RegExp(`done: ${step + 3} steps`));
  });
});
