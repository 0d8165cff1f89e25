#!/usr/bin/env node
/**
 * Trains the bundled model's tokenizer: byte-fallback BPE in the Llama-2 layout
 * (src/tokenizer/train-bpe.ts) on the training books only, and writes tokenizer.json and
 * tokenizer_config.json into the model folder. Deterministic.
 *
 *   node scripts/tiny-model/train-tokenizer.mjs WORK_DIR MODEL_DIR [VOCAB_SIZE=2048]
 *
 * Needs `npm run build` first (it imports dist/).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { trainBpe } = await import(path.join(root, 'dist/src/tokenizer/train-bpe.js'));
const { Tokenizer } = await import(path.join(root, 'dist/src/tokenizer/tokenizer.js'));

const [work, modelDir, vocabArg] = process.argv.slice(2);
if (!work || !modelDir) { console.error('usage: train-tokenizer.mjs WORK_DIR MODEL_DIR [VOCAB_SIZE]'); process.exit(2); }
const vocabSize = Number(vocabArg ?? 2048);
const docs = fs.readFileSync(path.join(work, 'kjv-train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).text);
const t0 = performance.now();
const r = trainBpe(docs, { vocabSize });
fs.mkdirSync(modelDir, { recursive: true });
fs.writeFileSync(path.join(modelDir, 'tokenizer.json'), `${JSON.stringify(r.tokenizerJson)}\n`);
fs.writeFileSync(path.join(modelDir, 'tokenizer_config.json'), `${JSON.stringify(r.tokenizerConfig, null, 2)}\n`);
// Check that it loads through the project's tokenizer and round-trips the corpus.
const tok = Tokenizer.load(modelDir);
let ids = 0;
let chars = 0;
for (const d of docs) {
  const e = tok.encode(d, { addSpecialTokens: false });
  if (tok.decode(e) !== d) throw new Error('the trained tokenizer does not round-trip the corpus');
  ids += e.length;
  chars += d.length;
}
console.log(`train-tokenizer: ${r.vocab.length} tokens (${r.chars} characters, ${r.merges.length} merges) in ${((performance.now() - t0) / 1000).toFixed(1)}s; ` +
  `${ids.toLocaleString('en-US')} tokens for ${chars.toLocaleString('en-US')} characters (${(chars / ids).toFixed(2)} characters per token); fast path: ${tok.hasFastPath}`);
