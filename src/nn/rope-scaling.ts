/**
 * RoPE scaling schemes with Hugging Face semantics (transformers `modeling_rope_utils.py`):
 * the inverse frequencies and attention factor of every supported `rope_type`, the
 * config.json block they come from and go back to, and the LongLoRA context-extension rule
 * (SPEC §3). Everything is float64; HF computes the same formulas in float32.
 */
import { LongLoraError } from '../errors.js';

/** YaRN (NTK-by-parts). Optional fields take HF's defaults when absent. */
export interface YarnScaling {
  type: 'yarn';
  factor: number;
  /** Pretraining context; HF fills it with max_position_embeddings when the config lacks it. */
  originalMaxPositionEmbeddings?: number;
  /** Rotations bounding the blend: ≥ betaFast extrapolate, ≤ betaSlow interpolate (32 / 1). */
  betaFast?: number;
  betaSlow?: number;
  /** Multiplies cos and sin; default from factor (and mscale / mscaleAllDim when both set). */
  attentionFactor?: number;
  mscale?: number;
  mscaleAllDim?: number;
  /** Round the blend range to whole dimensions (default true). */
  truncate?: boolean;
}

/** Llama 3.1 frequency bands. */
export interface Llama3Scaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  /** Pretraining context; HF fills it with max_position_embeddings when the config lacks it. */
  originalMaxPositionEmbeddings?: number;
}

/** How positions are rescaled. `none` is plain RoPE (HF "default"). */
export type RopeScaling =
  | { type: 'none' }
  | { type: 'linear'; factor: number }
  | { type: 'dynamic'; factor: number }
  | YarnScaling
  | Llama3Scaling;

/** The `rope_type` values this implementation computes (config.json spelling). */
export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'llama3'] as const;

export interface RopeFrequencies {
  /** [D/2] inverse frequencies. */
  invFreq: Float64Array;
  /** Multiplies cos and sin (HF `attention_scaling`); 1 except for yarn. */
  attentionFactor: number;
}

/** inv_freq[i] = theta^(−2i/D), i < D/2 (HF `_compute_default_rope_parameters`). */
export function ropeInvFreq(D: number, theta: number): Float64Array {
  const out = new Float64Array(D / 2);
  for (let i = 0; i < D / 2; i++) out[i] = 1 / theta ** ((2 * i) / D);
  return out;
}

function originalLength(s: YarnScaling | Llama3Scaling, maxPositionEmbeddings: number | undefined): number {
  const L = s.originalMaxPositionEmbeddings ?? maxPositionEmbeddings;
  if (L === undefined) {
    throw new LongLoraError(`${s.type} RoPE scaling needs original_max_position_embeddings; set it in the scaling or pass max_position_embeddings`);
  }
  return L;
}

/**
 * Inverse frequencies and attention factor for head dim D. `seqLen` is the current length
 * (last position + 1; only dynamic reads it); `maxPositionEmbeddings` is the config's value
 * (dynamic needs it, yarn / llama3 fall back on it for their original length).
 */
export function ropeFrequencies(D: number, theta: number, scaling: RopeScaling, seqLen = 0, maxPositionEmbeddings?: number): RopeFrequencies {
  if (D % 2 !== 0 || D <= 0) throw new LongLoraError(`RoPE needs a positive even head dim, got ${D}`);
  switch (scaling.type) {
    case 'none':
      return { invFreq: ropeInvFreq(D, theta), attentionFactor: 1 };
    case 'linear':
      // HF divides inv_freq by the factor; the same as dividing positions (SPEC §3).
      return { invFreq: ropeInvFreq(D, theta).map((v) => v / scaling.factor), attentionFactor: 1 };
    case 'dynamic':
      return { invFreq: dynamicInvFreq(D, theta, scaling.factor, seqLen, maxPositionEmbeddings), attentionFactor: 1 };
    case 'yarn':
      return yarnFrequencies(D, theta, scaling, originalLength(scaling, maxPositionEmbeddings));
    case 'llama3':
      return { invFreq: llama3InvFreq(D, theta, scaling, originalLength(scaling, maxPositionEmbeddings)), attentionFactor: 1 };
  }
}

/**
 * Dynamic NTK (HF `_compute_dynamic_ntk_parameters`): with L = max(seqLen, max_pos), the
 * base becomes theta·(factor·L / max_pos − (factor − 1))^(D/(D−2)); plain RoPE while
 * seqLen ≤ max_pos. HF caches the frequencies of the longest length seen so far; here
 * they follow the current length only (what HF computes on a fresh model).
 */
function dynamicInvFreq(D: number, theta: number, factor: number, seqLen: number, maxPos: number | undefined): Float64Array {
  if (maxPos === undefined) throw new LongLoraError('dynamic RoPE scaling needs max_position_embeddings; pass it to RotaryEmbedding / ropeAngles');
  if (D <= 2) throw new LongLoraError(`dynamic RoPE scaling needs a head dim above 2, got ${D}`);
  const L = Math.max(seqLen, maxPos);
  const base = theta * ((factor * L) / maxPos - (factor - 1)) ** (D / (D - 2));
  return ropeInvFreq(D, base);
}

/** HF's YaRN `get_mscale`: 0.1·m·ln(scale) + 1, and 1 for scale ≤ 1. */
export function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** The factor YaRN multiplies cos and sin by (HF `_compute_yarn_parameters`). */
export function yarnAttentionFactor(s: YarnScaling): number {
  if (s.attentionFactor !== undefined) return s.attentionFactor;
  // HF tests truthiness: a zero mscale counts as absent.
  if (s.mscale && s.mscaleAllDim) return yarnMscale(s.factor, s.mscale) / yarnMscale(s.factor, s.mscaleAllDim);
  return yarnMscale(s.factor);
}

/**
 * YaRN (HF `_compute_yarn_parameters`). Dimension d(r) = D·ln(orig / (2π·r)) / (2·ln theta)
 * completes r rotations over the original context. With low = d(beta_fast) and
 * high = d(beta_slow) (floored / ceiled unless truncate is false, clamped to [0, D−1]),
 * ramp_i = clamp((i − low) / (high − low), 0, 1) and
 * inv_i = interp_i·ramp_i + extrap_i·(1 − ramp_i), where extrap_i = theta^(−2i/D) and
 * interp_i = extrap_i / factor: fast dimensions keep their frequency, slow ones are
 * interpolated, those between are blended.
 */
function yarnFrequencies(D: number, theta: number, s: YarnScaling, orig: number): RopeFrequencies {
  const betaFast = s.betaFast || 32;
  const betaSlow = s.betaSlow || 1;
  const corrDim = (rotations: number): number => (D * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corrDim(betaFast);
  let high = corrDim(betaSlow);
  if (s.truncate ?? true) { low = Math.floor(low); high = Math.ceil(high); }
  low = Math.max(low, 0);
  high = Math.min(high, D - 1);
  if (low === high) high += 0.001; // HF: avoids a zero-width ramp
  const invFreq = new Float64Array(D / 2);
  for (let i = 0; i < D / 2; i++) {
    const posFreq = theta ** ((2 * i) / D);
    const extrapolation = 1 / posFreq;
    const interpolation = 1 / (s.factor * posFreq);
    const keep = 1 - Math.min(Math.max((i - low) / (high - low), 0), 1); // share left unscaled
    invFreq[i] = interpolation * (1 - keep) + extrapolation * keep;
  }
  return { invFreq, attentionFactor: yarnAttentionFactor(s) };
}

/**
 * Llama 3.1 (HF `_compute_llama3_parameters`): with wavelength λ_i = 2π / inv_i, bands
 * λ < orig / high_freq_factor keep inv_i, λ > orig / low_freq_factor use inv_i / factor,
 * and in between s = (orig/λ − low) / (high − low) blends (1 − s)·inv_i/factor + s·inv_i.
 */
function llama3InvFreq(D: number, theta: number, s: Llama3Scaling, orig: number): Float64Array {
  const inv = ropeInvFreq(D, theta);
  const lowWavelen = orig / s.lowFreqFactor;
  const highWavelen = orig / s.highFreqFactor;
  return inv.map((v) => {
    const wavelen = (2 * Math.PI) / v;
    if (wavelen < highWavelen) return v;
    if (wavelen > lowWavelen) return v / s.factor;
    const smooth = (orig / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return ((1 - smooth) * v) / s.factor + smooth * v;
  });
}

// ---------------------------------------------------------------------------- checks

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Validates a scaling built in code (an override, a constructor argument) and returns it.
 * `where` names its origin in the error.
 */
export function checkRopeScaling(s: RopeScaling, where: string): RopeScaling {
  const bad = (what: string, fix: string): never => { throw new LongLoraError(`${where}: ${what}; ${fix}`); };
  const kind = (s as { type?: unknown }).type;
  if (kind === 'none') return s;
  if (kind !== 'linear' && kind !== 'dynamic' && kind !== 'yarn' && kind !== 'llama3') {
    return bad(`RoPE scaling type ${JSON.stringify(kind)} is not supported`, 'use one of none, linear, dynamic, yarn, llama3');
  }
  const f = (s as { factor?: unknown }).factor;
  if (!isNum(f) || f < 1) bad(`${kind} factor must be a finite number ≥ 1, got ${String(f)}`, 'pass a factor ≥ 1 (1 means no interpolation)');
  const positive = (name: string, v: unknown, integer = false): void => {
    if (v === undefined) return;
    if (!isNum(v) || v <= 0 || (integer && !Number.isInteger(v))) bad(`${kind} ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(v)}`, `fix or remove ${name}`);
  };
  if (s.type === 'yarn') {
    positive('originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings, true);
    for (const k of ['betaFast', 'betaSlow', 'attentionFactor'] as const) positive(k, s[k]);
    for (const k of ['mscale', 'mscaleAllDim'] as const) if (s[k] !== undefined && (!isNum(s[k]) || s[k] < 0)) bad(`yarn ${k} must be a number ≥ 0, got ${String(s[k])}`, `fix or remove ${k}`);
  }
  if (s.type === 'llama3') {
    positive('originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings, true);
    positive('lowFreqFactor', s.lowFreqFactor);
    positive('highFreqFactor', s.highFreqFactor);
    if (!(s.highFreqFactor > s.lowFreqFactor)) bad(`llama3 highFreqFactor (${s.highFreqFactor}) must exceed lowFreqFactor (${s.lowFreqFactor})`, 'Llama 3.1 uses low 1, high 4');
  }
  return s;
}

// ---------------------------------------------------------------------------- config.json

type Json = Record<string, unknown>;

/**
 * Reads one `rope_scaling` / `rope_parameters` block (`key` names it, `source` the file)
 * with HF's defaults: `rope_type` or `type`, default "default"; yarn / llama3
 * original_max_position_embeddings = max_position_embeddings; yarn factor, when null, =
 * max_position_embeddings / original; yarn beta_fast / beta_slow null or 0 = 32 / 1. Keys a
 * type does not read are ignored, as HF ignores them. rope_theta is the caller's business.
 */
export function ropeScalingFromHF(block: Json, key: string, source: string, maxPositionEmbeddings: number): RopeScaling {
  const fail = (msg: string): never => { throw new LongLoraError(`${source}: ${msg}`); };
  const kind = block.rope_type ?? block.type ?? 'default';
  const has = (k: string): boolean => block[k] !== undefined && block[k] !== null;
  const num = (k: string, { integer = false, min = 0, minIncl = false } = {}): number => {
    const v = block[k];
    const ok = isNum(v) && (minIncl ? v >= min : v > min) && (!integer || Number.isInteger(v));
    if (!ok) fail(`"${key}.${k}" must be ${integer ? 'an integer' : 'a number'} ${minIncl ? '≥' : '>'} ${min} for ${String(kind)} scaling, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const factor = (): number => num('factor', { min: 1, minIncl: true });
  const original = (): number => (has('original_max_position_embeddings') ? num('original_max_position_embeddings', { integer: true }) : maxPositionEmbeddings);
  switch (kind) {
    case 'default': return { type: 'none' };
    case 'linear': return { type: 'linear', factor: factor() };
    case 'dynamic': return { type: 'dynamic', factor: factor() };
    case 'llama3': {
      const s: Llama3Scaling = {
        type: 'llama3', factor: factor(), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'),
        originalMaxPositionEmbeddings: original(),
      };
      if (!(s.highFreqFactor > s.lowFreqFactor)) fail(`"${key}.high_freq_factor" (${s.highFreqFactor}) must exceed "${key}.low_freq_factor" (${s.lowFreqFactor}); Llama 3.1 uses 4 and 1`);
      return s;
    }
    case 'yarn': {
      const orig = original();
      let f: number;
      if (has('factor')) f = factor();
      else if (has('original_max_position_embeddings') && maxPositionEmbeddings >= orig) f = maxPositionEmbeddings / orig;
      else return fail(`"${key}.factor" is missing for yarn scaling; set it (e.g. 4 for 4× the original context)`);
      const s: YarnScaling = { type: 'yarn', factor: f, originalMaxPositionEmbeddings: orig };
      // beta_fast / beta_slow: HF reads `value or default`, so 0 means the default too
      if (has('beta_fast') && block.beta_fast !== 0) s.betaFast = num('beta_fast');
      if (has('beta_slow') && block.beta_slow !== 0) s.betaSlow = num('beta_slow');
      if (has('attention_factor')) s.attentionFactor = num('attention_factor');
      if (has('mscale')) s.mscale = num('mscale', { minIncl: true });
      if (has('mscale_all_dim')) s.mscaleAllDim = num('mscale_all_dim', { minIncl: true });
      if (has('truncate')) {
        if (typeof block.truncate !== 'boolean') fail(`"${key}.truncate" must be true or false, got ${JSON.stringify(block.truncate)}`);
        s.truncate = block.truncate as boolean;
      }
      return s;
    }
    default:
      return fail(`${key} type ${JSON.stringify(kind)} is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`);
  }
}

/**
 * The `rope_scaling` block for config.json (null for plain RoPE): the type under both
 * spellings, then every field the type reads; yarn / llama3 always state their original
 * length (filled from `maxPositionEmbeddings` when the scaling leaves it to the default).
 */
export function ropeScalingToHF(s: RopeScaling, maxPositionEmbeddings?: number): Json | null {
  if (s.type === 'none') return null;
  const out: Json = { rope_type: s.type, type: s.type, factor: s.factor };
  if (s.type === 'yarn' || s.type === 'llama3') {
    const orig = s.originalMaxPositionEmbeddings ?? maxPositionEmbeddings;
    if (orig !== undefined) out.original_max_position_embeddings = orig;
  }
  if (s.type === 'llama3') {
    out.low_freq_factor = s.lowFreqFactor;
    out.high_freq_factor = s.highFreqFactor;
  }
  if (s.type === 'yarn') {
    const opt: [string, unknown][] = [
      ['beta_fast', s.betaFast], ['beta_slow', s.betaSlow], ['attention_factor', s.attentionFactor],
      ['mscale', s.mscale], ['mscale_all_dim', s.mscaleAllDim], ['truncate', s.truncate],
    ];
    for (const [k, v] of opt) if (v !== undefined) out[k] = v;
  }
  return out;
}

/** A short human-readable name: "none", "linear ×8", "yarn ×4 (original 4096)", … */
export function describeRopeScaling(s: RopeScaling): string {
  switch (s.type) {
    case 'none': return 'none';
    case 'linear': return `linear ×${s.factor}`;
    case 'dynamic': return `dynamic NTK ×${s.factor}`;
    case 'yarn': return `yarn ×${s.factor}${s.originalMaxPositionEmbeddings ? ` (original ${s.originalMaxPositionEmbeddings})` : ''}`;
    case 'llama3': return `llama3 ×${s.factor}${s.originalMaxPositionEmbeddings ? ` (original ${s.originalMaxPositionEmbeddings})` : ''}`;
  }
}

// ---------------------------------------------------------------------------- extension

/**
 * The context a model with this scaling was trained for: max_position_embeddings, times the
 * factor for linear (SPEC §3); for yarn and llama3 the larger of max_position_embeddings and
 * original × factor; dynamic is an inference-time scheme, so max_position_embeddings.
 */
export function ropeContextLength(s: RopeScaling, maxPositionEmbeddings: number): number {
  switch (s.type) {
    case 'none':
    case 'dynamic': return maxPositionEmbeddings;
    case 'linear': return maxPositionEmbeddings * s.factor;
    case 'yarn':
    case 'llama3': return Math.max(maxPositionEmbeddings, originalLength(s, maxPositionEmbeddings) * s.factor);
  }
}

export interface RopeExtension {
  scaling: RopeScaling;
  /** Why this scaling was chosen, in one or two sentences. */
  explanation: string;
}

/**
 * The RoPE scaling for fine-tuning `config` at `targetLength` tokens.
 *
 * - An `override` wins (validated; yarn / llama3 get the config's original length if unset).
 * - Otherwise, if the target fits the context the config already covers
 *   (ropeContextLength), the config's own scaling is returned unchanged.
 * - Otherwise LongLoRA's rule: linear interpolation. With original = max_pos × f0 (f0 the
 *   existing linear factor, 1 if none) the factor is f0 · ceil(target / original).
 *
 * The official LongLoRA script writes ceil(target / original) and drops f0. For a plain
 * model (f0 = 1) both agree. For a model already scaled by f0, the weights expect position
 * p at p / f0, i.e. positions in [0, max_pos); replacing f0 by ceil(target / (max_pos·f0))
 * would map the target onto [0, target / ceil(…)) which is up to f0 times wider than that
 * range. Compounding (multiplying) keeps every interpolated position below max_pos.
 *
 * A config with dynamic, yarn or llama3 scaling whose context is shorter than the target
 * needs an explicit override: linear interpolation on top of those schemes is not one HF
 * scaling, and silently replacing them would change the positions the model was trained on.
 */
export function extendRopeScaling(
  config: { ropeScaling: RopeScaling; maxPositionEmbeddings: number },
  targetLength: number,
  override?: RopeScaling,
): RopeExtension {
  if (!isNum(targetLength) || targetLength <= 0 || !Number.isInteger(targetLength)) {
    throw new LongLoraError(`context extension: the target length must be a positive integer number of tokens, got ${String(targetLength)}; set the training sequence length (e.g. 8192)`);
  }
  const maxPos = config.maxPositionEmbeddings;
  const current = config.ropeScaling;
  const context = ropeContextLength(current, maxPos);
  if (override) {
    const r = applyOverride(checkRopeScaling(sameKindOverride(override, current), 'RoPE scaling override'), targetLength, maxPos);
    if ((current.type === 'yarn' || current.type === 'llama3') && override.type !== current.type) {
      r.explanation += ` Note: it replaces the model's own ${describeRopeScaling(current)} scaling, so positions no longer get the frequencies ` +
        `the model was trained with; an override of type ${current.type} with a larger factor keeps them.`;
    }
    return r;
  }
  if (targetLength <= context) {
    return { scaling: current, explanation: `target ${targetLength} ≤ the ${context} positions the model already covers (max_position_embeddings ${maxPos}, scaling ${describeRopeScaling(current)}): scaling unchanged.` };
  }
  if (current.type !== 'none' && current.type !== 'linear') {
    throw new LongLoraError(
      `context extension: the model uses ${describeRopeScaling(current)} RoPE scaling covering ${context} positions, below the target ${targetLength}; ` +
      `LongLoRA's rule is linear interpolation and does not compose with ${current.type}. Pass an explicit RoPE scaling override ` +
      (current.type === 'dynamic'
        ? `(e.g. linear with factor ${Math.ceil(targetLength / maxPos)}, or dynamic with a larger factor).`
        : `of type ${current.type} with a larger factor (e.g. ${current.factor * Math.ceil(targetLength / context)}; its other fields, the original length among them, are kept from the model's${current.type === 'yarn' ? '; longlora train: --rope-type yarn' : ''}); ` +
          `linear interpolation would replace the ${current.type} frequencies the model was trained with.`),
    );
  }
  const f0 = current.type === 'linear' ? current.factor : 1;
  const k = Math.ceil(targetLength / context);
  const factor = f0 * k;
  const base = `target ${targetLength} > original context ${context} (max_position_embeddings ${maxPos} × linear factor ${f0})`;
  const explanation = f0 === 1
    ? `${base}: linear position interpolation with factor ceil(${targetLength} / ${context}) = ${factor}.`
    : `${base}: linear factor ${f0} × ceil(${targetLength} / ${context}) = ${factor}. The existing factor compounds so positions stay within the range the model was trained on; ` +
      `the official LongLoRA script would write ceil(${targetLength} / ${context}) = ${k}.`;
  return { scaling: { type: 'linear', factor }, explanation };
}

/**
 * An override of the model's own yarn or llama3 type extends that scaling: the fields it
 * leaves out (the original length, llama3's frequency bands, yarn's betas) are the model's,
 * not the defaults, so a larger factor keeps the frequencies the model was trained with.
 */
function sameKindOverride(s: RopeScaling, current: RopeScaling): RopeScaling {
  if ((s.type !== 'yarn' && s.type !== 'llama3') || s.type !== current.type) return s;
  const given = Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
  return { ...current, ...given } as RopeScaling;
}

function applyOverride(s: RopeScaling, target: number, maxPos: number): RopeExtension {
  let scaling = s;
  if ((s.type === 'yarn' || s.type === 'llama3') && s.originalMaxPositionEmbeddings === undefined) {
    scaling = { ...s, originalMaxPositionEmbeddings: maxPos };
  }
  const covers = ropeContextLength(scaling, maxPos);
  const note = s.type !== 'dynamic' && covers < target
    ? ` Note: it covers ${covers} positions, fewer than the target ${target}; later positions extrapolate.`
    : '';
  return { scaling, explanation: `explicit RoPE scaling override: ${describeRopeScaling(scaling)}.${note}` };
}
