/**
 * Text generation with a KV cache: the prompt is run once (prefill), then each new token
 * costs one position of attention over the cache. A `Generator` keeps its cache and the
 * tokens in it between calls, so a chat turn only runs the tokens that are new since the
 * last one (the common prefix is reused). Stops on EOS ids, on stop strings, or at the
 * token limit; streams text through a callback as it is decoded; reports tokens/s.
 * Dense causal attention throughout (SPEC §2: S²-Attn is for training only).
 */
import { LongLoraError } from '../errors.js';
import type { KVCache, KVCacheDType } from '../models/llama/cache.js';
import { checkAttentionSpan } from '../models/llama/config.js';
import type { LlamaForCausalLM } from '../models/llama/model.js';
import { noGrad } from '../tensor/autograd.js';
import { ids as idsTensor, slice } from '../tensor/ops/index.js';
import { Rng } from '../tensor/random.js';
import { tidy } from '../tensor/scope.js';
import { StreamDecoder } from '../tokenizer/stream.js';
import type { Tokenizer } from '../tokenizer/tokenizer-core.js';
import { abortedAfterEvents } from '../util/yield.js';
import { checkSampling, OFFICIAL_SAMPLING, sampleToken, type SamplingOptions } from './sampling.js';

/** Sampling, stopping and streaming options of a generation. */
export interface GenerateOptions extends Partial<SamplingOptions> {
  /** Official inference default 512. */
  maxNewTokens?: number;
  /** Seed of the sampling generator (default 0). */
  seed?: number;
  /** Ids that end generation (kept in the output ids, not in the text). */
  stopIds?: readonly number[];
  /** Strings that end generation (the text is cut before them). Needs a tokenizer. */
  stopStrings?: readonly string[];
  /** Decodes the new tokens (streaming text, stop strings). */
  tokenizer?: Tokenizer;
  /** Receives text as soon as it is complete (never a partial character or stop string). */
  onText?: (text: string) => void;
  /** Receives every new token id. */
  onToken?: (id: number) => void;
  /** Progress of a prompt longer than the prefill chunk: tokens in the cache so far, of all (after each piece). */
  onPrefill?: (done: number, total: number) => void;
  /** Recompute the whole sequence for every token instead of using the cache (tests, diagnostics). */
  useCache?: boolean;
  /**
   * Stops the generation when aborted: between prompt pieces and before each new token it
   * lets other events run (a Stop button, a Ctrl-C handler) and checks the signal; what was
   * generated so far is returned, with stopReason 'aborted'.
   */
  signal?: AbortSignal;
}

/** Why generation ended. */
export type StopReason = 'eos' | 'stop-string' | 'length' | 'aborted';

/** The new tokens, their text and timings. */
export interface GenerateResult {
  /** The new token ids (a final EOS included). */
  ids: number[];
  /** Their text (when a tokenizer was given), cut before a stop string. */
  text: string;
  stopReason: StopReason;
  promptTokens: number;
  /** Prompt tokens actually run (fewer when a cached prefix was reused). */
  prefillTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  /** New tokens per second of decoding (after the first token). */
  tokensPerSecond: number;
}

/** Holds text back while it could still be the start of a stop string. */
class StopMatcher {
  private text = '';
  private emitted = 0;
  private readonly hold: number;

  constructor(private readonly stops: readonly string[]) {
    this.hold = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  /** Adds text; returns what can be shown and whether a stop string was reached. */
  push(t: string): { show: string; stopped: boolean } {
    this.text += t;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const show = this.text.slice(this.emitted, Math.max(cut, this.emitted));
      this.text = this.text.slice(0, cut);
      this.emitted = this.text.length;
      return { show, stopped: true };
    }
    const upto = Math.max(this.emitted, this.text.length - this.hold);
    const show = this.text.slice(this.emitted, upto);
    this.emitted = upto;
    return { show, stopped: false };
  }

  /** The held-back rest, at the end. */
  flush(): string {
    const show = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return show;
  }

  get all(): string {
    return this.text;
  }
}

/** Options of a `Generator` (and of the one-off `generate`). */
export interface GeneratorOptions {
  /**
   * What the KV cache holds: the activations' dtype (default, f32), or bf16 or f16 for half
   * its memory at long contexts (keys and values rounded to 16 bits as they are cached).
   */
  kvCacheDtype?: KVCacheDType;
  /**
   * Prompt tokens run at once (default 512): a longer prompt goes through the model in
   * pieces of this many tokens, each attending to the cache the earlier ones filled, so its
   * activations (the MLP's above all) are those of one piece, not of the whole prompt.
   */
  prefillChunk?: number;
}

/** The `GeneratorOptions` set in `o` (which may hold other options too). */
export function generatorOptions(o: GeneratorOptions): GeneratorOptions {
  return { ...(o.kvCacheDtype ? { kvCacheDtype: o.kvCacheDtype } : {}), ...(o.prefillChunk ? { prefillChunk: o.prefillChunk } : {}) };
}

/** Prompt tokens run at once by default (`GeneratorOptions.prefillChunk`). */
export const PREFILL_CHUNK = 512;

/**
 * New tokens the KV cache is sized for up front: all of them up to this many, then it grows
 * (doubling, up to what the call can reach) only if generation goes on that long.
 */
const RESERVE_NEW = 2048;

/** A model with a growing KV cache and the token history in it (one sequence). */
export class Generator {
  private cache: KVCache | null = null;
  /** Tokens whose keys and values are in the cache, in order. */
  private history: number[] = [];

  constructor(readonly model: LlamaForCausalLM, readonly options: GeneratorOptions = {}) {
    const c = options.prefillChunk;
    if (c !== undefined && !(Number.isInteger(c) && c >= 1)) throw new LongLoraError(`--prefill-chunk must be an integer ≥ 1, got ${c}`);
  }

  /** Forgets the conversation (the cache memory is kept for reuse). */
  reset(): void {
    this.history = [];
    if (this.cache) this.cache.reset();
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
    this.history = [];
  }

  /**
   * Makes room for `total` tokens (at most `limit`, what the call can reach): a larger cache
   * when needed, with the cached tokens copied over.
   */
  private ensure(total: number, limit = total): void {
    const old = this.cache;
    if (old && old.capacity >= total) return;
    const cache = this.model.createCache(1, Math.min(limit, Math.max(total, 2 * (old?.capacity ?? 0), 256)), this.options.kvCacheDtype);
    if (old) {
      const { numKvHeads: Hkv, headDim: D } = this.model.config;
      const n = old.length * Hkv * D; // B = 1: the first `length` rows of [1, capacity, Hkv, D] are contiguous
      const args = { shape: [n], srcOffset: 0, srcStrides: [1], dstOffset: 0, dstStrides: [1], accumulate: false };
      old.k.forEach((k, l) => {
        if (n === 0) return;
        k.backend.copy(k.buffer, cache.k[l]!.buffer, args);
        k.backend.copy(old.v[l]!.buffer, cache.v[l]!.buffer, args);
      });
      cache.length = old.length;
      old.dispose();
    }
    this.cache = cache;
  }

  /**
   * Logits [V] of the last position after running `ids` (appended to the cache): all but the
   * last piece of `prefillChunk` tokens only fill the cache.
   */
  private async step(ids: readonly number[], onPrefill?: (done: number, total: number) => void, signal?: AbortSignal): Promise<Float32Array | Float64Array | null> {
    const cache = this.cache!;
    const chunk = this.options.prefillChunk ?? PREFILL_CHUNK;
    while (ids.length > chunk) {
      const piece = ids.slice(0, chunk);
      noGrad(() => tidy(() => { this.model.hidden(idsTensor(piece, [1, chunk]), { cache }); }));
      this.history.push(...piece);
      ids = ids.slice(chunk);
      await cache.k[0]!.backend.sync(); // one piece at a time on an asynchronous device
      onPrefill?.(this.history.length, this.history.length + ids.length);
      if (await abortedAfterEvents(signal)) return null;
    }
    const t = noGrad(() => tidy(() => {
      const h = this.model.hidden(idsTensor(ids, [1, ids.length]), { cache }); // (1, n, C)
      return this.model.head(slice(h, 1, ids.length - 1, ids.length)); // (1, 1, V)
    }));
    const out = await t.floats();
    t.dispose();
    this.history.push(...ids);
    onPrefill?.(this.history.length, this.history.length);
    return out;
  }

  /** Logits of the last position of `ids`, recomputing the whole sequence (no cache). */
  private async full(ids: readonly number[]): Promise<Float32Array | Float64Array> {
    const t = noGrad(() => tidy(() => {
      const h = this.model.hidden(idsTensor(ids, [1, ids.length])); // (1, N, C)
      return this.model.head(slice(h, 1, ids.length - 1, ids.length)); // (1, 1, V)
    }));
    const out = await t.floats();
    t.dispose();
    return out;
  }

  /** Continues `promptIds` (the whole conversation so far) with new tokens. */
  async generate(promptIds: readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    if (promptIds.length === 0) throw new LongLoraError('generation needs a prompt of at least one token');
    const V = this.model.config.vocabSize;
    const bad = promptIds.find((i) => !(Number.isInteger(i) && i >= 0 && i < V));
    if (bad !== undefined) throw new LongLoraError(`prompt token ${bad} is outside the model's vocabulary (${V}); does the tokenizer belong to the model?`);
    const sampling: SamplingOptions = { ...OFFICIAL_SAMPLING, ...pickSampling(opts) };
    checkSampling(sampling);
    const maxNew = opts.maxNewTokens ?? 512;
    if (!Number.isInteger(maxNew) || maxNew < 1) throw new LongLoraError(`maxNewTokens (--max-new-tokens) must be a whole number ≥ 1, got ${maxNew}`);
    const window = this.model.config.slidingWindow;
    if (window !== null && promptIds.length + maxNew > window) {
      const fits = window - promptIds.length;
      checkAttentionSpan(this.model.config, promptIds.length + maxNew, `generation: the prompt's ${promptIds.length} tokens and up to ${maxNew} new ones` +
        (fits >= 1 ? ` (--max-new-tokens ${fits} fits in the window)` : ''));
    }
    const stops = opts.stopStrings ?? [];
    if (stops.length && !opts.tokenizer) throw new LongLoraError('stop strings need a tokenizer');
    const stopIds = new Set(opts.stopIds ?? []);
    const rng = new Rng(opts.seed ?? 0);
    const useCache = opts.useCache ?? true;
    const decoder = opts.tokenizer ? new StreamDecoder(opts.tokenizer, true, promptIds) : null;
    const matcher = new StopMatcher(stops);

    const t0 = performance.now();
    let logits: Float32Array | Float64Array;
    let prefill = promptIds.length;
    const seq = [...promptIds];
    const reach = promptIds.length + maxNew;
    if (useCache) {
      this.ensure(promptIds.length + Math.min(maxNew, RESERVE_NEW), reach);
      let common = 0;
      while (common < this.history.length && common < promptIds.length - 1 && this.history[common] === promptIds[common]) common++;
      this.history.length = common;
      this.cache!.length = common;
      prefill = promptIds.length - common;
      const first = await this.step(promptIds.slice(common), opts.onPrefill, opts.signal);
      if (!first) return this.abortedResult(promptIds.length, prefill, t0);
      logits = first;
    } else {
      logits = await this.full(seq);
    }
    const t1 = performance.now();
    const out: number[] = [];
    let stopReason: StopReason = 'length';
    for (let n = 0; n < maxNew; n++) {
      if (await abortedAfterEvents(opts.signal)) { stopReason = 'aborted'; break; }
      const id = sampleToken(logits, sampling, rng);
      out.push(id);
      seq.push(id);
      opts.onToken?.(id);
      if (stopIds.has(id)) { stopReason = 'eos'; break; }
      if (decoder) {
        const r = matcher.push(decoder.push(id));
        if (r.show) opts.onText?.(r.show);
        if (r.stopped) { stopReason = 'stop-string'; break; }
      }
      if (n + 1 < maxNew) {
        if (useCache) this.ensure(this.history.length + 1, reach);
        logits = useCache ? (await this.step([id]))! : await this.full(seq);
      }
    }
    if (decoder && stopReason !== 'stop-string') {
      const r = matcher.push(decoder.flush());
      if (r.show) opts.onText?.(r.show);
      const rest = r.stopped ? '' : matcher.flush();
      if (rest) opts.onText?.(rest);
      if (r.stopped) stopReason = 'stop-string';
    }
    const t2 = performance.now();
    const decodeSeconds = (t2 - t1) / 1000;
    return {
      ids: out, text: matcher.all, stopReason, promptTokens: promptIds.length, prefillTokens: prefill,
      prefillSeconds: (t1 - t0) / 1000, decodeSeconds,
      tokensPerSecond: out.length > 1 ? (out.length - 1) / Math.max(decodeSeconds, 1e-9) : 0,
    };
  }

  /** The result of a generation stopped while its prompt was being read: no new tokens. */
  private abortedResult(promptTokens: number, prefillTokens: number, t0: number): GenerateResult {
    return { ids: [], text: '', stopReason: 'aborted', promptTokens, prefillTokens, prefillSeconds: (performance.now() - t0) / 1000, decodeSeconds: 0, tokensPerSecond: 0 };
  }
}

function pickSampling(o: GenerateOptions): Partial<SamplingOptions> {
  const s: Partial<SamplingOptions> = {};
  if (o.temperature !== undefined) s.temperature = o.temperature;
  if (o.topP !== undefined) s.topP = o.topP;
  if (o.topK !== undefined) s.topK = o.topK;
  return s;
}

/** One-off generation (a fresh cache, freed afterwards). */
export async function generate(model: LlamaForCausalLM, promptIds: readonly number[], opts: GenerateOptions & GeneratorOptions = {}): Promise<GenerateResult> {
  const g = new Generator(model, generatorOptions(opts));
  try {
    return await g.generate(promptIds, opts);
  } finally {
    g.dispose();
  }
}

/** "12 tokens in 0.8 s (14.6 tokens/s); prompt 40 tokens in 0.3 s". */
export function describeSpeed(r: GenerateResult): string {
  const pre = r.prefillTokens < r.promptTokens ? `${r.prefillTokens} new of ${r.promptTokens}` : String(r.promptTokens);
  return `${r.ids.length} tokens in ${(r.prefillSeconds + r.decodeSeconds).toFixed(2)} s (${r.tokensPerSecond.toFixed(1)} tokens/s decoding); prompt ${pre} tokens in ${r.prefillSeconds.toFixed(2)} s`;
}
