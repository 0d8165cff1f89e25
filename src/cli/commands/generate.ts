/**
 * `longlora generate`: continue a prompt (from --prompt, --prompt-file or stdin) with a KV
 * cache, streaming the text to stdout as it is decoded and reporting tokens/s on stderr.
 * Sampling defaults are the official inference settings (temperature 0.6, top-p 0.9, 512
 * new tokens); --template llama2 wraps the prompt as the official inference script does
 * (`[INST]{prompt}[/INST]`), --template chat applies the model's chat template.
 */
import fs from 'node:fs';
import { LongLoraError } from '../../errors.js';
import { describeSpeed, generate, PREFILL_CHUNK, type GenerateOptions, type GeneratorOptions } from '../../eval/generate.js';
import { ProgressBar } from '../../train/progress.js';
import { PRECISIONS, type Precision } from '../../tensor/dtype.js';
import { checkSampling } from '../../eval/sampling.js';
import { llama2Prompt } from '../../data/sft.js';
import { chatTemplateFrom } from '../../tokenizer/chat-files.js';
import { commandOf, helpText, parseStrict, type OptionSpec } from '../args.js';
import { intFlag, loadModel, MODEL_OPTIONS, numFlag, warnContext, type LoadedModel } from './load-model.js';
import { decodeUtf8 } from '../../util/text.js';

/** The KV cache and prompt flags of `generate`, `chat` and `eval passkey`. */
export const CACHE_OPTIONS: Record<string, OptionSpec> = {
  'kv-cache-dtype': { type: 'string', default: 'f32', help: 'what the KV cache holds: f32, or bf16 / f16 for half its memory at long contexts' },
  'prefill-chunk': { type: 'string', default: String(PREFILL_CHUNK), help: 'prompt tokens run at once; a longer prompt goes in pieces (less memory)' },
};

/** --kv-cache-dtype and --prefill-chunk, checked (before the model is loaded). */
export function cacheFlags(v: Record<string, unknown>): Required<GeneratorOptions> {
  const s = String(v['kv-cache-dtype'] ?? 'f32');
  if (!(PRECISIONS as readonly string[]).includes(s)) throw new LongLoraError(`--kv-cache-dtype must be f32, bf16 or f16, got ${s}`);
  return { kvCacheDtype: s as Precision, prefillChunk: intFlag(v as Record<string, string>, 'prefill-chunk') ?? PREFILL_CHUNK };
}

/** Sampling and stopping flags shared with `chat`. */
export const SAMPLING_OPTIONS: Record<string, OptionSpec & { multiple?: boolean }> = {
  'max-new-tokens': { type: 'string', default: '512', help: 'most tokens to generate (official 512)' },
  temperature: { type: 'string', default: '0.6', help: 'sampling temperature, 0 for greedy (official 0.6)' },
  'top-p': { type: 'string', default: '0.9', help: 'nucleus sampling threshold, 1 to disable (official 0.9)' },
  'top-k': { type: 'string', default: '0', help: 'sample among the k most likely tokens, 0 to disable' },
  greedy: { type: 'boolean', help: 'greedy decoding (same as --temperature 0)' },
  seed: { type: 'string', default: '0', help: 'seed of the sampling generator' },
  stop: { type: 'string', multiple: true, help: 'stop at this string (repeatable); EOS always stops' },
  'chat-template': { type: 'string', help: 'llama2 (built in) or a .jinja file, instead of the tokenizer\'s template' },
  ...CACHE_OPTIONS,
};

const OPTIONS: Record<string, OptionSpec & { multiple?: boolean }> = {
  ...MODEL_OPTIONS,
  prompt: { type: 'string', help: 'the prompt text' },
  'prompt-file': { type: 'string', help: 'read the prompt from this file' },
  template: { type: 'string', default: 'none', help: 'none (raw text), llama2 ([INST]prompt[/INST], official inference) or chat (chat template)' },
  ...SAMPLING_OPTIONS,
};

type Values = Record<string, string | boolean | string[] | undefined>;

/** Node's strict parser over an option table (with repeatable options); null after --help. */
export function parseWith(argv: string[], usage: string, options: Record<string, OptionSpec & { multiple?: boolean }>): Values | null {
  const spec: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; default?: string | boolean }> = { help: { type: 'boolean' } };
  for (const [k, o] of Object.entries(options)) spec[k] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.default !== undefined ? { default: o.default } : {}) };
  const { values } = parseStrict(argv, spec, commandOf(usage), false, usage);
  if (values.help) {
    console.log(helpText(usage, options));
    return null;
  }
  return values as Values;
}

type SamplingFlags = Pick<GenerateOptions, 'maxNewTokens' | 'temperature' | 'topP' | 'topK' | 'seed' | 'stopStrings'>;

/**
 * The sampling flags, checked (before the model is loaded, so a typo costs nothing).
 * `argv` tells the flags given from their defaults: --greedy with a sampling flag is a
 * contradiction, not a silent override.
 */
export function samplingFlags(v: Values, argv: readonly string[] = []): SamplingFlags {
  const f = v as Record<string, string>;
  if (v.greedy) {
    const clash = ['--temperature', '--top-p', '--top-k'].filter((k) => argv.some((a) => a === k || a.startsWith(`${k}=`)));
    if (clash.length) throw new LongLoraError(`--greedy always takes the most likely token, so ${clash.join(' and ')} would have no effect; give one or the other`);
  }
  const s = {
    maxNewTokens: intFlag(f, 'max-new-tokens')!,
    temperature: v.greedy ? 0 : numFlag(f, 'temperature', 0.6),
    topP: numFlag(f, 'top-p', 0.9),
    topK: intFlag(f, 'top-k', 0)!,
    seed: intFlag(f, 'seed', 0)!,
    stopStrings: (v.stop as string[] | undefined) ?? [],
  };
  if (s.stopStrings.includes('')) throw new LongLoraError('--stop needs a non-empty string (an empty one would stop at once)');
  checkSampling(s);
  return s;
}

/** Generation options: the checked flags, and the model's stop tokens and tokenizer. */
export function samplingFrom(flags: SamplingFlags, m: LoadedModel): GenerateOptions {
  return { ...flags, stopIds: m.tokenizer.stopIds(m.eosIds), tokenizer: m.tokenizer };
}

function readPrompt(v: Values): string {
  if (typeof v.prompt === 'string' && typeof v['prompt-file'] === 'string') throw new LongLoraError('give --prompt or --prompt-file, not both');
  if (typeof v.prompt === 'string') return v.prompt;
  if (typeof v['prompt-file'] === 'string') {
    const f = v['prompt-file'];
    if (!fs.existsSync(f)) throw new LongLoraError(`prompt file ${f} not found`);
    if (fs.statSync(f).isDirectory()) throw new LongLoraError(`--prompt-file ${f} is a folder; give a text file`);
    return promptText(fs.readFileSync(f), `prompt file ${f}`);
  }
  if (process.stdin.isTTY) throw new LongLoraError('no prompt: pass --prompt TEXT, --prompt-file FILE, or pipe the prompt into stdin');
  return promptText(fs.readFileSync(0), 'the prompt on stdin');
}

/** UTF-8 text of a prompt read from a file or stdin, without a byte-order mark; a note when bytes are not UTF-8. */
export function promptText(bytes: Uint8Array, what: string): string {
  const { text, valid } = decodeUtf8(bytes);
  if (!valid) process.stderr.write(`note: ${what} is not valid UTF-8; its invalid bytes became U+FFFD (\uFFFD). Convert it first (e.g. iconv -f latin1 -t utf-8)\n`);
  return text;
}

/** `longlora generate`. */
export async function generateCommand(argv: string[]): Promise<void> {
  const v = parseWith(argv, 'longlora generate --model DIR|org/name|FILE.gguf [--adapter DIR] (--prompt TEXT | --prompt-file FILE | < stdin) [options]', OPTIONS);
  if (!v) return;
  const template = String(v.template);
  if (!['none', 'llama2', 'chat'].includes(template)) throw new LongLoraError(`--template must be none, llama2 or chat, got ${template}`);
  if (typeof v['chat-template'] === 'string' && template !== 'chat') throw new LongLoraError(`--chat-template is the template --template chat renders; add --template chat (now --template ${template})`);
  const text = readPrompt(v);
  const sampling = samplingFlags(v, argv);
  const cache = cacheFlags(v);
  const m = await loadModel(v as Record<string, string>);
  try {
    for (const n of m.notes) process.stderr.write(`${n}\n`);
    const tok = m.tokenizer;
    let ids: number[];
    if (template === 'chat') {
      const chat = typeof v['chat-template'] === 'string' ? chatTemplateFrom(v['chat-template']) : tok.chatTemplate;
      if (!chat) throw new LongLoraError(`${tok.source} has no chat template; pass --chat-template llama2 or a .jinja file`);
      ids = tok.encode(chat.render([{ role: 'user', content: text }], { bosToken: tok.bosToken, eosToken: tok.eosToken }), { addSpecialTokens: false });
    } else {
      ids = tok.encode(template === 'llama2' ? llama2Prompt(text) : text);
    }
    if (text === '') process.stderr.write('note: the prompt is empty; generating from the start of a text\n');
    warnContext(m.model.config, ids.length + sampling.maxNewTokens!, `the prompt's ${ids.length} tokens and up to ${sampling.maxNewTokens} new ones`);
    const bar = ids.length > cache.prefillChunk ? new ProgressBar(ids.length, 'prompt tokens') : null;
    // Ctrl-C stops the generation; the text so far and the speed line are still written.
    const stop = new AbortController();
    const onSigint = (): void => stop.abort();
    process.on('SIGINT', onSigint);
    let r;
    try {
      r = await generate(m.model, ids, {
        ...samplingFrom(sampling, m), ...cache, onText: (t) => process.stdout.write(t), signal: stop.signal,
        ...(bar ? { onPrefill: (done: number) => bar.update(done) } : {}),
      });
    } finally {
      process.off('SIGINT', onSigint);
    }
    process.stdout.write('\n');
    process.stderr.write(`${describeSpeed(r)}; stopped: ${r.stopReason === 'aborted' ? 'interrupted' : r.stopReason}\n`);
    if (r.stopReason === 'aborted') process.exitCode = 130;
  } finally {
    m.model.dispose();
  }
}
