/**
 * `longlora flops`: forward FLOPs per component and the attention share, dense and with
 * S²-Attn, for a preset, any config.json or a GGUF file, at a list of context lengths (the
 * convention of the LongLoRA paper's table); `--memory` adds the activation-memory estimate
 * per step.
 */
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { flopsTable, formatFlopsTable } from '../../analysis/flops.js';
import { formatMemoryTable } from '../../analysis/memory.js';
import { parseLength, PRESETS, resolveShape, shapeOf } from '../../analysis/presets.js';
import { readGgufModel } from '../../models/llama/gguf-load.js';
import { writeReport } from '../../eval/report.js';
import { parse, type OptionSpec } from '../args.js';
import { numFlag } from './load-model.js';

const OPTIONS: Record<string, OptionSpec> = {
  model: { type: 'string', default: 'llama-2-7b', help: `a preset (${Object.keys(PRESETS).join(', ')}), a config.json, a model folder or a .gguf file` },
  'seq-lens': { type: 'string', default: '2k,4k,8k,16k,32k,64k,100000', help: 'context lengths, comma-separated (Nk = N × 1024)' },
  'group-ratio': { type: 'string', default: '0.25', help: 'S²-Attn group size as a fraction of the length' },
  memory: { type: 'boolean', help: 'also estimate the activation memory of one training sequence' },
  bytes: { type: 'string', default: '2', help: 'bytes per activation for --memory (2: bf16, 4: f32)' },
  json: { type: 'string', help: 'also write the numbers as JSON to this file' },
};

/** `longlora flops`. */
export async function flopsCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora flops [--model llama-2-7b|CONFIG|FILE.gguf] [--seq-lens 8k,64k] [--memory]', OPTIONS);
  if (!args) return;
  const v = args.values;
  const spec = String(v.model);
  const shape = spec.endsWith('.gguf') ? shapeOf((await readGgufModel(spec)).config, path.basename(spec, '.gguf')) : resolveShape(spec);
  const lengths = String(v['seq-lens']).split(',').map(parseLength);
  const ratio = numFlag(v, 'group-ratio', 0.25);
  if (!(ratio > 0 && ratio <= 1)) throw new LongLoraError(`--group-ratio must be in (0, 1], got ${ratio}`);
  const bytes = numFlag(v, 'bytes', 2);
  const rows = flopsTable(shape, lengths, ratio);
  console.log(formatFlopsTable(shape, rows, ratio));
  if (v.memory) console.log(`\n${formatMemoryTable(shape, lengths, ratio, bytes)}`);
  if (typeof v.json === 'string') writeReport(v.json, 'flops', { model: shape, groupRatio: ratio }, rows);
}
