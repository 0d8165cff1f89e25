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
import { llama2InputPrompt, llama2Prompt, parseSftRecord, sftLabels, tokenizeSft, type SftRecord } from '../../src/data/sft.js';
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
      assert.equal(example!.promptLen, promptIds.length);
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
    assert.equal(example!.promptLen, tok.encode(prompt, { addSpecialTokens: false }).length);
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
    const n = tokenizeSft(rec, tok, { template: 'llama2', maxLen: full.promptLen, overlong: 'truncate' });
    assert.deepEqual([n.outcome, n.example], ['no-response', null]);
  });

  it('records are validated with file and line', () => {
    const errors = new RecordErrors('skip');
    assert.equal(parseSftRecord({ instruction: 'a' }, 'f.json', 7, errors), null);
    assert.equal(parseSftRecord({ instruction: 'a', output: 'b', input: 3 }, 'f.json', 8, errors), null);
    assert.deepEqual(parseSftRecord({ instruction: 'a', output: 'b', input: null }, 'f.json', 9, errors), { instruction: 'a', input: '', output: 'b' });
    assert.deepEqual(errors.issues.map((i) => `${i.line}: ${i.message}`), ['7: no "output" string field (fields: instruction); SFT records need instruction, output and optionally input', '8: "input" must be a string, got number']);
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
    kept.forEach((e: { ids: Int32Array; promptLen: number }, i: number) => {
      assert.deepEqual(Array.from(ds.get(i, tok.vocabSize).ids), Array.from(e.ids));
      assert.equal(ds.get(i, tok.vocabSize).promptLen, e.promptLen);
    });
    ds.close();
    await assert.rejects(buildSftCache([f], { ...opts, maxLen: 5 }), /no usable SFT examples \(12 record\(s\): 12 too long/);
  });

  it('padded batches: right padding, pad labels −100, N a multiple of 8; resumable order', async () => {
    const a = { ids: Int32Array.from([1, 5, 6, 7, 8]), promptLen: 3 };
    const b = { ids: Int32Array.from([1, 9, 10]), promptLen: 2 };
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
