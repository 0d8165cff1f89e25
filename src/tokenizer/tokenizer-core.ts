/**
 * Hugging Face tokenizers: `tokenizer.json` (the fast-tokenizer file every modern model
 * ships) with `tokenizer_config.json` and `special_tokens_map.json`, run by
 * @huggingface/tokenizers (pure JavaScript). Adds what training and evaluation need on
 * top: BOS/EOS/PAD ids, the Llama rule for special tokens (`add_bos_token` /
 * `add_eos_token`), a content hash for caches, a check against a model's vocabulary, and
 * adding a PAD token as the official LongLoRA runs do. Built from parsed files, so it runs
 * in a browser too; tokenizer.ts adds reading and writing tokenizer folders in Node.
 */
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { LongLoraError } from '../errors.js';
import { sha256Hex } from '../util/sha256.js';
import { ChatTemplate, chatTemplateOfConfig } from './chat-template.js';
import { fastEncoder } from './fast-path.js';

export type Json = Record<string, unknown>;

/** The token text of a special-token entry: a string or an AddedToken object. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/** Options of `encode`. */
export interface EncodeOptions {
  /** Add BOS (and EOS where the tokenizer says so), as `tokenizer(text)` does. Default true. */
  addSpecialTokens?: boolean;
}

/** Options of `decode`. */
export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, PAD, ...). Default false. */
  skipSpecialTokens?: boolean;
}

/** A loaded tokenizer. Create with `Tokenizer.load(dir)`. */
/** The class itself or a subclass (Node's, which adds files). */
export type TokenizerClass<T extends Tokenizer> = new (json: Json, config: Json, source: string, chatTemplate: ChatTemplate | null) => T;

export class Tokenizer {
  private readonly hf: HFTokenizer;
  /** Largest id + 1, added tokens included: the embedding rows a model needs. */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly unkId: number | null;
  private hashHex: string | null = null;
  private readonly special: Set<number>;
  /** Llama tokenizers decide BOS/EOS from the config flags, not the post-processor. */
  private readonly llamaSpecials: { bos: boolean; eos: boolean } | null;
  /** The equivalent word-by-word encoder for long texts, when it applies (fast-path.ts). */
  private readonly fast: ((text: string) => number[]) | null;

  /** Prefer `fromJson` (or, in Node, `Tokenizer.load`). */
  constructor(
    readonly json: Json,
    readonly config: Json,
    /** Folder (or file) it was loaded from, for messages. */
    readonly source: string,
    readonly chatTemplate: ChatTemplate | null,
  ) {
    try {
      this.hf = new HFTokenizer(json, config);
    } catch (e) {
      throw new LongLoraError(`${source}: cannot build the tokenizer from tokenizer.json (${(e as Error).message}); is it a Hugging Face tokenizer.json?`);
    }
    const vocab = this.hf.get_vocab(true);
    let max = -1;
    for (const [t, id] of vocab) if (typeof t === 'string') max = Math.max(max, id); // the library lists ids no token has
    this.vocabSize = max + 1;
    const pick = (key: string): string | null => tokenText(config[key]);
    this.bosToken = pick('bos_token');
    this.eosToken = pick('eos_token');
    this.padToken = pick('pad_token');
    this.unkToken = pick('unk_token');
    const id = (t: string | null, key: string): number | null => {
      if (t === null) return null;
      const i = this.hf.token_to_id(t);
      if (i === undefined) throw new LongLoraError(`${source}: ${key} "${t}" is not in the vocabulary of tokenizer.json; the tokenizer files do not belong together`);
      return i;
    };
    this.bosId = id(this.bosToken, 'bos_token');
    this.eosId = id(this.eosToken, 'eos_token');
    this.padId = id(this.padToken, 'pad_token');
    this.unkId = id(this.unkToken, 'unk_token');
    this.special = new Set([...this.hf.get_added_tokens_decoder().entries()].filter(([, t]) => t.special).map(([i]) => i));
    for (const i of [this.bosId, this.eosId, this.padId, this.unkId]) if (i !== null) this.special.add(i);
    const cls = String(config.tokenizer_class ?? '');
    this.llamaSpecials = /^(Code)?LlamaTokenizer(Fast)?$/.test(cls) || 'add_bos_token' in config
      ? { bos: config.add_bos_token !== false, eos: config.add_eos_token === true }
      : null;
    this.fast = fastEncoder(this.hf, json, config);
  }

  /** sha256 of the files' contents that decide the ids (cache keys); the chat template does not count. */
  get hash(): string {
    this.hashHex ??= sha256Hex(JSON.stringify(this.json), JSON.stringify({ ...this.config, chat_template: undefined }));
    return this.hashHex;
  }

  /**
   * Builds a tokenizer from a folder's files given as text, by name: tokenizer.json
   * (required), tokenizer_config.json, special_tokens_map.json (its tokens fill what the
   * config lacks) and chat_template.jinja (which wins over the config's field), as
   * transformers reads them. `source` (the folder, a URL) names them in messages.
   */
  static fromFiles<T extends Tokenizer>(this: TokenizerClass<T>, files: ReadonlyMap<string, string>, source = 'tokenizer'): T {
    const where = (name: string): string => `${source.replace(/\/+$/, '')}/${name}`;
    const json = (name: string): Json | null => {
      const text = files.get(name);
      if (text === undefined) return null;
      try {
        const v = JSON.parse(text) as unknown;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
        return v as Json;
      } catch (e) {
        throw new LongLoraError(`${where(name)} is not valid JSON (${(e as Error).message}); fix or re-download it`);
      }
    };
    const tok = json('tokenizer.json');
    if (!tok) throw new LongLoraError(`${source}: no tokenizer.json; a Hugging Face tokenizer needs it`);
    const config = json('tokenizer_config.json') ?? {};
    const map = json('special_tokens_map.json');
    if (map) for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) if (config[k] === undefined && map[k] !== undefined) config[k] = map[k];
    const jinja = files.get('chat_template.jinja');
    const chat = jinja !== undefined ? new ChatTemplate(jinja, where('chat_template.jinja')) : chatTemplateOfConfig(config, `${where('tokenizer_config.json')}: chat_template`);
    return new this(tok, config, source, chat);
  }

  /** Builds a tokenizer from parsed files (tests, or files from elsewhere). */
  static fromJson<T extends Tokenizer>(this: TokenizerClass<T>, json: Json, config: Json = {}, source = 'tokenizer.json'): T {
    const chat = typeof config.chat_template === 'string' ? new ChatTemplate(config.chat_template, `${source}: chat_template`) : null;
    return new this(json, config, source, chat);
  }

  /** Token ids of `text`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const add = opts.addSpecialTokens ?? true;
    if (!this.llamaSpecials) return this.hf.encode(text, { add_special_tokens: add }).ids;
    const ids = text === '' ? [] : this.fast && text.length > 64 ? this.fast(text) : this.libraryEncode(text);
    if (!add) return ids;
    const out = this.llamaSpecials.bos && this.bosId !== null ? [this.bosId, ...ids] : ids;
    if (this.llamaSpecials.eos && this.eosId !== null) out.push(this.eosId);
    return out;
  }

  /** The library's own encoding without special tokens (the reference for the fast path). */
  libraryEncode(text: string): number[] {
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  /** Whether long texts take the word-by-word fast path (fast-path.ts). */
  get hasFastPath(): boolean {
    return this.fast !== null;
  }

  /** The text of `ids` (empty for none). */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const keep = opts.skipSpecialTokens ? ids.filter((i) => !this.special.has(i)) : ids;
    if (keep.length === 0) return '';
    return this.hf.decode([...keep], { skip_special_tokens: false });
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Whether `id` is a special token (BOS, EOS, PAD, UNK, added special tokens). */
  isSpecial(id: number): boolean {
    return this.special.has(id);
  }

  /**
   * Checks that the ids fit a model's embedding table of `modelVocab` rows, and that the
   * model is not from another family (far more rows than the tokenizer has tokens).
   * `where` names the model in the message.
   */
  checkModel(modelVocab: number, where: string): void {
    if (this.vocabSize > modelVocab) {
      const added = this.padToken && this.padId !== null && this.padId >= modelVocab ? ` (its pad token "${this.padToken}" has id ${this.padId}: ` +
        'resize the model with addPadToken, as the official runs do, or use the tokenizer without it)' : '';
      throw new LongLoraError(`the tokenizer in ${this.source} has ${this.vocabSize} tokens but the model ${where} has ${modelVocab} embedding rows${added}; ` +
        'ids past the table would be out of range. Use the tokenizer that came with the model (--tokenizer)');
    }
    if (modelVocab > this.vocabSize * 1.25 + 256) {
      throw new LongLoraError(`the tokenizer in ${this.source} has ${this.vocabSize} tokens but the model ${where} has ${modelVocab} embedding rows; ` +
        'they do not belong together. Use the tokenizer that came with the model (--tokenizer)');
    }
  }

  /** Ids that end generation: the tokenizer's EOS plus the given ones (config, generation_config). */
  stopIds(extra: ReadonlyArray<number | null | undefined> = []): number[] {
    const s = new Set<number>();
    if (this.eosId !== null) s.add(this.eosId);
    for (const e of extra) if (typeof e === 'number') s.add(e);
    return [...s];
  }

  /**
   * A copy with a new special token (default "[PAD]", the official LongLoRA choice) at id
   * `vocabSize`, set as the pad token. Returns it with the new id; the model needs one
   * more embedding row (see addPadToken in pad.ts).
   */
  withAddedPad<T extends Tokenizer>(this: T, token = '[PAD]'): { tokenizer: T; id: number } {
    if (this.hf.token_to_id(token) !== undefined) throw new LongLoraError(`${this.source}: "${token}" is already in the vocabulary`);
    const id = this.vocabSize;
    const json = structuredClone(this.json);
    const added = Array.isArray(json.added_tokens) ? json.added_tokens as unknown[] : [];
    json.added_tokens = [...added, { id, content: token, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }];
    const config = { ...this.config, pad_token: token };
    const Class = this.constructor as TokenizerClass<T>;
    return { tokenizer: new Class(json, config, this.source, this.chatTemplate), id };
  }

  /** One line for logs: source, size and special tokens. */
  describe(): string {
    const sp = [['bos', this.bosToken, this.bosId], ['eos', this.eosToken, this.eosId], ['pad', this.padToken, this.padId]]
      .filter(([, t]) => t !== null).map(([k, t, i]) => `${String(k)} ${String(t)} (${String(i)})`).join(', ');
    return `${this.source}: ${this.vocabSize} tokens; ${sp || 'no special tokens'}${this.chatTemplate ? '; chat template' : ''}`;
  }
}
