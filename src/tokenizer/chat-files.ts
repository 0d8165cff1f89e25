/**
 * Chat templates from files (Node): `--chat-template llama2|file.jinja`. (A tokenizer
 * folder's own template is chosen by `Tokenizer.fromFiles`.)
 */
import fs from 'node:fs';
import { LongLoraError } from '../errors.js';
import { ChatTemplate, LLAMA2_CHAT_TEMPLATE } from './chat-template.js';

/**
 * A template by name or file: `llama2` (built in), a path to a .jinja file, or null for
 * the tokenizer's own.
 */
export function chatTemplateFrom(spec: string): ChatTemplate {
  if (spec === 'llama2') return new ChatTemplate(LLAMA2_CHAT_TEMPLATE, 'built-in llama2 chat template');
  if (!fs.existsSync(spec)) throw new LongLoraError(`chat template ${spec} not found; pass llama2 or a .jinja file`);
  return new ChatTemplate(fs.readFileSync(spec, 'utf8'), spec);
}
