/**
 * longlora without Node: the part of the library that runs in a browser (or any
 * JavaScript engine with WebGPU or nothing but JavaScript). It needs no file system and
 * no bundler: every import below is a relative ES module, so a page can load
 * `dist/src/browser.js` directly (`<script type="module">`), and any bundler works too.
 * Models come from bytes (`llamaFromSafetensors`, fetched checkpoints; `llamaFromGguf`,
 * llama.cpp's files, whole or as a Blob) or random initialisation; adapters leave as bytes (`encodeAdapter`) and come back the same way
 * (`loadAdapterBytes`). The WebGPU backend uses `navigator.gpu`; the Wasm backend runs its
 * pool as Web Workers on a cross-origin isolated page. Tokenizers and chat templates are
 * in browser-text.ts (they import two @huggingface packages, which a page maps).
 *
 * The Node entry (index.ts) exports all of this plus files, folders, checkpoints and
 * tokenizer folders (its loader gives the 4-bit fingerprints Node's native SHA-256).
 */
export { LongLoraError } from './errors.js';

// tensors, autograd, memory
export * from './tensor/ops/index.js';
export { Tensor, Storage, fromHost, numelOf } from './tensor/tensor.js';
export type { Shape } from './tensor/tensor.js';
export type { DType, FloatDType, HostArray, Precision } from './tensor/dtype.js';
export { PRECISIONS } from './tensor/dtype.js';
export { tidy } from './tensor/scope.js';
export { backward, noGrad, zeroGrad, clearTape, isGradEnabled } from './tensor/autograd.js';
export { Rng } from './tensor/random.js';

// backends
export type { Backend, DeviceBuffer, AttentionMask, MemoryStats } from './backend/backend.js';
export { registerBackend, configureBackend, backendOptions, getBackend, setBackend, currentBackend, cpuBackend, autoBackend, backendNames, type BackendOptions } from './backend/registry.js';

// layers
export { Module } from './nn/module.js';
export { Linear, PackedLinear } from './nn/linear.js';
export { PackedWeight } from './nn/packed-weight.js';
export { Embedding, embedding } from './nn/embedding.js';
export { RMSNorm, rmsnorm } from './nn/rmsnorm.js';
export { softmax } from './nn/softmax.js';
export { rope, ropeAngles, RotaryEmbedding } from './nn/rope.js';
export type { RopeScaling, RopeTables } from './nn/rope.js';
export {
  extendRopeScaling, describeRopeScaling, ropeScalingFromHF, ropeScalingToHF, ropeFrequencies, ropeContextLength,
} from './nn/rope-scaling.js';
export { crossEntropy, crossEntropyPerToken, shiftLabels, IGNORE_INDEX } from './nn/loss.js';
export { attention, CAUSAL } from './attention/attention.js';
export type { AttentionOptions } from './attention/attention.js';
export { keyRanges, validateMask, describeMask } from './attention/mask.js';
export { referenceAttention } from './attention/reference.js';

// models
export { LlamaForCausalLM, LlamaModel, LlamaDecoderLayer, LlamaAttention, LlamaMLP } from './models/llama/model.js';
export { parseLlamaConfig, llamaConfigToHF, llamaTensorShapes } from './models/llama/config.js';
export type { LlamaConfig } from './models/llama/config.js';
export { randomLlama, llamaFromSafetensors } from './models/llama/init.js';
export type { BuildOptions, RandomInitOptions, ParamDType, SafetensorsSource } from './models/llama/init.js';

// generation (dense attention, KV cache); text in and out needs a tokenizer (Node entry)
export { generate, Generator, describeSpeed } from './eval/generate.js';
export type { GenerateOptions, GenerateResult, GeneratorOptions, StopReason } from './eval/generate.js';
export { KVCache, type KVCacheDType } from './models/llama/cache.js';
export { sampleToken, argmax, OFFICIAL_SAMPLING, GREEDY } from './eval/sampling.js';
export type { SamplingOptions } from './eval/sampling.js';

// LoRA and LongLoRA training
export { LoRALinear, LORA_DEFAULTS, loraScaling } from './lora/lora.js';
export type { LoraOptions, LoraRuntime } from './lora/lora.js';
export { applyLora, setTrainable, mergeLora, loraLayers, DEFAULT_TARGETS, ALL_LINEAR } from './lora/inject.js';
export type { TrainMode, TrainableReport } from './lora/inject.js';
export { AdamW, clipGradNorm } from './train/optim.js';
export type { AdamWOptions } from './train/optim.js';
export { trainStep, accumulate } from './train/step.js';
export type { MicroBatch, StepOptions, StepResult } from './train/step.js';
export { LossScaler } from './train/loss-scale.js';
export { lrAt, SCHEDULES } from './train/schedule.js';
export type { Schedule, ScheduleType } from './train/schedule.js';

// 4-bit base (QLoRA NF4 with double quantisation): quantizeModel on a model built from bytes
export { quantizeNf4, dequantizeScales, NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE } from './quant/nf4.js';
export type { Nf4Data } from './quant/nf4.js';
export { NF4_CODE, DYNAMIC_CODE } from './quant/codebooks.js';
export { Nf4Weight } from './quant/nf4-weight.js';
export { quantizeModel, dequantizeModel, isQuantizedWeight, QUANTIZED_MODULES, packedMemory } from './quant/quantize-model.js';
export type { QuantizeMode } from './quant/quantize-model.js';
export type { QuantizationInfo } from './quant/fingerprint.js';

// GGUF files (llama.cpp's format) as bytes: a model from a file's bytes or Blob; its
// tokenizer is tokenizerOfGguf (browser-text.ts)
export { parseGguf, ggufTensorData, ggufTensorRange, ggmlTypeName, GGML_TYPE_NAMES } from './io/gguf-parse.js';
export type { GgufHeader, GgufFile, GgufBytes, GgufReadOptions, GgufTensorInfo } from './io/gguf-parse.js';
export { llamaFromGguf, ggufLlamaConfig, ggufLora, ggufLoraFrom } from './models/llama/gguf-model.js';
export type { GgufModel, GgufModelOptions, GgufLora } from './models/llama/gguf-model.js';
export { ggufTensorName } from './models/llama/gguf-layout.js';

// files as bytes
export { SafetensorsBytes, encodeSafetensors } from './io/safetensors-format.js';
export type { TensorEntry, TensorInfo, HostTensor, SafetensorsDType } from './io/safetensors-format.js';
export {
  collectAdapter, encodeAdapter, loadAdapterBytes, applyAdapter, parseAdapterConfig,
  ADAPTER_CONFIG, ADAPTER_WEIGHTS, TRAINABLE_PARAMS, LONGLORA_JSON,
} from './io/peft-format.js';
export type { AdapterConfig, AdapterFiles, SaveAdapterOptions } from './io/peft-format.js';
