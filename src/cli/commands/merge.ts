/** `longlora merge`: base model + adapter → a standalone Hugging Face checkpoint. */
import { LongLoraError } from '../../errors.js';
import { resolveAdapter, resolveModel } from '../../io/hub.js';
import { adapterRopeScaling, mergeAdapter } from '../../lora/adapted.js';
import { checkOutputFolder } from '../../io/atomic.js';
import { describeRopeScaling } from '../../nn/rope-scaling.js';
import path from 'node:path';
import { GGUF_DTYPES } from '../../models/llama/gguf.js';
import { parse } from '../args.js';
import { checkImatrixDType, exportWithProgress, ggufDType, IMATRIX_OPTIONS, importanceFlags } from './export.js';

const OPTIONS = {
  base: { type: 'string', help: 'base model folder, or a Hub repository as org/name' },
  adapter: { type: 'string', help: 'adapter folder (a training run\'s output), or a Hub repository as org/name' },
  out: { type: 'string', help: 'folder to write the merged model to' },
  dtype: { type: 'string', help: 'f32, bf16 or f16 (default: the base model\'s dtype)' },
  gguf: { type: 'string', help: 'also write the merged model as this .gguf file (llama.cpp, ollama)' },
  'gguf-dtype': { type: 'string', help: `${GGUF_DTYPES.join(', ')} for the .gguf weights (default: the merged model's dtype)` },
  ...IMATRIX_OPTIONS,
} as const;

export async function merge(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora merge --base DIR --adapter DIR --out DIR [--dtype bf16] [--gguf FILE.gguf [--gguf-dtype q4_k_m [--imatrix-data calib.txt]]]', OPTIONS);
  if (!args) return;
  const { base, adapter, out, dtype, gguf } = args.values;
  for (const [k, v] of Object.entries({ base, adapter, out })) if (typeof v !== 'string') throw new LongLoraError(`merge: --${k} is required`);
  if (dtype !== undefined && !['f32', 'bf16', 'f16'].includes(String(dtype))) throw new LongLoraError(`merge: --dtype must be f32, bf16 or f16, got ${String(dtype)}`);
  if (typeof gguf === 'string' && !gguf.endsWith('.gguf')) throw new LongLoraError(`merge: --gguf must name a .gguf file, got ${gguf}`);
  const ggufDtype = ggufDType(args.values['gguf-dtype'], 'merge', '--gguf-dtype');
  if ((ggufDtype || args.values['imatrix-data'] !== undefined) && typeof gguf !== 'string') throw new LongLoraError(`merge: --${ggufDtype ? 'gguf-dtype' : 'imatrix-data'} needs --gguf FILE.gguf`);
  if (args.values['imatrix-data'] !== undefined) checkImatrixDType(ggufDtype, 'merge'); // before the merge writes anything
  checkOutputFolder(String(out), '--out');
  const [baseDir, adapterDir] = [await resolveModel(String(base)), await resolveAdapter(String(adapter))];
  const r = await mergeAdapter(baseDir, adapterDir, String(out), dtype ? { dtype: dtype as 'f32' | 'bf16' | 'f16' } : {});
  const rope = adapterRopeScaling(adapterDir, baseDir);
  console.log(`merged ${r.merged} LoRA layers into ${String(out)} (${r.dtype}); ` +
    (rope ? `config.json carries the adapter's RoPE scaling (${describeRopeScaling(rope)})` : 'config.json keeps the base\'s RoPE'));
  if (!rope) {
    process.stderr.write(`note: ${String(adapter)} has no longlora.json, so no RoPE scaling came with it. If it was trained for a longer context ` +
      `with position interpolation, add that scaling to ${path.join(String(out), 'config.json')} (e.g. "rope_scaling": {"type": "linear", "factor": 8}), ` +
      'or its perplexity at long contexts will be far worse\n');
  }
  if (typeof gguf !== 'string') return;
  const importance = await importanceFlags(args.values, String(out), ggufDtype, 'merge'); // of the merged model
  exportWithProgress(String(out), gguf, { ...(ggufDtype ? { dtype: ggufDtype } : {}), ...(importance ? { importance } : {}) });
}
