/**
 * Model cards: the README.md that the Hugging Face Hub shows for a repository, written
 * beside an adapter (a training run's folder) and a merged model. YAML metadata first
 * (`base_model`, `library_name: peft` for an adapter, tags), then what the model is, how
 * it was trained (from the run's train_config.json and longlora.json), its perplexity
 * table (ppl.json) and how to load it — for an adapter, with the RoPE scaling it was
 * trained with, which PEFT does not apply by itself. Everything is read from the folder, so
 * a card can be rewritten later (by `longlora push`, with the repository's name).
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeBytesAtomic } from './atomic.js';
import { ggmlTypeName } from './gguf-parse.js';
import { ggufRopeScaling, readGgufHeader } from './gguf-read.js';
import { ADAPTER_CONFIG, LONGLORA_JSON } from './peft-format.js';
import { isRepoId } from './hub.js';

/** In every card this module writes, after the metadata (which the Hub reads only at the very top); a README.md without it is the user's own. */
export const CARD_MARK = '<!-- model card written by longlora; rewritten by `longlora push` unless this line is removed -->';

export const CARD_FILE = 'README.md';

type Json = Record<string, unknown>;

function readJson(file: string): Json | null {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null;
  } catch {
    return null;
  }
}

/** A Python literal for a JSON value (for the loading snippet): numbers as floats, except context lengths. */
function py(v: unknown, key = ''): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (Array.isArray(v)) return `[${v.map((x) => py(x)).join(', ')}]`;
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${py(x, k)}`).join(', ')}}`;
  if (typeof v === 'number') return Number.isInteger(v) && !key.includes('position_embeddings') ? v.toFixed(1) : String(v);
  return JSON.stringify(v);
}

/** What a card says about a model, read from its folders. */
export interface CardFacts {
  /** The base model: a Hub repository id or a folder name. */
  base: string;
  /** Whether `base` is a Hub repository id (then it goes into the metadata). */
  baseOnHub: boolean;
  /** How to name this model in the loading snippets: a repository id, or a folder. */
  self: string;
  rope: Json | null;
  config: Json | null;
  adapter: Json | null;
  ppl: string | null;
  originalContext: number | null;
}

/**
 * Facts of a run folder (adapter files, train_config.json, longlora.json, ppl.json).
 * `originalContext` defaults to the base model's max_position_embeddings when its folder is at hand.
 */
export function cardFacts(runDir: string, opts: { self?: string; base?: string; originalContext?: number } = {}): CardFacts {
  const adapter = readJson(path.join(runDir, ADAPTER_CONFIG));
  const side = readJson(path.join(runDir, LONGLORA_JSON));
  const config = readJson(path.join(runDir, 'train_config.json'));
  const ppl = readJson(path.join(runDir, 'ppl.json'));
  const recorded = opts.base ?? (typeof adapter?.base_model_name_or_path === 'string' ? adapter.base_model_name_or_path : typeof config?.model === 'string' ? config.model : 'the base model');
  const baseOnHub = isRepoId(recorded);
  const rope = side?.rope_scaling && typeof side.rope_scaling === 'object' ? (side.rope_scaling as Json) : null;
  const baseConfig = typeof config?.model === 'string' ? readJson(path.join(config.model, 'config.json')) : null;
  // The base's own context: its config when the folder is at hand (a yarn or llama3 base's
  // original_max_position_embeddings is its pretraining length, not what it covers), else
  // the original length the run's scaling records.
  const original = opts.originalContext ??
    (typeof baseConfig?.max_position_embeddings === 'number' ? baseConfig.max_position_embeddings
      : rope && typeof rope.original_max_position_embeddings === 'number' ? rope.original_max_position_embeddings : null);
  return {
    base: baseOnHub ? recorded : path.basename(path.resolve(recorded)),
    baseOnHub,
    self: opts.self ?? path.basename(path.resolve(runDir)),
    rope, config, adapter,
    ppl: typeof ppl?.table === 'string' ? ppl.table : null,
    originalContext: original,
  };
}

function yamlHeader(lines: Record<string, string | string[] | undefined>): string {
  const out = ['---'];
  for (const [k, v] of Object.entries(lines)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) out.push(`${k}:`, ...v.map((x) => `- ${x}`));
    else out.push(`${k}: ${v}`);
  }
  out.push('---');
  return out.join('\n');
}

function describeRope(rope: Json | null): string {
  if (!rope) return 'the base model\'s own positions';
  const type = String(rope.rope_type ?? rope.type ?? 'linear');
  const factor = typeof rope.factor === 'number' ? ` ×${rope.factor}` : '';
  return type === 'linear' ? `linear position interpolation${factor}` : `${type} RoPE scaling${factor}`;
}

/** The training lines of a card, from train_config.json. */
function trainingLines(f: CardFacts): string[] {
  const c = f.config;
  if (!c) return [];
  const n = Number(c.seqLen);
  const lines: string[] = [];
  const group = typeof c.groupSize === 'number' ? c.groupSize : Math.round(n * Number(c.groupRatio ?? 0.25));
  lines.push(c.attention === 'dense'
    ? '- attention while training: dense (full) causal attention'
    : `- attention while training: S²-Attn, ${String(c.s2Form ?? 'segmented')} form, groups of ${group} tokens (dense attention at inference)`);
  const perStep = Number(c.gradAccum ?? 1) * Number(c.batchSize ?? 1); // sequences per step
  const tokens = Number(c.steps) * perStep * n;
  lines.push(`- ${Number(c.steps).toLocaleString('en-US')} steps of ${perStep} × ${n.toLocaleString('en-US')} tokens ` +
    `(${tokens.toLocaleString('en-US')} tokens), AdamW lr ${String(c.lr)}${c.precision && c.precision !== 'f32' ? `, ${String(c.precision)} activations` : ''}`);
  if (typeof c.data === 'string') lines.push(`- data: \`${path.basename(c.data)}\`${c.dataFormat === 'sft' ? ' (supervised fine-tuning, only responses labelled)' : ''}`);
  return lines;
}

function adapterLines(f: CardFacts): string[] {
  const a = f.adapter;
  if (!a) return [];
  const targets = Array.isArray(a.target_modules) ? a.target_modules.join(', ') : String(a.target_modules);
  const lines = [`- LoRA r=${String(a.r)}, alpha ${String(a.lora_alpha)}${a.use_rslora ? ' (rsLoRA)' : ''} on ${targets}`];
  const saved = Array.isArray(a.modules_to_save) ? a.modules_to_save : [];
  if (saved.length) lines.push(`- trained in full and saved whole (PEFT \`modules_to_save\`): ${saved.join(', ')}`);
  return lines;
}

function contextPhrase(f: CardFacts): string {
  const n = f.config ? Number(f.config.seqLen) : null;
  if (!n) return '';
  if (f.originalContext && n > f.originalContext) return ` extended from ${f.originalContext.toLocaleString('en-US')} to ${n.toLocaleString('en-US')} tokens`;
  return ` fine-tuned at ${n.toLocaleString('en-US')} tokens${f.originalContext ? ` (within the ${f.originalContext.toLocaleString('en-US')} the base covers)` : ''}`;
}

function pplSection(f: CardFacts): string[] {
  return f.ppl ? ['', '## Perplexity', '', '```', f.ppl, '```'] : [];
}

/** What a run folder holds, as plain lines (`longlora info RUN_DIR`): the card's facts without the markdown. */
export function adapterSummary(f: CardFacts): string[] {
  const kind = f.adapter?.modules_to_save && (f.adapter.modules_to_save as unknown[]).length ? 'LongLoRA' : 'LoRA';
  return [
    `a ${kind} adapter (PEFT) for ${f.base}${contextPhrase(f)}, with ${describeRope(f.rope)}`,
    ...[...adapterLines(f), ...trainingLines(f)].map((l) => `  ${l.replace(/^- /, '').replace(/`/g, '')}`),
    ...(f.ppl ? f.ppl.split('\n').map((l) => `  ${l}`) : []),
  ];
}

/** The card of an adapter (a training run's folder). */
export function adapterCard(f: CardFacts): string {
  const header = yamlHeader({
    base_model: f.baseOnHub ? f.base : undefined,
    library_name: 'peft',
    pipeline_tag: 'text-generation',
    tags: ['longlora', 'lora', 'long-context'],
  });
  const rope = f.rope ? `, rope_scaling=${py(f.rope)}` : '';
  return [
    header, CARD_MARK, '',
    `# ${f.self}`, '',
    `A LongLoRA adapter for ${f.base}${contextPhrase(f)}, with ${describeRope(f.rope)}.`,
    'LongLoRA (Chen et al., 2023, arXiv 2309.12307) fine-tunes LoRA adapters together with the embeddings and norms,',
    'with shifted sparse attention while training and ordinary dense attention at inference.',
    '', '## Training', '',
    ...adapterLines(f), ...trainingLines(f),
    ...pplSection(f),
    '', '## Use', '',
    f.rope
      ? `The adapter was trained with \`rope_scaling = ${JSON.stringify(f.rope)}\`. PEFT does not apply it: load the base model with it, or positions past the original context come out wrong.`
      : 'The adapter was trained with the base model\'s own positions.',
    '', '```python',
    'from transformers import AutoModelForCausalLM',
    'from peft import PeftModel', '',
    `model = AutoModelForCausalLM.from_pretrained(${JSON.stringify(f.base)}${rope}, torch_dtype="auto")`,
    `model = PeftModel.from_pretrained(model, ${JSON.stringify(f.self)})`,
    '```', '',
    'With longlora, which reads the scaling from `longlora.json` (an adapter on the Hub is fetched by its name):', '',
    '```sh',
    `longlora generate --model ${f.base} --adapter ${f.self} --prompt "..."`,
    `longlora merge --base ${f.base} --adapter ${f.self} --out merged   # a standalone checkpoint with rope_scaling in its config`,
    '```', '',
  ].join('\n');
}

/** The card of a merged model (the base with the adapter added; its config.json has the rope_scaling). */
export function mergedCard(f: CardFacts): string {
  const header = yamlHeader({
    base_model: f.baseOnHub ? f.base : undefined,
    pipeline_tag: 'text-generation',
    tags: ['longlora', 'long-context'],
  });
  return [
    header, CARD_MARK, '',
    `# ${f.self}`, '',
    `${f.base}${contextPhrase(f)} with LongLoRA (Chen et al., 2023, arXiv 2309.12307) and ${describeRope(f.rope)}:`,
    'the base model with the LongLoRA adapter merged into its weights (and its trained embeddings and norms in place).',
    '`config.json` carries the `rope_scaling` it was trained with, so it loads as it is.',
    '', '## Training', '',
    ...adapterLines(f), ...trainingLines(f),
    ...pplSection(f),
    '', '## Use', '',
    '```python',
    'from transformers import AutoModelForCausalLM', '',
    `model = AutoModelForCausalLM.from_pretrained(${JSON.stringify(f.self)}, torch_dtype="auto")`,
    '```', '',
  ].join('\n');
}

/** Whether `dir` has a README.md that is the user's own (not one this module wrote). */
export function hasOwnCard(dir: string): boolean {
  const file = path.join(dir, CARD_FILE);
  return fs.existsSync(file) && !fs.readFileSync(file, 'utf8').includes(CARD_MARK);
}

/** Writes a card into `dir` (atomically), unless the folder has a README.md of the user's own. */
export function writeCard(dir: string, text: string): boolean {
  if (hasOwnCard(dir)) return false;
  writeBytesAtomic(path.join(dir, CARD_FILE), text);
  return true;
}

/** What a GGUF file's header says, for its card. */
export interface GgufFacts {
  name: string;
  architecture: string;
  contextLength: number | null;
  /** "linear ×8", "yarn ×4", "frequency factors" or null. */
  ropeScaling: string | null;
  /** Tensor counts by ggml type, e.g. "226 F16, 65 F32". */
  types: string;
}

/** Reads a GGUF file's header (with Hugging Face's GGUF parser). */
export async function ggufFacts(file: string): Promise<GgufFacts> {
  const h = await readGgufHeader(file);
  const m = h.metadata;
  const arch = String(m['general.architecture'] ?? 'unknown');
  const counts = new Map<string, number>();
  for (const t of h.tensorInfos) counts.set(ggmlTypeName(t.dtype), (counts.get(ggmlTypeName(t.dtype)) ?? 0) + 1);
  const context = m[`${arch}.context_length`];
  return {
    name: String(m['general.name'] ?? path.basename(file, '.gguf')),
    architecture: arch,
    contextLength: typeof context === 'number' ? context : null,
    ropeScaling: ggufRopeScaling(h),
    types: [...counts].sort((x, y) => y[1] - x[1]).map(([n, c]) => `${c} ${n}`).join(', '),
  };
}

/**
 * The card of a GGUF file on the Hub: what the file is (from its header) and, when it sits
 * in a training run's folder, how that run trained it (`run`).
 */
export function ggufCard(g: GgufFacts, run: CardFacts, file: string, modelfile: string | null): string {
  const header = yamlHeader({
    base_model: run.baseOnHub ? run.base : undefined,
    pipeline_tag: 'text-generation',
    tags: ['gguf', 'longlora', 'long-context'],
  });
  const context = g.contextLength ? `a context of ${g.contextLength.toLocaleString('en-US')} tokens` : 'its own context';
  return [
    header, CARD_MARK, '',
    `# ${run.self}`, '',
    `\`${file}\`: ${g.name} (llama.cpp's \`${g.architecture}\` architecture) for llama.cpp and ollama, with ${context}` +
      `${g.ropeScaling ? ` and RoPE scaling ${g.ropeScaling}` : ''}; tensors ${g.types}.`,
    ...(run.adapter ? ['', `${run.base}${contextPhrase(run)} with LongLoRA (Chen et al., 2023, arXiv 2309.12307), merged and exported by longlora.`, '', '## Training', '', ...adapterLines(run), ...trainingLines(run)] : []),
    ...pplSection(run),
    '', '## Use', '',
    '```sh',
    `llama-cli -m ${file} -c 0 -p "..."   # llama.cpp; -c 0 takes the context from the file`,
    ...(modelfile ? [`ollama create ${path.basename(file, '.gguf')} -f ${modelfile}   # ollama; the Modelfile sets num_ctx, which ollama does not read from the file`] : []),
    '```', '',
  ].join('\n');
}
