#!/usr/bin/env node
/**
 * Cleans the KJV text that fetch-kjv.sh wrote into one document per book and splits the
 * books into a training set and a held-out set of whole books (every held-out book is
 * longer than the extended context, so perplexity at long lengths is measurable on it).
 *
 *   node scripts/tiny-model/prepare-corpus.mjs WORK_DIR
 *
 * Reads WORK_DIR/kjv-raw.txt; writes WORK_DIR/kjv-train.jsonl and WORK_DIR/kjv-heldout.jsonl
 * (JSON Lines, {"book": ..., "text": ...} in canonical order). A book's text is its chapters,
 * each a "Book N" heading followed by one verse per line ("1 In the beginning ..."), with a
 * blank line between chapters. Deterministic: the same input gives the same bytes.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Whole books held out from training (narrative, wisdom, prophecy, gospel, epistles). */
export const HELD_OUT = ['Ruth', 'Esther', 'Ecclesiastes', 'Daniel', 'Mark', 'Romans', 'Hebrews'];

const dir = process.argv[2];
if (!dir) { console.error('usage: prepare-corpus.mjs WORK_DIR'); process.exit(2); }
const raw = fs.readFileSync(path.join(dir, 'kjv-raw.txt'), 'utf8');

const books = []; // { book, chapters: [{ heading, verses: [] }] }
for (const line of raw.split('\n')) {
  if (line.trim() === '') continue;
  const heading = /^(\S.*) (\d+)$/.exec(line);
  const verse = /^ +(\d+) (.*)$/.exec(line);
  if (heading) {
    const name = heading[1];
    if (books.at(-1)?.book !== name) books.push({ book: name, chapters: [] });
    books.at(-1).chapters.push({ heading: line, verses: [] });
  } else if (verse) {
    const ch = books.at(-1)?.chapters.at(-1);
    if (!ch) throw new Error(`verse before any chapter heading: ${line}`);
    ch.verses.push(`${verse[1]} ${verse[2].replace(/\s+/g, ' ').trim()}`);
  } else {
    throw new Error(`unexpected line: ${JSON.stringify(line)}`);
  }
}
if (books.length !== 66) throw new Error(`expected 66 books, found ${books.length}`);
const chapters = books.reduce((a, b) => a + b.chapters.length, 0);
const verses = books.reduce((a, b) => a + b.chapters.reduce((x, c) => x + c.verses.length, 0), 0);
if (chapters !== 1189 || verses !== 31102) throw new Error(`expected 1189 chapters and 31102 verses, found ${chapters} and ${verses}`);
for (const name of HELD_OUT) if (!books.some((b) => b.book === name)) throw new Error(`held-out book ${name} not found`);

const text = (b) => b.chapters.map((c) => [c.heading, ...c.verses].join('\n')).join('\n\n');
const jsonl = (bs) => bs.map((b) => `${JSON.stringify({ book: b.book, text: text(b) })}\n`).join('');
const train = books.filter((b) => !HELD_OUT.includes(b.book));
const held = books.filter((b) => HELD_OUT.includes(b.book));
fs.writeFileSync(path.join(dir, 'kjv-train.jsonl'), jsonl(train));
fs.writeFileSync(path.join(dir, 'kjv-heldout.jsonl'), jsonl(held));
const chars = (bs) => bs.reduce((a, b) => a + text(b).length, 0).toLocaleString('en-US');
console.log(`prepare-corpus: ${books.length} books, ${chapters} chapters, ${verses} verses; ` +
  `training ${train.length} books (${chars(train)} characters), held out ${held.length} (${held.map((b) => b.book).join(', ')}; ${chars(held)} characters)`);
