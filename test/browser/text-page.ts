/**
 * What the browser text tests run inside a page (test/browser/text.html, whose import
 * map resolves @huggingface/tokenizers and @huggingface/jinja): a tokenizer folder's
 * files fetched and built with `Tokenizer.fromFiles`, as `Tokenizer.load` does in Node.
 */
import { StreamDecoder, Tokenizer, type ChatMessage } from '../../src/browser-text.js';

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
