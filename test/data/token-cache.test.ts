/**
 * Text corpora → token caches: the stream layout (BOS, documents joined with EOS), folders
 * and JSONL, reuse and invalidation through the sidecar, and the errors for bad input.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tokenizeCorpus } from '../../src/data/token-cache.js';
import { TokenFile } from '../../src/data/tokens.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { sink } from '../helpers/train.js';
import { tempFolders } from '../helpers/tmp.js';
import { LLAMA_BPE, TINY_96 } from '../tokenizer/fixtures.js';

const fresh = tempFolders('token-cache');
const tok = Tokenizer.load(LLAMA_BPE);

function readAll(file: string, vocab: number): number[] {
  const f = TokenFile.open(file, 'auto', vocab);
  const ids = Array.from(f.read(0, f.numTokens, vocab));
  f.close();
  return ids;
}

async function rejectsLL(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.equal(e.name, 'LongLoraError', String(e));
    for (const s of parts) assert.ok(e.message.includes(s), `message lacks "${s}": ${e.message}`);
    return true;
  });
}

function corpus(): string {
  const dir = fresh();
  fs.mkdirSync(path.join(dir, 'c', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'c', 'a.txt'), 'The grass is green.');
  fs.writeFileSync(path.join(dir, 'c', 'sub', 'b.md'), 'The sky is blue.\nHere we go.');
  fs.writeFileSync(path.join(dir, 'c', 'c.jsonl'), '{"text": "There and back again."}\n{"body": "x", "text": "日本 🦙"}\n');
  fs.writeFileSync(path.join(dir, 'c', 'notes.csv'), 'ignored');
  fs.writeFileSync(path.join(dir, 'c', '.hidden.txt'), 'ignored');
  return path.join(dir, 'c');
}

describe('tokenizing a corpus into a token cache', () => {
  it('BOS, then each document followed by EOS, files in sorted order', async () => {
    const dir = corpus();
    const out = sink();
    const c = await tokenizeCorpus([dir], { tokenizer: tok, out });
    assert.equal(c.reused, false);
    const enc = (s: string): number[] => tok.encode(s, { addSpecialTokens: false });
    const want = [1, ...enc('The grass is green.'), 2, ...enc('There and back again.'), 2, ...enc('日本 🦙'), 2, ...enc('The sky is blue.\nHere we go.'), 2];
    assert.deepEqual(readAll(c.file, tok.vocabSize), want);
    assert.equal(c.meta.documents, 4);
    assert.equal(c.meta.numTokens, want.length);
    assert.equal(c.meta.dtype, 'uint16');
    assert.match(c.notes.join(), /skipped 1 file\(s\) that are not text or JSON/);
    assert.match(out.text(), /tokenizing 3 file\(s\)/);
    assert.ok(c.file.includes(`${path.sep}.longlora-cache${path.sep}`));
  });

  it('a rebuild removes the temporaries a killed run left, not those of a running one', async () => {
    const dir = corpus();
    const first = await tokenizeCorpus([dir], { tokenizer: tok, out: sink() });
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // a process that has exited
    const stale = path.join(path.dirname(first.file), `.${path.basename(first.file)}.tmp-${gone}-0a1b2c`);
    const live = path.join(path.dirname(first.file), `.${path.basename(first.file)}.tmp-${process.pid}-0a1b2c`);
    for (const f of [stale, live]) fs.writeFileSync(f, '');
    await tokenizeCorpus([dir], { tokenizer: tok, out: sink(), force: true });
    assert.ok(!fs.existsSync(stale), 'the dead process\'s temporary is removed');
    assert.ok(fs.existsSync(live), 'a running process\'s temporary is kept');
    fs.rmSync(live);
  });

  it('reused while nothing changes; rebuilt when a source, the tokenizer or an option changes', async () => {
    const dir = corpus();
    const first = await tokenizeCorpus([dir], { tokenizer: tok, out: sink() });
    const again = await tokenizeCorpus([dir], { tokenizer: tok, out: sink() });
    assert.equal(again.reused, true);
    assert.equal(again.file, first.file);
    const a = path.join(dir, 'a.txt');
    fs.writeFileSync(a, 'The grass is green. The sun is yellow.');
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(a, later, later);
    const out = sink();
    const changed = await tokenizeCorpus([dir], { tokenizer: tok, out });
    assert.equal(changed.reused, false);
    assert.match(out.text(), /the source files changed/);
    assert.ok(changed.meta.numTokens > first.meta.numTokens);
    const other = await tokenizeCorpus([dir], { tokenizer: Tokenizer.load(TINY_96), out: sink() });
    assert.equal(other.reused, false);
    assert.notEqual(other.file, first.file, 'another tokenizer gets its own cache file');
    const explicit = path.join(fresh(), 'x.bin');
    await tokenizeCorpus([dir], { tokenizer: tok, output: explicit, out: sink() });
    const o2 = sink();
    const field = await tokenizeCorpus([dir], { tokenizer: tok, output: explicit, bos: false, out: o2 });
    assert.equal(field.reused, false);
    assert.match(o2.text(), /the options changed/);
    assert.notEqual(readAll(explicit, tok.vocabSize)[0], 1);
    fs.truncateSync(explicit, 4);
    const o3 = sink();
    await tokenizeCorpus([dir], { tokenizer: tok, output: explicit, bos: false, out: o3 });
    assert.match(o3.text(), /the token file has the wrong size/);
  });

  it('a record without the text field names file and line and the fix; skip mode counts it', async () => {
    const dir = fresh();
    const f = path.join(dir, 'd.jsonl');
    fs.writeFileSync(f, '{"text": "ok"}\n{"content": "no"}\n{"instruction": "i", "output": "o"}\nnot json\n');
    await rejectsLL(tokenizeCorpus([f], { tokenizer: tok, out: sink() }), `${path.resolve(f)}:2: no "text" text field (fields: content); set --text-field`);
    const c = await tokenizeCorpus([f], { tokenizer: tok, badRecords: 'skip', out: sink() });
    assert.equal(c.meta.documents, 1);
    assert.equal(c.meta.skippedRecords, 3);
    assert.match(c.notes.join(), /3 bad record\(s\) skipped .*d\.jsonl:3: .*--data-format sft/);
    const by = await tokenizeCorpus([f], { tokenizer: tok, textField: 'content', badRecords: 'skip', out: sink() });
    assert.equal(by.meta.documents, 1);
  });

  it('links: a loop or a link to nothing is skipped, a file reached twice is read once', async () => {
    const dir = fresh();
    const c = path.join(dir, 'c');
    fs.mkdirSync(path.join(c, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(c, 'a.txt'), 'The grass is green.');
    fs.symlinkSync('..', path.join(c, 'sub', 'up')); // a loop
    fs.symlinkSync('missing.txt', path.join(c, 'dead.txt'));
    fs.symlinkSync('a.txt', path.join(c, 'same.txt'));
    const r = await tokenizeCorpus([c, path.join(c, 'a.txt')], { tokenizer: tok, out: sink() });
    assert.equal(r.meta.documents, 1);
    assert.deepEqual(readAll(r.file, tok.vocabSize), [1, ...tok.encode('The grass is green.', { addSpecialTokens: false }), 2]);
    assert.match(r.notes.join('\n'), /1 link\(s\) that lead nowhere \(e\.g\. .*dead\.txt\)/);
    assert.match(r.notes.join('\n'), /read 2 file\(s\) or folder\(s\) once/);
    await rejectsLL(tokenizeCorpus([path.join(c, 'dead.txt')], { tokenizer: tok, out: sink() }), 'dead.txt is a link that leads nowhere');
  });

  it('a UTF-8 byte order mark is not part of a text document', async () => {
    const dir = fresh();
    fs.writeFileSync(path.join(dir, 'bom.txt'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('The sky is blue.')]));
    const r = await tokenizeCorpus([dir], { tokenizer: tok, out: sink() });
    assert.deepEqual(readAll(r.file, tok.vocabSize), [1, ...tok.encode('The sky is blue.', { addSpecialTokens: false }), 2]);
    // a cache written before (format 1, the mark tokenized) is rebuilt, not reused
    const meta = JSON.parse(fs.readFileSync(`${r.file}.json`, 'utf8'));
    fs.writeFileSync(`${r.file}.json`, JSON.stringify({ ...meta, format: 1 }));
    const out = sink();
    assert.equal((await tokenizeCorpus([dir], { tokenizer: tok, out })).reused, false);
    assert.match(out.text(), /written by another version/);
  });

  it('a text file that is not UTF-8 is read with U+FFFD and named in a note', async () => {
    const dir = fresh();
    fs.writeFileSync(path.join(dir, 'latin1.txt'), Buffer.from('caf\xe9 au lait', 'latin1'));
    fs.writeFileSync(path.join(dir, 'fine.txt'), 'The sky is blue.');
    const r = await tokenizeCorpus([dir], { tokenizer: tok, out: sink() });
    assert.ok(r.notes.some((n) => /^note: 1 text file\(s\) are not valid UTF-8 \(e\.g\. .*latin1\.txt\)/.test(n)), r.notes.join('\n'));
  });

  it('empty corpora are clear errors', async () => {
    const dir = fresh();
    await rejectsLL(tokenizeCorpus([dir], { tokenizer: tok, out: sink() }), 'no corpus files in');
    fs.writeFileSync(path.join(dir, 'empty.txt'), '  \n\n');
    fs.writeFileSync(path.join(dir, 'empty.jsonl'), '');
    await rejectsLL(tokenizeCorpus([dir], { tokenizer: tok, out: sink() }), 'the corpus has no documents with text', '1 empty document(s)');
    await rejectsLL(tokenizeCorpus([path.join(dir, 'missing')], { tokenizer: tok, out: sink() }), 'missing not found');
  });

  it('a token file of uint32 ids read as uint16 (every second token 0) is named, not trained on', () => {
    const file = path.join(fresh(), 'u32.bin');
    const ids = Uint32Array.from({ length: 200 }, (_, i) => 3 + ((i * 37) % 90));
    fs.writeFileSync(file, Buffer.from(ids.buffer));
    const as16 = TokenFile.open(file, 'auto', 96);
    assert.equal(as16.dtype, 'uint16');
    assert.throws(() => as16.checkVocabulary(96), /read as uint16, every second token is 0: the file holds uint32 ids; pass --data-dtype uint32/);
    as16.close();
    const as32 = TokenFile.open(file, 'uint32', 96);
    as32.checkVocabulary(96);
    assert.deepEqual(Array.from(as32.read(0, 3, 96)), [3, 40, 77]);
    as32.close();
    fs.writeFileSync(file, Buffer.from(Uint16Array.from(ids).buffer));
    const real16 = TokenFile.open(file, 'auto', 96);
    real16.checkVocabulary(96);
    real16.close();
  });
});
