/**
 * What the browser text tests run inside a page (test/browser/text.html, whose import
 * map resolves @huggingface/tokenizers and @huggingface/jinja): a tokenizer folder's
 * files fetched and built with `Tokenizer.fromFiles`, as `Tokenizer.load` does in Node;
 * GGUF files handed over as bytes, run as models with their own tokenizers.
 */
import { StreamDecoder, Tokenizer, tokenizerOfGguf, type ChatMessage } from '../../src/browser-text.js';
import { ids as idsTensor, llamaFromGguf, noGrad, setBackend, tidy } from '../../src/browser.js';

export interface TextReport {
  hash: string;
  vocabSize: number;
  special: Array<number | null>;
  ids: number[][];
  decoded: string[];
  /** Each text's ids pushed one by one through a StreamDecoder, the pieces joined. */
  streamed: string[];
  chat: string | null;
}

export async function tokenize(dir: string, texts: string[], messages: ChatMessage[]): Promise<TextReport> {
  const files = new Map<string, string>();
  for (const name of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja']) {
    const res = await fetch(`/test/fixtures/tokenizer/${dir}/${name}`);
    if (res.ok) files.set(name, await res.text());
  }
  const tok = Tokenizer.fromFiles(files, dir);
  const ids = texts.map((t) => tok.encode(t));
  const streamed = ids.map((row) => {
    const s = new StreamDecoder(tok);
    return row.map((id) => s.push(id)).join('') + s.flush();
  });
  return {
    hash: tok.hash, vocabSize: tok.vocabSize, special: [tok.bosId, tok.eosId, tok.padId, tok.unkId],
    ids, decoded: ids.map((row) => tok.decode(row)), streamed,
    chat: tok.chatTemplate ? tok.chatTemplate.render(messages, { bosToken: tok.bosToken, eosToken: tok.eosToken }) : null,
  };
}

/** What the page made of a GGUF file. */
export interface GgufReport {
  config: unknown;
  tensors: number;
  logits: number[];
  tokenizer: string;
  ids: number[][];
}

/**
 * Each GGUF file (base64) as a File in the page: the model llamaFromGguf builds from it (on
 * the CPU backend), its logits for `ids`, and its tokenizer's (tokenizerOfGguf) ids of `texts`.
 */
export async function gguf(files: Array<{ name: string; base64: string }>, ids: number[], texts: string[]): Promise<GgufReport[]> {
  await setBackend('cpu');
  const out: GgufReport[] = [];
  for (const f of files) {
    const file = new File([Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0))], f.name);
    let tensors = 0;
    const { model, config, metadata } = await llamaFromGguf(file, { source: f.name, onTensor: (n) => { tensors = n; } });
    const logits = noGrad(() => tidy(() => model.forward(idsTensor(Int32Array.from(ids), [1, ids.length]))));
    const tok = tokenizerOfGguf(metadata, f.name)!;
    out.push({ config, tensors, logits: [...await logits.floats()], tokenizer: tok.source, ids: texts.map((t) => tok.encode(t)) });
    logits.dispose();
    model.dispose();
  }
  return out;
}
