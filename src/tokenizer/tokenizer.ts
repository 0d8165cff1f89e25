/**
 * Hugging Face tokenizer folders (Node): `Tokenizer.load(dir)` reads tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json and chat_template.jinja and hands them
 * to the node-free `fromFiles`; `save(dir)` writes them. Everything else is the node-free
 * tokenizer (tokenizer-core.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { Tokenizer as CoreTokenizer } from './tokenizer-core.js';

export type { EncodeOptions, DecodeOptions } from './tokenizer-core.js';

export class Tokenizer extends CoreTokenizer {
  /**
   * Loads `dir/tokenizer.json` with `tokenizer_config.json` (and special_tokens_map.json,
   * and the chat template from chat_template.jinja or the config) when present.
   */
  static load(dir: string): Tokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(file)) {
      const slow = fs.existsSync(path.join(dir, 'tokenizer.model'));
      throw new LongLoraError(`${dir}: no tokenizer.json${slow ? ' (only the sentencepiece tokenizer.model, which is not supported)' : ''}; ` +
        'pass --tokenizer with a folder that holds a Hugging Face tokenizer.json (every Llama repository on the Hub has one)');
    }
    const files = new Map<string, string>();
    for (const name of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja']) {
      const f = path.join(dir, name);
      if (!fs.existsSync(f)) continue;
      try {
        files.set(name, fs.readFileSync(f, 'utf8'));
      } catch (e) {
        throw new LongLoraError(`${f}: cannot read it (${(e as Error).message}); check the permissions`);
      }
    }
    return Tokenizer.fromFiles(files, dir);
  }

  /** Writes tokenizer.json and tokenizer_config.json (and the chat template) into `dir`. */
  save(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    writeJsonAtomic(path.join(dir, 'tokenizer.json'), this.json);
    writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), this.config);
  }
}
