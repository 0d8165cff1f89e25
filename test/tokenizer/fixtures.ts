/** The committed tokenizer fixtures (written by scripts/tokenizer/make_fixtures.mjs). */
import path from 'node:path';
import { ROOT } from '../helpers/fixtures.js';

/** Llama-2-style tokenizer.json with byte fallback, 411 tokens; chat template in tokenizer_config.json. */
export const LLAMA_BPE = path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'llama-bpe');
/** The same style without byte fallback, exactly 96 tokens: fits the golden tiny Llama; chat_template.jinja. */
export const TINY_96 = path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'tiny-96');
