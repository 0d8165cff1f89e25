/**
 * Incremental decoding for streaming output. Decoding one token at a time is wrong in two
 * ways: a multi-byte character split over byte-fallback tokens decodes to U+FFFD until
 * its last byte arrives, and Llama's decoder strips the leading space of a text, so
 * "▁world" alone loses the space it has after "Hello". So, as Hugging Face's
 * text-generation-inference does, each step decodes a short window of recent tokens with
 * and without the new ones and emits the difference — and holds back text that still
 * ends in an incomplete character. The window starts with the last tokens of the text
 * being continued (the prompt), so the first new token keeps its space too.
 */
import type { Tokenizer } from './tokenizer-core.js';

/** Prompt tokens the window starts with: enough to end in a whole word (and character). */
const CONTEXT_TOKENS = 6;

/** Turns a stream of token ids into text pieces that are safe to print. */
export class StreamDecoder {
  private readonly ids: number[];
  /** Where the pushed tokens start in `ids` (after the context). */
  private readonly start: number;
  /** Start of the context window decoded before the unread tokens. */
  private prefixOffset = 0;
  /** Tokens before this index have been emitted. */
  private readOffset: number;

  /**
   * `context`: the tokens the pushed ones continue (the prompt; only its last few are
   * kept). Without it the first token is decoded as the start of a text, which for Llama's
   * tokenizer drops its leading space ("▁of" after "In the beginning" prints "of").
   */
  constructor(private readonly tokenizer: Tokenizer, private readonly skipSpecialTokens = true, context: readonly number[] = []) {
    this.ids = context.slice(-CONTEXT_TOKENS);
    this.start = this.readOffset = this.ids.length;
  }

  /** Adds a token; returns the text it completes (often '', or more than one token's worth). */
  push(id: number): string {
    this.ids.push(id);
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), opts);
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const text = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return text;
    }
    return '';
  }

  /** Whatever is still held back (an incomplete character at the very end decodes as U+FFFD). */
  flush(): string {
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), opts);
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }

  /** Every token pushed so far (not the context). */
  tokens(): readonly number[] {
    return this.ids.slice(this.start);
  }
}
