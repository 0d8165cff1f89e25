/**
 * `--tensor-cores`: asking the WebGPU backend for its subgroup-matrix (tensor-core)
 * kernels, and saying in one line what runs on them. Shared by `longlora train` and
 * `longlora eval ppl`.
 */
import type { Backend } from './backend.js';
import { backendOptions, configureBackend } from './registry.js';
import { LongLoraError } from '../errors.js';
import type { Precision } from '../tensor/dtype.js';

/** Refuses --tensor-cores with a backend other than webgpu (or auto), naming the fix. */
export function checkTensorCoreBackend(backend: string): void {
  if (backend !== 'auto' && backend !== 'webgpu') {
    throw new LongLoraError(`--tensor-cores runs matmuls on a GPU's tensor cores through the webgpu backend, not ${backend}; use --device webgpu (or auto), or drop --tensor-cores`);
  }
}

/**
 * Sets whether the WebGPU backend is created with subgroup matrices; its other options (a
 * library caller's) are kept, and without tensor cores they are as before any run asked
 * for them, so the same device is reused.
 */
export function useTensorCores(on: boolean): void {
  const { subgroupMatrix: _, ...rest } = backendOptions('webgpu');
  configureBackend('webgpu', on ? { ...rest, subgroupMatrix: true } : rest);
}

/** What --tensor-cores does on the chosen backend with these weight and activation dtypes, in one line. */
export function tensorCoreNote(be: Backend, dtype: string, precision: Precision): string {
  const gpu = be as Backend & { sgm?: unknown; subgroupMatrixNote?: string };
  if (be.name !== 'webgpu') return `tensor cores: not used (the backend is ${be.name}; they need webgpu)`;
  if (!gpu.sgm) return `tensor cores: not available (${gpu.subgroupMatrixNote ?? 'unknown reason'}); f16 matmuls and attention run on the general kernels`;
  const on = `tensor cores: on (${gpu.subgroupMatrixNote ?? ''})`;
  if (precision !== 'f16') return `${on}; but they take f16 · f16 products only, and with --precision ${precision} nothing is: use --dtype f16 --precision f16`;
  if (dtype !== 'f16') return `${on} for attention; the base projections need --dtype f16 too (now ${dtype})`;
  return `${on} for the base projections and attention`;
}
