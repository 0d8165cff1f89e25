/** Streaming JSON records: JSON Lines and JSON arrays, line numbers, the bad-record policy. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readRecords, RecordErrors } from '../../src/data/records.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('records');

async function all(file: string, policy: 'error' | 'skip' = 'error'): Promise<{ recs: Array<{ value: unknown; line: number }>; errors: RecordErrors }> {
  const errors = new RecordErrors(policy);
  const recs = [];
  for await (const r of readRecords(file, errors)) recs.push(r);
  return { recs, errors };
}

async function rejectsLL(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.equal(e.name, 'LongLoraError', String(e));
    for (const s of parts) assert.ok(e.message.includes(s), `message lacks "${s}": ${e.message}`);
    return true;
  });
}

describe('JSON Lines', () => {
  it('one record per line with its line number; blank lines and CRLF are fine', async () => {
    const f = path.join(fresh(), 'a.jsonl');
    fs.writeFileSync(f, '{"text": "one"}\r\n\n{"text": "two"}\n   \n{"text": "three"}');
    const { recs } = await all(f);
    assert.deepEqual(recs.map((r) => [(r.value as { text: string }).text, r.line]), [['one', 1], ['two', 3], ['three', 5]]);
  });

  it('a malformed line is an error naming file and line, or skipped and listed', async () => {
    const f = path.join(fresh(), 'bad.jsonl');
    fs.writeFileSync(f, '{"text": "ok"}\n{"text": "broken\n{"text": "ok2"}\n[1, 2\n');
    await rejectsLL(all(f), `${f}:2: not valid JSON`, '--bad-records skip');
    const { recs, errors } = await all(f, 'skip');
    assert.equal(recs.length, 2);
    assert.deepEqual(errors.issues.map((i) => i.line), [2, 4]);
    assert.match(errors.summary(), /2 bad record\(s\) skipped \(.*bad\.jsonl:2: not valid JSON/);
  });
});

describe('JSON arrays (streamed)', () => {
  it('elements with nested brackets, escaped quotes and unicode, with the line each starts on', async () => {
    const f = path.join(fresh(), 'a.json');
    const recs = [
      { instruction: 'a [tricky] {one}', output: 'say "hi", \\ then ]' },
      { instruction: '日本 🦙', input: 'x', output: 'y', nested: [[1, { a: ']' }]] },
    ];
    fs.writeFileSync(f, `\uFEFF[\n  ${JSON.stringify(recs[0])},\n\n  ${JSON.stringify(recs[1], null, 2)}\n]\n`);
    const { recs: got } = await all(f);
    assert.deepEqual(got.map((r) => r.value), recs);
    assert.deepEqual(got.map((r) => r.line), [2, 4]);
  });

  it('large elements across read chunks, with multi-byte characters on the boundaries', async () => {
    const f = path.join(fresh(), 'big.json');
    const big = Array.from({ length: 5 }, (_, i) => ({ text: `${'é日🦙'.repeat(60000 + i)}${i}` }));
    fs.writeFileSync(f, JSON.stringify(big));
    const { recs } = await all(f);
    assert.deepEqual(recs.map((r) => r.value), big);
  });

  it('a bad element is reported by line; a truncated or damaged array is fatal', async () => {
    const dir = fresh();
    const f = path.join(dir, 'bad.json');
    fs.writeFileSync(f, '[\n{"a": 1},\n{"a": nope},\n{"a": 3}\n]');
    await rejectsLL(all(f), `${f}:3: array element is not valid JSON`);
    const { recs, errors } = await all(f, 'skip');
    assert.equal(recs.length, 2);
    assert.equal(errors.issues[0]!.line, 3);
    const t = path.join(dir, 'trunc.json');
    fs.writeFileSync(t, '[{"a": 1}, {"a": 2');
    await rejectsLL(all(t, 'skip'), 'is not closed (file truncated?)');
    const e = path.join(dir, 'empty.json');
    fs.writeFileSync(e, '  \n');
    assert.equal((await all(e)).recs.length, 0, 'an empty file has no records (the corpus reports it)');
    throwsLL(() => readRecords(path.join(dir, 'none.json'), new RecordErrors('error')), 'not found');
  });
});

describe('a .json file with one object', () => {
  it('is one record; a .json file of objects on lines is JSON Lines', async () => {
    const dir = fresh();
    const one = path.join(dir, 'one.json');
    fs.writeFileSync(one, JSON.stringify({ text: 'a\nb', meta: { x: 1 } }, null, 2));
    assert.deepEqual((await all(one)).recs, [{ value: { text: 'a\nb', meta: { x: 1 } }, line: 1 }]);
    const lines = path.join(dir, 'lines.json');
    fs.writeFileSync(lines, '{"text": "a"}\n{"text": "b"}\n');
    assert.equal((await all(lines)).recs.length, 2);
  });
});
