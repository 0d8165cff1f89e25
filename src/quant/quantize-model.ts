/**
 * Which layers of a Llama are stored in 4 bits, and turning a model's base linear layers
 * into NF4 (at load time, or in memory) and back.
 *
 * QLoRA (and LongQLoRA, which loads its base through transformers' bitsandbytes
 * integration) replaces every `nn.Linear` of the model with a 4-bit layer except the output
 * head, which transformers keeps in 16 bits (`get_keys_to_not_convert`: the output
 * embedding, or the tied weights); embeddings and norms are not linear layers and stay as
 * they are. For Llama that is q, k, v, o, gate, up and down in every decoder layer.
 * Also here: the memory a packed base takes against the same weights in 16 bits (what the
 * trainer prints, and what `bench/nf4.ts` checks against the backend's byte count).
 */
import type { Backend } from '../backend/backend.js';
import { LongLoraError } from '../errors.js';
import { Linear, PackedLinear } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { tidy } from '../tensor/scope.js';
import { noGrad } from '../tensor/autograd.js';
import { FingerprintBuilder, digestFloats, type QuantizationInfo } from './fingerprint.js';
import { Nf4CodeBooks, Nf4Weight } from './nf4-weight.js';
import { DYNAMIC_CODE, NF4_CODE } from './codebooks.js';

/** How the frozen base linear layers are stored: as loaded, or 4-bit NF4. */
export type QuantizeMode = 'none' | 'nf4';

/** The module names QLoRA quantises in a Llama (all decoder linear layers; not lm_head). */
export const QUANTIZED_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

const QUANTIZED_WEIGHT = new RegExp(`(^|\\.)(${QUANTIZED_MODULES.join('|')})\\.weight$`);

/** Whether a checkpoint tensor is the weight of a layer that is stored in NF4. */
export function isQuantizedWeight(name: string): boolean {
  return QUANTIZED_WEIGHT.test(name);
}

const moduleOf = (name: string): string => name.split('.').slice(-2, -1)[0]!;

/**
 * Quantises base weights one at a time while a model is built (the loader), sharing one
 * pair of code books, and fingerprints every base tensor it sees (fingerprint.ts).
 * Call `dispose()` when the model is built (the weights keep their code books alive).
 */
export class Nf4Quantizer {
  private readonly books: Nf4CodeBooks;
  private readonly fingerprint = new FingerprintBuilder();
  private readonly modules = new Set<string>();
  private tensors = 0;

  constructor(readonly backend: Backend) {
    this.books = new Nf4CodeBooks(backend);
  }

  /** A frozen NF4 layer for the weight `name` [out, in] given as float32 values. */
  linear(name: string, values: Float32Array, shape: readonly number[]): PackedLinear {
    const w = Nf4Weight.quantize(values, shape, { books: this.books, name });
    this.fingerprint.add(name, w.digest);
    this.modules.add(moduleOf(name));
    this.tensors++;
    return new PackedLinear(w);
  }

  /** Records a tensor that stays unquantised (embeddings, norms, head) in the fingerprint. */
  plain(name: string, values: ArrayLike<number>, shape: readonly number[]): void {
    this.fingerprint.add(name, digestFloats(values, shape));
  }

  info(): QuantizationInfo {
    return { format: 'nf4', fingerprint: this.fingerprint.value(), modules: [...this.modules], tensors: this.tensors };
  }

  dispose(): void {
    this.books.dispose();
  }
}

/**
 * Quantises the base linear layers of a model in memory (a model built by `randomLlama`, or
 * loaded unquantised): each `Linear` whose weight `isQuantizedWeight` becomes a
 * `PackedLinear` over NF4 and its float weight is freed. Layers already wrapped by LoRA are
 * an error (quantise first, then apply LoRA). Returns what was quantised, with the
 * fingerprint of the resulting base.
 */
export async function quantizeModel(model: Module): Promise<QuantizationInfo> {
  const named = model.namedParameters();
  if (named.length === 0) throw new LongLoraError('quantizeModel: the model has no parameters');
  if (named.some(([n]) => n.includes('.lora_'))) throw new LongLoraError('quantizeModel: the model already has LoRA layers; quantise the base first, then apply LoRA');
  if (model.namedBuffers().length > 0) throw new LongLoraError('quantizeModel: the model is already quantised');
  const q = new Nf4Quantizer(named[0]![1].backend);
  try {
    for (const [path, m] of model.namedModules()) {
      if (!(m instanceof Linear) || !isQuantizedWeight(`${path}.weight`)) continue;
      const packed = q.linear(`${path}.weight`, Float32Array.from(await m.weight.floats()), m.weight.shape);
      packed.bias = m.bias;
      m.weight.dispose();
      model.setAt(path, packed);
    }
    for (const [name, t] of model.namedParameters()) q.plain(name, await t.floats(), t.shape);
    return q.info();
  } finally {
    q.dispose();
  }
}

/** Replaces every packed base layer by a `Linear` over its dequantised float32 weight. */
export function dequantizeModel(model: Module): number {
  let n = 0;
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof PackedLinear)) continue;
    const w = tidy(() => noGrad(() => m.weight.dequantize('f32'))).keep();
    w.name = `${path}.weight`;
    m.weight.dispose();
    model.setAt(path, new Linear(w, m.bias));
    n++;
  }
  return n;
}

// ---- memory ----------------------------------------------------------------------

/** Bytes of the two float32 code books every group of NF4 weights shares (once per load). */
export const CODE_BOOK_BYTES = 4 * (NF4_CODE.length + DYNAMIC_CODE.length);

export interface PackedMemory {
  /** Packed (quantised) weights. */
  tensors: number;
  /** Values they hold once dequantised. */
  values: number;
  /** Device bytes of the packed weights, plus one pair of code books. */
  bytes: number;
  /** The same values at 2 bytes each (f16/bf16). */
  f16Bytes: number;
  /** bytes / f16Bytes. */
  ratio: number;
}

/** Memory of a model's packed base weights. */
export function packedMemory(model: Module): PackedMemory {
  const packed = model.namedBuffers();
  const values = packed.reduce((a, [, w]) => a + w.numel, 0);
  const bytes = packed.reduce((a, [, w]) => a + w.bytes, 0) + (packed.length > 0 ? CODE_BOOK_BYTES : 0);
  return { tensors: packed.length, values, bytes, f16Bytes: 2 * values, ratio: values > 0 ? bytes / (2 * values) : 0 };
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1)} MiB`;

/** One line: "4-bit NF4 (double quantisation) for 14 linear layers: 0.009 MiB, 0.26× their f16 size". */
export function describeQuantization(model: Module): string {
  const m = packedMemory(model);
  const format = model.namedBuffers()[0]?.[1].format ?? 'none';
  return `${format.toUpperCase()} with double quantisation for ${m.tensors} linear layers: ${mib(m.bytes)}, ` +
    `${m.ratio.toFixed(3)}× their ${mib(m.f16Bytes)} in 16 bits`;
}
