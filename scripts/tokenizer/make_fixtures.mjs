#!/usr/bin/env node
/**
 * Writes the committed tokenizer fixtures under test/fixtures/tokenizer/ (deterministic;
 * run `node scripts/tokenizer/make_fixtures.mjs` and commit the result):
 *
 *  - llama-bpe/: a Llama-2-style Hugging Face tokenizer.json — BPE over "▁"-marked words
 *    with byte fallback (<0x00>..<0xFF> at ids 3..258, as in Llama), fused <unk>, the
 *    Prepend("▁") + Replace(" " → "▁") normalizer, the Replace / ByteFallback / Fuse /
 *    Strip decoder and a TemplateProcessing post-processor that adds <s>. Its chat
 *    template (Llama-2 chat) is in tokenizer_config.json.
 *  - tiny-96/: the same layout without byte fallback and with exactly 96 entries, so it
 *    fits the golden tiny Llama (vocab 96, bos 1, eos 2); its chat template is in
 *    chat_template.jinja.
 *
 * The merges are learnt here by a small BPE trainer of its own (most frequent pair first, ties by
 * the pair's text) on a fixed English corpus; digits are never merged (Llama splits them).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// The tokenizer.json layout is the project's (needs `npm run build` first).
const { bpeTokenizerJson: tokenizerJson, bpeTokenizerConfig } = await import(path.join(ROOT, 'dist', 'src', 'tokenizer', 'train-bpe.js'));
const OUT = path.join(ROOT, 'test', 'fixtures', 'tokenizer');
const SP = '\u2581';

const CORPUS = [
  'There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.',
  'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.',
  'The pass key is 12345. Remember it. 12345 is the pass key. What is the pass key? The pass key is',
  'Hello world! This is a tiny tokenizer for tests: the quick brown fox jumps over the lazy dog.',
  'You are a helpful assistant. Answer the question in one word, then stop.',
  'Long context models read whole books, papers and code; they remember what they read.',
];

const SPECIALS = ['<unk>', '<s>', '</s>'];

const LLAMA2_CHAT_TEMPLATE = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** Words as the Llama normalizer sees them: "▁" before each space-separated word. */
function words(text) {
  return (SP + text.replaceAll(' ', SP)).split(new RegExp(`(?=${SP})`, 'u')).filter(Boolean);
}

/** Learns up to `n` merges over the corpus words, starting from single characters. */
function trainMerges(n, alphabet) {
  let seqs = CORPUS.flatMap(words).map((w) => Array.from(w).filter((c) => alphabet.has(c)));
  const merges = [];
  for (let m = 0; m < n; m++) {
    const counts = new Map();
    for (const s of seqs) for (let i = 0; i + 1 < s.length; i++) {
      if (/\d/.test(s[i] + s[i + 1])) continue; // digits stay single tokens, as Llama splits them
      const k = `${s[i]}\u0000${s[i + 1]}`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    let best = null;
    for (const [k, c] of counts) if (best === null || c > best[1] || (c === best[1] && k < best[0])) best = [k, c];
    if (!best || best[1] < 2) break;
    const [a, b] = best[0].split('\u0000');
    merges.push([a, b]);
    seqs = seqs.map((s) => {
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(a + b); i++; } else out.push(s[i]);
      }
      return out;
    });
  }
  return merges;
}

function tokenizerConfig(extra) {
  return { ...bpeTokenizerConfig(), ...extra };
}

function write(dir, files) {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : `${JSON.stringify(content, null, 2)}\n`);
  }
}

function llamaBpe() {
  const bytes = Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`);
  const chars = [SP, ...'0123456789', ...'abcdefghijklmnopqrstuvwxyz', ...'ABCDEFGHIJKLMNOPQRSTUVWXYZ', ...'.,?!\':;-()[]/<>', 'é', 'ü', '—'];
  const merges = trainMerges(120, new Set(chars));
  const vocab = [...SPECIALS, ...bytes, ...chars, ...merges.map(([a, b]) => a + b)];
  write(path.join(OUT, 'llama-bpe'), {
    'tokenizer.json': tokenizerJson(vocab, merges, true),
    'tokenizer_config.json': tokenizerConfig({ chat_template: LLAMA2_CHAT_TEMPLATE }),
    'special_tokens_map.json': { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' },
  });
  return vocab.length;
}

function tiny96() {
  const chars = [SP, ...'0123456789', ...'abcdefghijklmnopqrstuvwxyz', ...'TFIWHRY', ...'.,?!:\n[]/<>'];
  const room = 96 - SPECIALS.length - chars.length;
  const merges = trainMerges(room, new Set(chars));
  const vocab = [...SPECIALS, ...chars, ...merges.map(([a, b]) => a + b)];
  if (vocab.length !== 96 || new Set(vocab).size !== 96) throw new Error(`tiny-96 has ${vocab.length} entries (${new Set(vocab).size} distinct)`);
  write(path.join(OUT, 'tiny-96'), {
    'tokenizer.json': tokenizerJson(vocab, merges, false),
    'tokenizer_config.json': tokenizerConfig({}),
    'chat_template.jinja': LLAMA2_CHAT_TEMPLATE,
  });
  return vocab.length;
}

console.log(`llama-bpe: ${llamaBpe()} tokens; tiny-96: ${tiny96()} tokens → ${path.relative(ROOT, OUT)}`);
