/**
 * `longlora chat`: an interactive, multi-turn conversation through the model's chat
 * template (or the built-in Llama-2 one), streamed as it is generated. Each turn reuses the
 * KV cache of the conversation so far. Commands: /reset (forget the conversation),
 * /system TEXT (set the system prompt and reset), /quit. Works with piped stdin, one user
 * message per line (no prompts are printed then). A turn that fails with a clear error (a
 * sliding window the conversation outgrew) is reported and skipped; the session goes on.
 */
import readline from 'node:readline';
import { Generator, describeSpeed } from '../../eval/generate.js';
import { chatTemplateFrom } from '../../tokenizer/chat-files.js';
import type { ChatMessage, ChatTemplate } from '../../tokenizer/chat-template.js';
import type { OptionSpec } from '../args.js';
import { cacheFlags, parseWith, samplingFlags, samplingFrom, SAMPLING_OPTIONS } from './generate.js';
import { loadModel, MODEL_OPTIONS, warnContext } from './load-model.js';
import { LongLoraError } from '../../errors.js';

const OPTIONS: Record<string, OptionSpec & { multiple?: boolean }> = {
  ...MODEL_OPTIONS,
  system: { type: 'string', help: 'system prompt' },
  stats: { type: 'boolean', help: 'print tokens/s after every reply' },
  ...SAMPLING_OPTIONS,
};

/** `longlora chat`. */
export async function chatCommand(argv: string[]): Promise<void> {
  const v = parseWith(argv, 'longlora chat --model DIR|org/name|FILE.gguf [--adapter DIR] [--system TEXT] [options]\n       in the chat: /reset forgets the conversation, /system TEXT sets the system prompt, /quit ends', OPTIONS);
  if (!v) return;
  const sampling = samplingFlags(v, argv);
  const cache = cacheFlags(v);
  const m = await loadModel(v as Record<string, string>);
  const gen = new Generator(m.model, cache);
  try {
    for (const n of m.notes) process.stderr.write(`${n}\n`);
    const tok = m.tokenizer;
    let template: ChatTemplate;
    if (typeof v['chat-template'] === 'string') template = chatTemplateFrom(v['chat-template']);
    else if (tok.chatTemplate) template = tok.chatTemplate;
    else {
      template = chatTemplateFrom('llama2');
      process.stderr.write(`${tok.source} has no chat template; using the Llama-2 chat format\n`);
    }
    const opts = samplingFrom(sampling, m);
    const tty = process.stdin.isTTY === true;
    let warned = false; // the context note, once per conversation
    let system = typeof v.system === 'string' ? v.system : null;
    let history: ChatMessage[] = [];
    if (tty) process.stderr.write('chat: /reset forgets the conversation, /system TEXT sets the system prompt, /quit ends\n');
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    const ask = (): void => { if (tty) process.stdout.write('\nyou> '); };
    // Ctrl-C stops a reply (what it said so far stays in the conversation); at the prompt it ends the chat.
    let replying: AbortController | null = null;
    const onSigint = (): void => {
      if (replying) { replying.abort(); return; }
      process.exitCode = 130;
      rl.close();
    };
    process.on('SIGINT', onSigint);
    ask();
    try {
      for await (const raw of rl) {
        const line = raw.trim();
        if (line === '') { ask(); continue; }
        if (line === '/quit' || line === '/exit') break;
        const isSystem = line === '/system' || line.startsWith('/system ');
        if (line === '/reset' || isSystem) {
          if (isSystem) system = line.slice('/system'.length).trim() || null;
          history = [];
          gen.reset();
          process.stderr.write(line === '/reset' ? '(conversation reset)\n' : `(system prompt ${system ? 'set' : 'cleared'}; conversation reset)\n`);
          ask();
          continue;
        }
        if (line.startsWith('/')) {
          process.stderr.write(`unknown command ${line}; use /reset, /system TEXT or /quit\n`);
          ask();
          continue;
        }
        history.push({ role: 'user', content: line });
        const messages = system ? [{ role: 'system', content: system }, ...history] : history;
        const prompt = template.render(messages, { bosToken: tok.bosToken, eosToken: tok.eosToken, addGenerationPrompt: true });
        const ids = tok.encode(prompt, { addSpecialTokens: false });
        if (!warned) warned = warnContext(m.model.config, ids.length + sampling.maxNewTokens!, `the conversation's ${ids.length} tokens and up to ${sampling.maxNewTokens} new ones`);
        if (tty) process.stdout.write('assistant> ');
        let r;
        replying = new AbortController();
        try {
          r = await gen.generate(ids, { ...opts, onText: (t) => process.stdout.write(t), signal: replying.signal });
        } catch (err) {
          if (!(err instanceof LongLoraError)) throw err;
          // e.g. a sliding window the conversation has outgrown: this message is dropped, the rest kept
          history.pop();
          process.stderr.write(`\nerror: ${err.message}\n(that message was not answered; /reset starts a new conversation)\n`);
          ask();
          continue;
        } finally {
          replying = null;
        }
        process.stdout.write('\n');
        if (r.stopReason === 'aborted') process.stderr.write('(stopped; Ctrl-C at the prompt ends the chat)\n');
        history.push({ role: 'assistant', content: r.text.trim() });
        if (v.stats) process.stderr.write(`${describeSpeed(r)}\n`);
        ask();
      }
    } finally {
      process.off('SIGINT', onSigint);
    }
    rl.close();
  } finally {
    gen.dispose();
    m.model.dispose();
  }
}
