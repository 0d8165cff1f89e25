/**
 * The trainer on text corpora and SFT records: tokenized through the caches, the held-out
 * split evaluated at the start and the end, labels masked for SFT (instruction records and
 * conversations), and the errors for a
 * tokenizer that does not fit, a corpus shorter than one sequence, and SFT with the roll form.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildSftCache } from '../../src/data/sft-data.js';
import { tokenizeCorpus } from '../../src/data/token-cache.js';
import { openTrainingData } from '../../src/data/training-data.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { Trainer } from '../../src/train/trainer.js';
import { sink, tinyConfig } from '../helpers/train.js';
import { tempFolders } from '../helpers/tmp.js';
import { LLAMA_BPE, TINY_96 } from '../tokenizer/fixtures.js';

const fresh = tempFolders('training-data');

function textCorpus(dir: string): string {
  const c = path.join(dir, 'corpus');
  fs.mkdirSync(c);
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(c, `doc${i}.txt`), 'The grass is green. The sky is blue. The sun is yellow. Here we go. '.repeat(4 + i));
  return c;
}

function sftRecords(dir: string): string {
  const f = path.join(dir, 'sft.jsonl');
  const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ instruction: `What is the pass key ${i}?`, output: `The pass key is ${1000 + i}.` }));
  fs.writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
}

async function rejectsLL(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.equal(e.name, 'LongLoraError', String(e));
    for (const s of parts) assert.ok(e.message.includes(s), `message lacks "${s}": ${e.message}`);
    return true;
  });
}

describe('training on text and SFT data', () => {
  it('a text corpus: tokenized into a cache, held out, evaluated at the start and the end', async () => {
    const dir = fresh();
    const out = sink();
    const c = tinyConfig(dir, { data: textCorpus(dir), tokenizer: TINY_96, valFraction: 0.2, steps: 2, saveEvery: 10 });
    const t = await Trainer.create(c, { out });
    const r = await t.run();
    t.dispose();
    assert.equal(r.steps, 2);
    const log = out.text();
    assert.match(log, /tokenizer: .*tiny-96: 96 tokens/);
    assert.match(log, /data: [\d,]+ tokens from 6 document\(s\) in .*\.longlora-cache.*\(uint16; built\)/);
    assert.match(log, /data: \d+ training sequences of 32 tokens, \d+ held out/);
    assert.match(log, /step 0: held-out loss [\d.]+, perplexity [\d.]+ \(\d+ tokens, dense attention\)/);
    const metrics = fs.readFileSync(path.join(c.output, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    const val = metrics.filter((m) => 'val_loss' in m);
    assert.deepEqual(val.map((m) => m.step), [0, 2]);
    assert.ok(val.every((m) => m.val_tokens! > 0 && Math.abs(m.val_ppl! - Math.exp(m.val_loss!)) < 1e-9));
    const again = sink();
    const t2 = await Trainer.create({ ...c, output: path.join(dir, 'run2') }, { out: again });
    t2.dispose();
    assert.match(again.text(), /cache reused/);
  });

  it('SFT records: prompts masked, padded batches, a held-out loss', async () => {
    const dir = fresh();
    const c = tinyConfig(dir, { data: sftRecords(dir), dataFormat: 'sft', tokenizer: TINY_96, valFraction: 0.2, seqLen: 64, steps: 2, saveEvery: 10 });
    const data = await openTrainingData(c, 96, undefined, sink());
    const b = data.next(2);
    assert.equal(b.B, 2);
    assert.equal(b.N % 8, 0);
    const labelled = Array.from(b.labels!).filter((l) => l !== -100).length;
    assert.ok(labelled > 0 && labelled < b.ids.length / 2, 'only the responses carry labels');
    assert.equal(data.heldOut(2, 8).length, 1, '2 of 10 examples held out, one batch');
    assert.match(data.notes.join('\n'), /SFT data: 10 of 10 record\(s\) kept/);
    data.close();
    const out = sink();
    const t = await Trainer.create(c, { out });
    await t.run();
    t.dispose();
    assert.match(out.text(), /SFT: 8 training examples, 2 held out; right-padded with id 2/);
    assert.match(out.text(), /step 2: held-out loss/);
  });

  it('SFT conversations: every assistant turn labelled, through the built-in or a given chat template', async () => {
    const dir = fresh();
    const f = path.join(dir, 'chats.jsonl');
    const chats = Array.from({ length: 6 }, (_, i) => ({ messages: [
      { role: 'user', content: `Pass key ${i}?` }, { role: 'assistant', content: `It is ${100 + i}.` },
      { role: 'user', content: 'Sure?' }, { role: 'assistant', content: 'Yes.' }] }));
    fs.writeFileSync(f, chats.map((c) => JSON.stringify(c)).join('\n'));
    const jinja = path.join(dir, 'plain.jinja');
    fs.writeFileSync(jinja, '{% for m in messages %}{{ m.role }}: {{ m.content }}{% if m.role == "assistant" %}{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}');
    for (const extra of [{}, { sftTemplate: 'chat' as const, chatTemplate: jinja }]) {
      const c = tinyConfig(dir, { data: f, dataFormat: 'sft', tokenizer: TINY_96, seqLen: 64, ...extra });
      const data = await openTrainingData(c, 96, undefined, sink());
      assert.match(data.notes.join('\n'), /SFT data: 6 of 6 record\(s\) kept; 6 of the records are conversations/);
      const b = data.next(1);
      const labels = Array.from(b.labels!);
      // two labelled runs (the two answers), each ending with EOS
      const runs = labels.map((l, i) => (l !== -100 && (i === 0 || labels[i - 1] === -100) ? i : -1)).filter((i) => i >= 0);
      assert.equal(runs.length, 2, JSON.stringify(labels));
      assert.equal(labels.filter((l) => l === 2).length, 2, 'both answers end with EOS (id 2), labelled');
      data.close();
    }
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: f, dataFormat: 'sft', tokenizer: TINY_96, chatTemplate: jinja }), { out: sink() }),
      '--chat-template renders SFT conversations: it needs --data-format sft --sft-template chat');
  });

  it('bad data is refused before the model loads, with the fix', async () => {
    const dir = fresh();
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: textCorpus(dir), tokenizer: LLAMA_BPE }), { out: sink() }),
      'has 411 tokens but the model', 'has 96 embedding rows', '--tokenizer');
    const short = path.join(dir, 'short.txt');
    fs.writeFileSync(short, 'The sky is blue.');
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: short, tokenizer: TINY_96 }), { out: sink() }),
      'short.txt holds', 'fewer than one training sequence of 32', 'use a shorter --seq-len or more data');
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: sftRecords(dir), dataFormat: 'sft', s2Form: 'roll', tokenizer: TINY_96 }), { out: sink() }),
      'use --s2-form segmented');
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, '{"text": "The sky is blue."}\n{"text": broken\n');
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: bad, tokenizer: TINY_96 }), { out: sink() }), 'bad.jsonl:2: not valid JSON', '--bad-records skip');
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    fs.writeFileSync(path.join(empty, 'a.txt'), '');
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: empty, tokenizer: TINY_96 }), { out: sink() }), 'the corpus has no documents with text');
    // a token file with one id past the vocabulary near its end: found when it is opened, not when its batch comes up
    const ids = new Uint16Array(5000).map((_, i) => i % 96);
    ids[4870] = 500;
    const tokens = path.join(dir, 'bad.bin');
    fs.writeFileSync(tokens, Buffer.from(ids.buffer));
    await rejectsLL(Trainer.create(tinyConfig(dir, { data: tokens }), { out: sink(), dryRun: true }), 'bad.bin: token 500 at position 4870 is outside the model\'s vocabulary (96)');
  });
  it('a --val-fraction that finds one sequence only says it holds nothing out', async () => {
    const dir = fresh();
    const tokens = path.join(dir, 'one.bin');
    fs.writeFileSync(tokens, Buffer.from(new Uint16Array(40).map((_, i) => 3 + (i % 90)).buffer));
    const out = sink();
    const t = await Trainer.create(tinyConfig(dir, { data: tokens, valFraction: 0.1 }), { out, dryRun: true });
    t.dispose();
    assert.match(out.text(), /data: 1 training sequences of 32 tokens\n/);
    assert.match(out.text(), /note: --val-fraction 0\.1 holds nothing out: the data is one sequence of 32 tokens, which is kept for training/);
  });

  it('a .bin that longlora tokenize wrote is checked against its sidecar; an SFT set keeps its labels', async () => {
    const dir = fresh();
    const tok = Tokenizer.load(TINY_96);
    // SFT examples written by tokenize --format sft: read as examples with labels, not as a token stream
    const sft = await buildSftCache([sftRecords(dir)], { tokenizer: tok, template: 'llama2', maxLen: 64, overlong: 'truncate', output: path.join(dir, 'sft.bin'), out: sink() });
    for (const dataFormat of ['auto', 'sft'] as const) {
      const data = await openTrainingData(tinyConfig(dir, { data: sft.file, dataFormat, tokenizer: TINY_96, seqLen: 64, valFraction: 0.2 }), 96, undefined, sink());
      const b = data.next(2);
      assert.ok(b.labels && Array.from(b.labels).some((l) => l === -100), 'prompts masked');
      assert.match(data.notes.join('\n'), /SFT: 8 training examples, 2 held out/);
      data.close();
    }
    await rejectsLL(openTrainingData(tinyConfig(dir, { data: sft.file, tokenizer: TINY_96, seqLen: 32 }), 96, undefined, sink()),
      'examples of up to 64 tokens, longer than --seq-len 32', 'tokenize the records again with --seq-len 32');
    // a text token file made by another tokenizer (another vocabulary), a cut-short file, a contradicting --data-dtype
    const other = await tokenizeCorpus([textCorpus(dir)], { tokenizer: Tokenizer.load(LLAMA_BPE), output: path.join(dir, 'other.bin'), out: sink() });
    await rejectsLL(openTrainingData(tinyConfig(dir, { data: other.file, tokenizer: TINY_96 }), 96, undefined, sink()),
      'was tokenized with', `(vocabulary ${other.meta.tokenizer.vocabSize}), not with the model's tokenizer`, '--tokenizer');
    const mine = await tokenizeCorpus([path.join(dir, 'corpus')], { tokenizer: tok, output: path.join(dir, 'mine.bin'), out: sink() });
    const ok = await openTrainingData(tinyConfig(dir, { data: mine.file, tokenizer: TINY_96 }), 96, undefined, sink());
    ok.close();
    await rejectsLL(openTrainingData(tinyConfig(dir, { data: mine.file, tokenizer: TINY_96, dataDtype: 'uint32' }), 96, undefined, sink()), 'holds uint16 tokens', 'drop --data-dtype');
    fs.truncateSync(mine.file, 64);
    await rejectsLL(openTrainingData(tinyConfig(dir, { data: mine.file, tokenizer: TINY_96 }), 96, undefined, sink()), 'is 64 bytes, but its sidecar', 'cut short');
  });
});
