/**
 * longlora: LongLoRA fine-tuning of Llama-family models in TypeScript.
 * The library API for Node; the `longlora` command line is a thin layer over it. Everything
 * that runs without Node (tensors, backends, layers, models, LoRA, training steps, files
 * as bytes) is in browser.ts and exported here too; browser-text.ts has the tokenizers
 * built from parsed files (here: `Tokenizer`, which also reads and writes folders).
 */
export * from './browser.js';

// models from and to folders
export { loadLlama, saveLlama } from './models/llama/load.js';
export type { LoadOptions, SaveOptions } from './models/llama/load.js';
export { loadWithAdapter, mergeAdapter } from './lora/adapted.js';
export type { MergeOptions } from './lora/adapted.js';
export { exportGguf, ggufWeightType, llamaGgufMetadata, GGUF_DTYPES } from './models/llama/gguf.js';
export { importanceMatrix, type ImportanceMatrix } from './models/llama/importance.js';
export { ggufToFolder, ggufTokenizer, loadLlamaGguf, readGgufLora, readGgufModel } from './models/llama/gguf-load.js';
export { readGgufHeader } from './io/gguf-read.js';
export type { GgufExportOptions, GgufExportResult, GgufDType } from './models/llama/gguf.js';

// the training loop of `longlora train`: Trainer.create({ ...defaultTrainConfig(), model, data, output })
export { Trainer } from './train/trainer.js';
export type { TrainerOptions, TrainResult } from './train/trainer.js';
export { defaultTrainConfig } from './train/config.js';
export type { TrainConfig } from './train/config.js';

// evaluation, as `longlora eval ppl` and `longlora eval passkey` run it
export { perplexity, windowedPlan, slidingPlan, describeProcedure, OFFICIAL_WINDOW_STEP } from './eval/perplexity.js';
export type { PplOptions, PplResult, PplProcedure } from './eval/perplexity.js';
export { passkeyEval, passkeyPrompt, passkeyLadder } from './eval/passkey.js';
export type { PasskeyOptions, PasskeyLength } from './eval/passkey.js';
export { TokenFile } from './data/tokens.js';
export type { TokenSource, TokenDType } from './data/tokens.js';

// text: tokenizer folders (the browser builds them from parsed files, browser-text.ts)
export { Tokenizer } from './tokenizer/tokenizer.js';
export type { EncodeOptions, DecodeOptions } from './tokenizer/tokenizer.js';
export { ChatTemplate, LLAMA2_CHAT_TEMPLATE, chatTemplateOfConfig } from './tokenizer/chat-template.js';
export type { ChatMessage, RenderOptions } from './tokenizer/chat-template.js';
export { chatTemplateFrom } from './tokenizer/chat-files.js';
export { StreamDecoder } from './tokenizer/stream.js';
export { addPadToken } from './tokenizer/pad.js';

// files
export { SafetensorsFile, writeSafetensors } from './io/safetensors.js';
export { openCheckpoint, writeCheckpoint, readJsonFile, Checkpoint } from './io/checkpoint.js';
export { saveAdapter, loadAdapter, writeAdapter, readAdapterConfig, readSidecar } from './io/peft.js';
export { writeGguf, GGML_TYPES } from './io/gguf.js';
export { quantize, dequantize, BLOCKS as GGML_BLOCKS } from './io/ggml-quants.js';
export type { QuantType } from './io/ggml-quants.js';
export { resolveModel, hubCacheDir } from './io/hub.js';
export { pushToHub } from './io/hub-upload.js';
export type { PushOptions, PushResult } from './io/hub-upload.js';
export { adapterCard, mergedCard, cardFacts } from './io/model-card.js';
export type { GgufValue, GgufTensor, GgmlType } from './io/gguf.js';
export { ggufVocab, TOKEN_TYPES } from './tokenizer/gguf-vocab.js';

