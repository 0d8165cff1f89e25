/**
 * SFT: the official LongLoRA prompt strings, the mask (only response tokens and the final
 * EOS carry labels), truncation and dropping with counts, the chat-template variant, the
 * cache, and padded, resumable batches.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { RecordErrors } from '../../src/data/records.js';
import { buildSftCache, padBatch, SftDataset, SftSampler } from '../../src/data/sft-data.js';
import { llama2InputPrompt, llama2Prompt, parseSftRecord, sftLabels, tokenizeSft, tokenSpans, type SftExample, type SftRecord } from '../../src/data/sft.js';
import { ChatTemplate } from '../../src/tokenizer/chat-template.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { sink } from '../helpers/train.js';
import { tempFolders } from '../helpers/tmp.js';
import { LLAMA_BPE } from '../tokenizer/fixtures.js';

const fresh = tempFolders('sft');
const tok = Tokenizer.load(LLAMA_BPE);

// The official strings, typed out from dvlab-research/LongLoRA supervised-fine-tune.py
// (PROMPT_DICT "prompt_llama2" and "prompt_input_llama2"), independently of src/.
const OFFICIAL_NO_INPUT = '[INST]{instruction}[/INST]';
const OFFICIAL_INPUT =
  '[INST] <<SYS>>\n' +
  'You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and positive in nature.\n\n' +
  'If a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. If you don\'t know the answer to a question, please don\'t share false information.\n' +
  '<</SYS>> \n\n {instruction} \n{input} [/INST]';

const fill = (t: string, r: Partial<SftRecord>): string => t.replace('{instruction}', r.instruction ?? '').replace('{input}', r.input ?? '');

describe('SFT prompts and masking', () => {
  it('the Llama-2 templates match the official strings exactly', () => {
    const r = { instruction: 'Summarise the paper.', input: 'LongLoRA extends context.' };
    assert.equal(llama2Prompt(r.instruction), fill(OFFICIAL_NO_INPUT, r));
    assert.equal(llama2InputPrompt(r.instruction, r.input), fill(OFFICIAL_INPUT, r));
  });

  for (const input of ['', 'The sky is blue.']) {
    it(`only the response and its EOS carry labels (${input ? 'with' : 'without'} input)`, () => {
      const rec = { instruction: 'What is the pass key?', input, output: 'The pass key is 4821.' };
      const { example, outcome } = tokenizeSft(rec, tok, { template: 'llama2', maxLen: 4096, overlong: 'truncate' });
      assert.equal(outcome, 'kept');
      const prompt = input ? fill(OFFICIAL_INPUT, rec) : fill(OFFICIAL_NO_INPUT, rec);
      const promptIds = tok.encode(prompt); // BOS + prompt, as tokenizer(source) in the official script
      assert.deepEqual(Array.from(example!.ids), [...tok.encode(prompt + rec.output), tok.eosId]);
      assert.deepEqual(example!.spans, [[promptIds.length, example!.ids.length]]);
      const labels = sftLabels(example!);
      assert.ok(labels.subarray(0, promptIds.length).every((l) => l === -100), 'prompt masked, BOS included');
      assert.deepEqual(Array.from(labels.subarray(promptIds.length)), Array.from(example!.ids.subarray(promptIds.length)));
      assert.equal(labels.at(-1), tok.eosId, 'the target ends with EOS');
      assert.equal(tok.decode(Array.from(example!.ids.subarray(promptIds.length)), { skipSpecialTokens: true }), ` ${rec.output}`.trimStart());
    });
  }

  it('the chat-template variant masks the rendered prompt', () => {
    const rec = { instruction: 'Hi', input: '', output: 'Hello there' };
    const { example } = tokenizeSft(rec, tok, { template: 'chat', maxLen: 4096, overlong: 'truncate' });
    const prompt = '<s>[INST] Hi [/INST]';
    assert.deepEqual(example!.spans, [[tok.encode(prompt, { addSpecialTokens: false }).length, example!.ids.length]]);
    assert.deepEqual(Array.from(example!.ids), tok.encode(`${prompt} Hello there </s>`, { addSpecialTokens: false }));
    assert.equal(example!.ids.at(-1), tok.eosId);
  });

  it('too long: truncated (official) or dropped; a prompt that fills the length leaves nothing', () => {
    const rec = { instruction: 'Tell me.', input: '', output: 'The grass is green. '.repeat(20) };
    const full = tokenizeSft(rec, tok, { template: 'llama2', maxLen: 10000, overlong: 'truncate' }).example!;
    const t = tokenizeSft(rec, tok, { template: 'llama2', maxLen: 30, overlong: 'truncate' });
    assert.equal(t.outcome, 'truncated');
    assert.deepEqual(Array.from(t.example!.ids), Array.from(full.ids.subarray(0, 30)));
    assert.equal(tokenizeSft(rec, tok, { template: 'llama2', maxLen: 30, overlong: 'drop' }).outcome, 'too-long');
    const n = tokenizeSft(rec, tok, { template: 'llama2', maxLen: full.spans[0]![0], overlong: 'truncate' });
    assert.deepEqual([n.outcome, n.example], ['no-response', null]);
  });

  it('records are validated with file and line', () => {
    const errors = new RecordErrors('skip');
    assert.equal(parseSftRecord({ instruction: 'a' }, 'f.json', 7, errors), null);
    assert.equal(parseSftRecord({ instruction: 'a', output: 'b', input: 3 }, 'f.json', 8, errors), null);
    assert.deepEqual(parseSftRecord({ instruction: 'a', output: 'b', input: null }, 'f.json', 9, errors), { instruction: 'a', input: '', output: 'b' });
    assert.deepEqual(errors.issues.map((i) => `${i.line}: ${i.message}`), ['7: no "output" string field (fields: instruction); SFT records are {instruction, input?, output}, {messages: [{role, content}, ...]} or ShareGPT\'s {conversations: [{from, value}, ...]}', '8: "input" must be a string, got number']);
    assert.throws(() => parseSftRecord([1], 'f.json', 3, new RecordErrors('error')), /f\.json:3: an SFT record must be an object/);
  });
});

describe('SFT sets: cache and batches', () => {
  function records(dir: string, n: number): string {
    const f = path.join(dir, 'alpaca.json');
    const recs = Array.from({ length: n }, (_, i) => ({ instruction: `Question ${i}?`, input: i % 3 === 0 ? 'Some context.' : '', output: `Answer ${'is '.repeat(i)}${i}.` }));
    fs.writeFileSync(f, JSON.stringify(recs, null, 1));
    return f;
  }

  it('tokenized once into a cache with a report; reused; the examples read back', async () => {
    const dir = fresh();
    const f = records(dir, 12);
    const opts = { tokenizer: tok, template: 'llama2' as const, maxLen: 60, overlong: 'drop' as const, out: sink() };
    const c = await buildSftCache([f], opts);
    assert.equal(c.reused, false);
    const r = c.meta.report;
    assert.equal(r.records, 12);
    assert.equal(r.kept + r.tooLong, 12);
    assert.ok(r.tooLong > 0 && r.kept > 0, JSON.stringify(r));
    assert.equal((await buildSftCache([f], opts)).reused, true);
    const ds = SftDataset.open(c);
    assert.equal(ds.numExamples, r.kept);
    const kept = JSON.parse(fs.readFileSync(f, 'utf8')).map((rec: SftRecord) => tokenizeSft(rec, tok, opts).example).filter(Boolean);
    assert.equal(kept.length, ds.numExamples);
    kept.forEach((e: SftExample, i: number) => {
      assert.deepEqual(Array.from(ds.get(i, tok.vocabSize).ids), Array.from(e.ids));
      assert.deepEqual(ds.get(i, tok.vocabSize).spans, e.spans);
    });
    ds.close();
    await assert.rejects(buildSftCache([f], { ...opts, maxLen: 5 }), /no usable SFT examples \(12 record\(s\): 12 too long/);
  });

  it('a folder of records says what its listing left out, as a text corpus does', async () => {
    const dir = fresh();
    const f = records(dir, 4);
    fs.writeFileSync(path.join(dir, 'notes.csv'), 'not records');
    const opts = { tokenizer: tok, template: 'llama2' as const, maxLen: 200, overlong: 'drop' as const, out: sink() };
    const c = await buildSftCache([dir, f], opts);
    assert.ok(c.notes?.some((n) => /^skipped 1 file\(s\) that are not text or JSON \(e\.g\. .*notes\.csv\)/.test(n)), String(c.notes));
    assert.ok(c.notes?.some((n) => /^read 1 file\(s\) or folder\(s\) once that were reached again/.test(n)), String(c.notes));
    assert.deepEqual((await buildSftCache([dir, f], opts)).notes, c.notes, 'said again when the cache is reused');
  });

  it('padded batches: right padding, pad labels −100, N a multiple of 8; resumable order', async () => {
    const a = { ids: Int32Array.from([1, 5, 6, 7, 8]), spans: [[3, 5]] as const };
    const b = { ids: Int32Array.from([1, 9, 10]), spans: [[2, 3]] as const };
    const batch = padBatch([a, b], 0);
    assert.equal(batch.N, 8);
    assert.deepEqual(Array.from(batch.ids), [1, 5, 6, 7, 8, 0, 0, 0, 1, 9, 10, 0, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(batch.labels), [-100, -100, -100, 7, 8, -100, -100, -100, -100, -100, 10, -100, -100, -100, -100, -100]);
    const dir = fresh();
    const c = await buildSftCache([records(dir, 10)], { tokenizer: tok, template: 'llama2', maxLen: 2000, overlong: 'truncate', out: sink() });
    const ds = SftDataset.open(c);
    assert.equal(ds.numExamples, 10);
    const s1 = new SftSampler(ds, 0, 8, tok.vocabSize, 3, 0);
    const seen = Array.from({ length: 6 }, () => s1.next(2));
    const s2 = new SftSampler(ds, 0, 8, tok.vocabSize, 3, 0, { epoch: 1, index: 2 });
    assert.deepEqual(Array.from(s2.next(2).ids), Array.from(seen[5]!.ids), 'resumes at epoch 1, index 2');
    assert.throws(() => new SftSampler(ds, 8, 8, tok.vocabSize, 3, 0), /no SFT examples left for training after the held-out split/);
    ds.close();
  });
});

describe('SFT conversations', () => {
  const turns = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'What is the pass key?' },
    { role: 'assistant', content: 'It is 4821.' },
    { role: 'user', content: 'And the colour?' },
    { role: 'assistant', content: 'The sky is blue.' },
  ];
  const opts = { template: 'llama2' as const, maxLen: 4096, overlong: 'truncate' as const };
  // Meta's Llama-2 chat format, typed out here from its published template (not from src/).
  const LLAMA2_TEXT = '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is the pass key? [/INST] It is 4821. </s><s>[INST] And the colour? [/INST] The sky is blue. </s>';
  const labelledText = (ex: SftExample): string[] => ex.spans.map(([a, b]) => tok.decode(Array.from(ex.ids.subarray(a, b))).trim());

  it('every assistant turn and its end-of-turn carry labels; system, user turns and the template do not', () => {
    const { example, outcome } = tokenizeSft({ messages: turns }, tok, opts);
    assert.equal(outcome, 'kept');
    const ex = example!;
    assert.deepEqual(Array.from(ex.ids), tok.encode(LLAMA2_TEXT, { addSpecialTokens: false }), 'the whole text tokenized in one pass');
    assert.deepEqual(labelledText(ex), ['It is 4821. </s>', 'The sky is blue. </s>']);
    // The official rule for where a response starts: after as many tokens as the text before it has.
    const starts = ['[/INST]', '[/INST]'].map((m, k) => LLAMA2_TEXT.split(m).slice(0, k + 1).join(m) + m);
    assert.deepEqual(ex.spans.map(([a]) => a), starts.map((t) => tok.encode(t, { addSpecialTokens: false }).length));
    const labels = sftLabels(ex);
    const inSpan = (i: number): boolean => ex.spans.some(([a, b]) => i >= a && i < b);
    labels.forEach((l, i) => assert.equal(l, inSpan(i) ? ex.ids[i] : -100, `label ${i}`));
    assert.equal(labels.at(-1), tok.eosId);
  });

  it('ShareGPT records are the same conversation; bad turns are reported with file and line', () => {
    const errors = new RecordErrors('skip');
    const from = { system: 'system', user: 'human', assistant: 'gpt' } as Record<string, string>;
    const share = parseSftRecord({ conversations: turns.map((t) => ({ from: from[t.role], value: t.content })) }, 'f.json', 1, errors);
    assert.deepEqual(share, { messages: turns });
    assert.deepEqual(parseSftRecord({ messages: turns }, 'f.json', 2, errors), { messages: turns });
    for (const bad of [{ messages: [] }, { messages: [{ role: 'user', content: 'hi' }] }, { conversations: [{ from: 'narrator', value: 'x' }] }, { messages: [{ role: 'user', content: null }] }]) {
      assert.equal(parseSftRecord(bad, 'f.json', 3, errors), null);
    }
    assert.deepEqual(errors.issues.map((i) => i.message), [
      '"messages" must be a non-empty list of {role, content} turns',
      '"messages" has no assistant turn to learn from',
      'conversations[0]: unknown speaker "narrator" (known: human, user, gpt, assistant, model, chatgpt, bard, system)',
      'messages[0] must have a string "role" and a string "content" (fields: role, content)',
    ]);
  });

  it('a chat template of another shape: its end-of-turn marks are labelled too, and a conversation ending with a user turn gets no EOS', () => {
    const chatml = new ChatTemplate('{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}', 'chatml');
    const ex = tokenizeSft({ messages: turns }, tok, { ...opts, template: 'chat', chatTemplate: chatml }).example!;
    assert.deepEqual(labelledText(ex), ['It is 4821.</s>', 'The sky is blue.</s>']);
    const open = tokenizeSft({ messages: turns.slice(0, 4) }, tok, { ...opts, template: 'chat', chatTemplate: chatml }).example!;
    assert.deepEqual(labelledText(open), ['It is 4821.</s>']);
    assert.deepEqual(Array.from(open.ids), Array.from(ex.ids.subarray(0, open.ids.length)), 'the same prefix, nothing appended');
    // A template whose turns cannot be found at all (it rewrites the text) is refused by name.
    const odd = new ChatTemplate('{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.content | upper }}\n{% endfor %}', 'odd.jinja');
    assert.throws(() => tokenizeSft({ messages: turns }, tok, { ...opts, template: 'chat', chatTemplate: odd }),
      /odd\.jinja: the chat template does not render a conversation's first turns as the start of the whole, and its assistant turns cannot be found/);
  });

  it('a template that renders a turn differently once later ones follow (Qwen 3\'s <think> gate): turns found by their text', () => {
    // Qwen 3's rule, written out here: a <think> block only for assistant turns after the last user message.
    const gate = new ChatTemplate(
      '{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == "user" %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}' +
      '{% for m in messages %}<|{{ m.role }}|>\n{% if m.role == "assistant" and loop.index0 > ns.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}</s>\n{% endfor %}' +
      '{% if add_generation_prompt %}<|assistant|>\n{% endif %}', 'qwen3-like.jinja');
    const whole = gate.render(turns, { addGenerationPrompt: false, eosToken: '</s>' });
    assert.ok(!whole.startsWith(gate.render(turns.slice(0, 3), { addGenerationPrompt: false, eosToken: '</s>' })), 'not prefix-stable');
    const ex = tokenizeSft({ messages: turns }, tok, { ...opts, template: 'chat', chatTemplate: gate }).example!;
    assert.deepEqual(Array.from(ex.ids), tok.encode(whole, { addSpecialTokens: false }), 'the whole rendering, as it is');
    assert.deepEqual(labelledText(ex), ['It is 4821.</s>', 'The sky is blue.</s>'], 'each answer and its end-of-turn mark, nothing of the <think> block or the user turns');
    // A user message with the answer's text comes before the answer: the answer is labelled, not the user's words.
    const echo = [{ role: 'user', content: 'Say yes.' }, { role: 'assistant', content: 'Yes.' }, { role: 'user', content: 'Yes.' }, { role: 'assistant', content: 'Yes.' }];
    const e = tokenizeSft({ messages: echo }, tok, { ...opts, template: 'chat', chatTemplate: gate }).example!;
    const before = e.spans.map(([a]) => tok.decode(Array.from(e.ids.subarray(0, a))));
    assert.deepEqual(before.map((b) => b.match(/Yes\./g)?.length ?? 0), [0, 2], 'the second answer starts after the first answer and the user\'s "Yes."');
    assert.ok(before[1]!.trimEnd().endsWith('</think>'), before[1]);
    assert.deepEqual(labelledText(e), ['Yes.</s>', 'Yes.</s>']);
  });

  it('label spans: exact cuts when the pieces tokenize as the whole, else the official prefix rule', () => {
    // After a special token the pieces tokenize as the whole text does: the cuts are exact.
    const text = '<s>[INST] hi [/INST]</s>The sky is blue.</s>';
    const cut = text.indexOf('The');
    const enc = (t: string): number[] => tok.encode(t, { addSpecialTokens: false });
    assert.deepEqual([...enc(text.slice(0, cut)), ...enc(text.slice(cut))], enc(text), 'the pieces tokenize as the whole');
    const exact = tokenSpans(text, [[cut, text.length]], tok);
    assert.deepEqual(exact.spans, [[tok.encode(text.slice(0, cut), { addSpecialTokens: false }).length, exact.ids.length]]);
    assert.equal(tok.decode(exact.ids.slice(exact.spans[0]![0])), 'The sky is blue.</s>');
    // Inside a word the pieces differ from the whole: the cut falls after the tokens of the text before it.
    const word = 'The grassland is green.';
    const mid = word.indexOf('land');
    assert.notDeepEqual([...enc(word.slice(0, mid)), ...enc(word.slice(mid))], enc(word), 'the pieces do not tokenize as the whole');
    const fb = tokenSpans(word, [[mid, word.length]], tok);
    assert.deepEqual(fb.ids, tok.encode(word, { addSpecialTokens: false }));
    assert.deepEqual(fb.spans, [[tok.encode(word.slice(0, mid), { addSpecialTokens: false }).length, fb.ids.length]]);
  });

  it('truncation clips the spans; a conversation whose first answer starts past the length is dropped', () => {
    const full = tokenizeSft({ messages: turns }, tok, opts).example!;
    const [a1, b1] = full.spans[0]!;
    const a2 = full.spans[1]![0];
    const t = tokenizeSft({ messages: turns }, tok, { ...opts, maxLen: a2 + 3 });
    assert.equal(t.outcome, 'truncated');
    assert.deepEqual(t.example!.spans, [[a1, b1], [a2, a2 + 3]]);
    assert.deepEqual(tokenizeSft({ messages: turns }, tok, { ...opts, maxLen: a1 }), { example: null, outcome: 'no-response' });
  });

  it('mixed files are cached with their spans; another chat template rebuilds the cache', async () => {
    const dir = fresh();
    const f = path.join(dir, 'mixed.jsonl');
    const recs = [{ instruction: 'Hi', output: 'Hello' }, { messages: turns }, { conversations: [{ from: 'human', value: 'Q?' }, { from: 'gpt', value: 'A.' }] }];
    fs.writeFileSync(f, recs.map((r) => JSON.stringify(r)).join('\n'));
    const o = { tokenizer: tok, template: 'chat' as const, maxLen: 4096, overlong: 'truncate' as const, out: sink() };
    const c = await buildSftCache([f], o);
    assert.equal(c.meta.report.conversations, 2);
    const ds = SftDataset.open(c);
    recs.forEach((r, i) => {
      const item = parseSftRecord(r, f, i + 1, new RecordErrors('error'))!;
      const want = tokenizeSft(item, tok, o).example!;
      assert.deepEqual(ds.get(i, tok.vocabSize), { ids: want.ids, spans: want.spans });
    });
    assert.equal(ds.get(1, tok.vocabSize).spans.length, 2);
    ds.close();
    assert.equal((await buildSftCache([f], o)).reused, true);
    const other = new ChatTemplate('{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}', 'chatml');
    const c2 = await buildSftCache([f], { ...o, chatTemplate: other });
    assert.equal(c2.reused, false);
    assert.notEqual(c2.file, c.file);
    const ds2 = SftDataset.open(c2);
    const ex = ds2.get(1, tok.vocabSize);
    ds2.close();
    const batch = padBatch([ex], 0);
    const labelled = Array.from(batch.labels).flatMap((l, i) => (l === -100 ? [] : [i]));
    assert.deepEqual(labelled, ex.spans.flatMap(([x, y]) => Array.from({ length: y - x }, (_, k) => x + k)), 'exactly the two assistant turns');
    assert.equal(ex.spans.length, 2);
  });
  it('a conversation the template refuses (roles out of order) names its file and line; skip mode skips it', async () => {
    const dir = fresh();
    const f = path.join(dir, 'chats.jsonl');
    const good = { messages: [{ role: 'user', content: 'Q?' }, { role: 'assistant', content: 'A.' }] };
    const bad = { messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }] };
    fs.writeFileSync(f, [good, bad, good].map((r) => JSON.stringify(r)).join('\n'));
    const o = { tokenizer: tok, template: 'llama2' as const, maxLen: 4096, overlong: 'truncate' as const, out: sink() };
    await assert.rejects(buildSftCache([f], o), (e: Error) => {
      assert.equal(e.name, 'LongLoraError');
      assert.ok(e.message.startsWith(`${path.resolve(f)}:2: `), e.message);
      assert.match(e.message, /roles must alternate.*--bad-records skip/);
      return true;
    });
    const c = await buildSftCache([f], { ...o, badRecords: 'skip' });
    assert.equal(c.meta.report.kept, 2);
    assert.equal(c.meta.report.badRecords, 1);
    assert.match(c.meta.skipped, /chats\.jsonl:2: .*roles must alternate/);
  });
});
