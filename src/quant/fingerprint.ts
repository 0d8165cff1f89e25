/**
 * Fingerprints of a quantised base model, so that an adapter trained on a 4-bit base is
 * never resumed, merged or evaluated on another one by mistake.
 *
 * An adapter trained under QLoRA has learned against the *quantised* weights, so the
 * fingerprint hashes exactly what the run computed with: every NF4 weight's packed codes,
 * scale codes, scale absmax values, offset and shape, and every other base tensor
 * (embeddings, norms, output head) as float32 values with its shape — independent of the
 * dtype the non-quantised tensors were loaded in. Two bases with the same fingerprint give
 * the same model under NF4; a base whose weights differ anywhere gives another one.
 * The result is `sha256:<hex>` over the "<name> <digest>" lines sorted by name, so the order
 * in which tensors were seen does not matter.
 */
import { LongLoraError } from '../errors.js';
import { Sha256 } from '../util/sha256.js';
import type { Nf4Data } from './nf4.js';
import { NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE } from './nf4.js';

/** What a quantised model records about its base (trainer state, longlora.json). */
export interface QuantizationInfo {
  /** Storage format of the quantised layers. */
  format: 'nf4';
  /** `sha256:<hex>` of the base as quantised (see the file comment). */
  fingerprint: string;
  /** Module names that were quantised (q_proj, ...). */
  modules: string[];
  /** Number of quantised tensors. */
  tensors: number;
}

const bytesOf = (a: Float32Array | Uint8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** An incremental SHA-256 as the fingerprints use it. */
export interface FingerprintHash {
  update(data: Uint8Array | string): FingerprintHash;
  hex(): string;
}

/**
 * Where the fingerprints' SHA-256 comes from: plain JavaScript by default (browsers), and
 * Node's native one, far faster on a large base, which the Node model loader (load.ts, part
 * of the Node entry and the command line) installs (node-hash.ts). Both give the same digests, so a fingerprint does not depend on where it
 * was computed.
 */
let newHash: () => FingerprintHash = () => new Sha256();

/** Installs the SHA-256 implementation the fingerprints use (see node-hash.ts). */
export function setFingerprintHash(factory: () => FingerprintHash): void {
  newHash = factory;
}

/** sha256 (hex) of one NF4 tensor's quantised contents, format constants and shape. */
export function digestNf4(q: Nf4Data, shape: readonly number[]): string {
  return newHash()
    .update(`nf4 block ${NF4_BLOCK_SIZE} scale-block ${SCALE_BLOCK_SIZE} shape [${shape.join(',')}] offset ${q.scaleOffset}\n`)
    .update(q.packed)
    .update(q.scaleCodes)
    .update(bytesOf(q.scaleAbsmax))
    .hex();
}

/** sha256 (hex) of a float tensor as float32 values, with its shape. */
export function digestFloats(values: ArrayLike<number>, shape: readonly number[]): string {
  const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
  return newHash().update(`f32 shape [${shape.join(',')}]\n`).update(bytesOf(f32)).hex();
}

/** Accumulates per-tensor digests into one fingerprint. */
export class FingerprintBuilder {
  private readonly lines: string[] = [];

  add(name: string, digest: string): void {
    this.lines.push(`${name} ${digest}\n`);
  }

  get count(): number { return this.lines.length; }

  /** `sha256:<hex>` of the lines added so far. */
  value(): string {
    const h = newHash();
    for (const l of [...this.lines].sort()) h.update(l);
    return `sha256:${h.hex()}`;
  }
}

/** A short form for messages: the first 12 hex digits. */
export function shortFingerprint(f: string): string {
  return f.replace(/^sha256:/, '').slice(0, 12);
}

/** The `quantization` block of longlora.json (snake_case, like the rest of the file). */
export interface QuantizationRecord {
  format: 'nf4';
  block_size: number;
  double_quant: { block_size: number; code: 'dynamic-8bit' };
  modules: string[];
  base_fingerprint: string;
}

/** The longlora.json record of a quantised run's base. */
export function quantizationRecord(info: QuantizationInfo): QuantizationRecord {
  return {
    format: info.format,
    block_size: NF4_BLOCK_SIZE,
    double_quant: { block_size: SCALE_BLOCK_SIZE, code: 'dynamic-8bit' },
    modules: info.modules,
    base_fingerprint: info.fingerprint,
  };
}

/** Reads the `quantization` block of a longlora.json sidecar; null when the run was not quantised. */
export function readQuantizationRecord(sidecar: Record<string, unknown> | null, where: string): QuantizationRecord | null {
  const q = sidecar?.quantization;
  if (q === undefined || q === null) return null;
  const r = q as Partial<QuantizationRecord>;
  if (typeof q !== 'object' || r.format !== 'nf4' || typeof r.base_fingerprint !== 'string') {
    throw new LongLoraError(`${where}: "quantization" must be {format: "nf4", base_fingerprint, ...}, got ${JSON.stringify(q)}`);
  }
  if (r.block_size !== NF4_BLOCK_SIZE || r.double_quant?.block_size !== SCALE_BLOCK_SIZE) {
    throw new LongLoraError(`${where}: the adapter was trained on an NF4 base with block sizes ${r.block_size}/${r.double_quant?.block_size}; this version quantises with ${NF4_BLOCK_SIZE}/${SCALE_BLOCK_SIZE}`);
  }
  return r as QuantizationRecord;
}

/**
 * Throws when a quantised base is not the one a run was trained on. `expected` is the
 * recorded fingerprint, `actual` the loaded model's quantisation info.
 */
export function checkBaseFingerprint(expected: string, actual: QuantizationInfo | null, base: string, run: string): void {
  if (!actual) throw new LongLoraError(`${run} was trained on a 4-bit (NF4) base; load ${base} with --quantize nf4`);
  if (actual.fingerprint !== expected) {
    throw new LongLoraError(`${base} is not the base model ${run} was trained on: its 4-bit (NF4) fingerprint is ` +
      `${shortFingerprint(actual.fingerprint)}…, the run recorded ${shortFingerprint(expected)}…. ` +
      'Use the same base model folder (same weights) the run was trained with');
  }
}
