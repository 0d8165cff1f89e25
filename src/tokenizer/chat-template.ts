/**
 * Chat templates: the Jinja template a model ships (`chat_template.jinja`, or the
 * `chat_template` field of tokenizer_config.json — a string, or a list of named
 * templates of which "default" is used), rendered with @huggingface/jinja exactly as
 * transformers' `apply_chat_template` renders it (messages, bos_token, eos_token,
 * add_generation_prompt; raise_exception is the renderer's own). The Llama-2 chat
 * template is built in as a fallback for models without one. Nothing here reads files
 * (chat-files.ts does, in Node), so a browser can use it.
 */
import { Template } from '@huggingface/jinja';
import { LongLoraError } from '../errors.js';

/** One turn of a conversation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

/** Variables of a render besides the messages. */
export interface RenderOptions {
  /** End with the text that opens the assistant's turn. Default true. */
  addGenerationPrompt?: boolean;
  bosToken?: string | null;
  eosToken?: string | null;
}

/** Meta's Llama-2 chat format (the template of meta-llama/Llama-2-*-chat-hf). */
export const LLAMA2_CHAT_TEMPLATE = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** A parsed chat template; `render` gives the prompt text. */
export class ChatTemplate {
  private readonly template: Template;

  /** `where` names the file (and field) in error messages. */
  constructor(readonly source: string, readonly where: string) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new LongLoraError(`${where}: the chat template does not parse (${(e as Error).message}); fix it or pass --chat-template`);
    }
  }

  /** The prompt text for `messages` (tokenize it without adding special tokens: the template has them). */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    try {
      return this.template.render({
        messages,
        bos_token: opts.bosToken ?? '',
        eos_token: opts.eosToken ?? '',
        add_generation_prompt: opts.addGenerationPrompt ?? true,
      });
    } catch (e) {
      if (e instanceof LongLoraError) throw e;
      throw new LongLoraError(`${this.where}: rendering the chat template failed (${(e as Error).message})`);
    }
  }
}

/**
 * The template in a tokenizer_config.json's `chat_template` field (a string, or a list of
 * named templates of which "default" is used), or null; `where` names the field in messages.
 */
export function chatTemplateOfConfig(config: Record<string, unknown>, where: string): ChatTemplate | null {
  const field = config.chat_template;
  if (typeof field === 'string') return new ChatTemplate(field, where);
  if (Array.isArray(field)) {
    const named = field as Array<{ name?: unknown; template?: unknown }>;
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    if (pick && typeof pick.template === 'string') return new ChatTemplate(pick.template, `${where} (${String(pick.name)})`);
  }
  return null;
}
