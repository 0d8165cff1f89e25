/**
 * longlora: LongLoRA fine-tuning of Llama-family models in TypeScript.
 * The library API; the `longlora` command line is a thin layer over it.
 */
export { LongLoraError } from './errors.js';

// tensors, autograd, memory
export * from './tensor/ops/index.js';
export { Tensor, Storage, fromHost, numelOf } from './tensor/tensor.js';
export type { Shape } from './tensor/tensor.js';
export type { DType, FloatDType, HostArray } from './tensor/dtype.js';
export { tidy } from './tensor/scope.js';
export { backward, noGrad, zeroGrad, clearTape, isGradEnabled } from './tensor/autograd.js';
export { Rng } from './tensor/random.js';

// backends
export type { Backend, DeviceBuffer, AttentionMask, MemoryStats } from './backend/backend.js';
export { registerBackend, getBackend, setBackend, currentBackend, cpuBackend, autoBackend, backendNames } from './backend/registry.js';

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
export { loadLlama, randomLlama, saveLlama } from './models/llama/load.js';
export type { LoadOptions, SaveOptions, RandomInitOptions } from './models/llama/load.js';

// files
export { SafetensorsFile, writeSafetensors } from './io/safetensors.js';
export { openCheckpoint, writeCheckpoint, readJsonFile, Checkpoint } from './io/checkpoint.js';

// 4-bit base (QLoRA NF4 with double quantisation)
export { quantizeNf4, dequantizeScales, NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE } from './quant/nf4.js';
export type { Nf4Data } from './quant/nf4.js';
export { NF4_CODE, DYNAMIC_CODE } from './quant/codebooks.js';
export { Nf4Weight } from './quant/nf4-weight.js';
export { quantizeModel, dequantizeModel, isQuantizedWeight, QUANTIZED_MODULES } from './quant/quantize-model.js';
export type { QuantizeMode } from './quant/quantize-model.js';
export type { QuantizationInfo } from './quant/fingerprint.js';
export { packedMemory } from './quant/quantize-model.js';
