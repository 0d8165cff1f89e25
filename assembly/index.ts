/**
 * The WebAssembly kernels of the wasm backend (src/backend/wasm/). Every export has the
 * signature (args, chunk, tid): see simd.ts for the argument block and chunks. The module
 * imports its memory (shared by all threads) and allocates nothing itself: buffers and
 * per-thread scratch are placed by the host's allocator above `heapBase()`.
 */
export { fill, copy, cast, unary, unaryBackward, binary, affine, reduceSum, swiglu, swigluBackward } from './elementwise';
export { gemv, matmul, matmulPackB } from './matmul';
export { softmax, softmaxBackward, rmsnorm, rmsnormBackward, rmsnormDw } from './norm';
export { rope } from './rope';
export { gather, scatterAdd } from './embedding';
export { crossEntropy, crossEntropyBackward } from './loss';
export { adamw } from './optim';
export { attention, attentionBackward, attnDelta, attnReduce } from './attention';
export { dequantize4bit, linear4bit } from './quant';

/** First byte the host may use: static data (math tables) lies below. */
export function heapBase(): usize { return __heap_base; }

/** Which build this is (1 = relaxed SIMD). */
export function relaxed(): i32 { return ASC_FEATURE_RELAXED_SIMD ? 1 : 0; }
