/**
 * Passkey retrieval (the official passkey_retrivial.py, SPEC §6): a pass key hidden at a
 * random depth in filler text; the model must repeat it. The prompt is five lines joined
 * with "\n" — the task, a filler prefix, the key line, a filler suffix, the question — the
 * filler being the filler sentence joined with spaces and cut to a number of characters,
 * the prefix length uniform in [0, n) and the key uniform in [1, 50000) (NumPy's
 * `randint`, seeded per trial exactly as the official script seeds it, so trial i with seed
 * i is the official trial i). The model decodes greedily as many tokens as the key has
 * (tokenized without BOS); a trial passes when those ids equal the key's ids. Lengths are
 * given in tokens: the filler size for each is calibrated with the tokenizer, and the
 * measured prompt lengths are reported.
 */
import { LongLoraError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';
import { generate, generatorOptions, type GeneratorOptions } from './generate.js';
import { NumpyRandomState } from './numpy-random.js';

/** Line 1 of the official prompt. */
export const PASSKEY_TASK = 'There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.';
/** The official filler sentence. */
export const PASSKEY_FILLER = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
/** Line 5 of the official prompt. */
export const PASSKEY_QUESTION = 'What is the pass key? The pass key is';

/** The filler sentence repeated (joined by spaces) to at least `n` characters. */
function fillerText(n: number): string {
  const reps = Math.max(5000, Math.ceil(n / (PASSKEY_FILLER.length + 1)) + 1);
  return Array<string>(reps).fill(PASSKEY_FILLER).join(' ');
}

/** A prompt and the key it hides. */
export interface PasskeyPrompt {
  prompt: string;
  /** The pass key as text (what the model must produce). */
  passkey: string;
  /** Characters of filler before the key line. */
  prefixChars: number;
}

/**
 * The official prompt for `fillerChars` characters of filler and a trial seed
 * (numpy.random.seed(seed); prefix = randint(0, n); key = randint(1, 50000)).
 */
export function passkeyPrompt(fillerChars: number, seed: number): PasskeyPrompt {
  if (!Number.isInteger(fillerChars) || fillerChars < 1) throw new LongLoraError(`passkey: the filler must be at least 1 character, got ${fillerChars}`);
  const rng = new NumpyRandomState(seed);
  const prefix = rng.randint(0, fillerChars);
  const suffix = fillerChars - prefix;
  const filler = fillerText(fillerChars);
  const key = rng.randint(1, 50000);
  const lines = [
    PASSKEY_TASK,
    filler.slice(0, prefix),
    `The pass key is ${key}. Remember it. ${key} is the pass key.`,
    filler.slice(0, suffix),
    PASSKEY_QUESTION,
  ];
  return { prompt: lines.join('\n'), passkey: String(key), prefixChars: prefix };
}

/** Filler characters for a prompt of about `targetTokens` tokens (measured with the tokenizer). */
export function fillerCharsFor(targetTokens: number, tok: Tokenizer): number {
  const overhead = tok.encode(passkeyPrompt(1, 0).prompt).length;
  const sample = fillerText(20000).slice(0, 20000);
  const perChar = tok.encode(sample, { addSpecialTokens: false }).length / sample.length;
  const chars = Math.floor((targetTokens - overhead) / perChar);
  if (chars < 1) throw new LongLoraError(`passkey: ${targetTokens} tokens is shorter than the prompt without filler (${overhead} tokens)`);
  return chars;
}

/** The official ladder: every `interval` tokens up to `maxTokens`. */
export function passkeyLadder(maxTokens: number, interval: number): number[] {
  if (!(interval > 0) || maxTokens < interval) throw new LongLoraError(`passkey: need --interval > 0 and --max-tokens ≥ --interval, got ${interval} and ${maxTokens}`);
  return Array.from({ length: Math.floor(maxTokens / interval) }, (_, i) => (i + 1) * interval);
}

/** One trial: the prompt length, the key, the answer. */
export interface PasskeyTrial {
  seed: number;
  tokens: number;
  passkey: string;
  answer: string;
  passed: boolean;
}

/** Runs one trial: greedy decoding of as many tokens as the key has; passed when the ids match. */
export async function passkeyTrial(model: LlamaForCausalLM, tok: Tokenizer, fillerChars: number, seed: number, cache: GeneratorOptions = {}): Promise<PasskeyTrial> {
  const p = passkeyPrompt(fillerChars, seed);
  const ids = tok.encode(p.prompt);
  const want = tok.encode(p.passkey, { addSpecialTokens: false });
  const r = await generate(model, ids, { temperature: 0, maxNewTokens: want.length, ...cache });
  const passed = r.ids.length === want.length && r.ids.every((id, i) => id === want[i]);
  return { seed, tokens: ids.length, passkey: p.passkey, answer: tok.decode(r.ids, { skipSpecialTokens: true }).trim(), passed };
}

/** The trials at one length and their accuracy. */
export interface PasskeyLength {
  /** Requested length in tokens. */
  targetTokens: number;
  fillerChars: number;
  trials: PasskeyTrial[];
  passed: number;
  accuracy: number;
  meanTokens: number;
}

/** Options of `passkeyEval`. */
export interface PasskeyOptions extends GeneratorOptions {
  /** Prompt lengths in tokens. */
  lengths: readonly number[];
  /** Trials per length (official 10). */
  trials: number;
  /** Trial i uses seed `seed + i` (official: 0). */
  seed?: number;
  out?: ProgressStream;
}

/** Accuracy per length over a ladder of lengths. */
export async function passkeyEval(model: LlamaForCausalLM, tok: Tokenizer, opts: PasskeyOptions): Promise<PasskeyLength[]> {
  if (!Number.isInteger(opts.trials) || opts.trials < 1) throw new LongLoraError(`--trials must be ≥ 1, got ${opts.trials}`);
  const seed0 = opts.seed ?? 0;
  const bar = new ProgressBar(opts.lengths.length * opts.trials, 'trial', 0, opts.out ?? process.stderr);
  const out: PasskeyLength[] = [];
  let done = 0;
  for (const target of opts.lengths) {
    const fillerChars = fillerCharsFor(target, tok);
    const trials: PasskeyTrial[] = [];
    for (let i = 0; i < opts.trials; i++) {
      trials.push(await passkeyTrial(model, tok, fillerChars, seed0 + i, generatorOptions(opts)));
      bar.update(++done, { tokens: String(trials.at(-1)!.tokens), passed: `${trials.filter((t) => t.passed).length}/${trials.length}` });
    }
    const passed = trials.filter((t) => t.passed).length;
    out.push({ targetTokens: target, fillerChars, trials, passed, accuracy: passed / trials.length, meanTokens: trials.reduce((a, t) => a + t.tokens, 0) / trials.length });
  }
  return out;
}
