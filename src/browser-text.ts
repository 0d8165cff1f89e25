/**
 * Text for the browser entry: Hugging Face tokenizers and chat templates built from
 * files given as text (fetched tokenizer.json and tokenizer_config.json) or from a GGUF file's
 * metadata (tokenizerOfGguf), streaming decoding, and adding a PAD token. Apart from `@huggingface/tokenizers` and `@huggingface/jinja`
 * every import is relative; a page maps those two with an import map (or a bundler
 * resolves them):
 *
 *   <script type="importmap">{ "imports": {
 *     "@huggingface/tokenizers": "/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs",
 *     "@huggingface/jinja": "/node_modules/@huggingface/jinja/dist/index.js" } }</script>
 */
export { Tokenizer } from './tokenizer/tokenizer-core.js';
export type { EncodeOptions, DecodeOptions, Json } from './tokenizer/tokenizer-core.js';
export { ChatTemplate, LLAMA2_CHAT_TEMPLATE, chatTemplateOfConfig } from './tokenizer/chat-template.js';
export type { ChatMessage, RenderOptions } from './tokenizer/chat-template.js';
export { StreamDecoder } from './tokenizer/stream.js';
export { addPadToken } from './tokenizer/pad.js';
export { tokenizerOfGguf } from './tokenizer/gguf-tokenizer.js';
