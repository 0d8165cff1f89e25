/** `longlora merge`: base model + adapter → a standalone Hugging Face checkpoint. */
import { LongLoraError } from '../../errors.js';
import { resolveAdapter, resolveModel } from '../../io/hub.js';
import { mergeAdapter } from '../../lora/adapted.js';
import { GGUF_DTYPES } from '../../models/llama/gguf.js';
import { parse } from '../args.js';
import { exportWithProgress, ggufDType } from './export.js';

const OPTIONS = {
  base: { type: 'string', help: 'base model folder, or a Hub repository as org/name' },
  adapter: { type: 'string', help: 'adapter folder (a training run\'s output), or a Hub repository as org/name' },
  out: { type: 'string', help: 'folder to write the merged model to' },
  dtype: { type: 'string', help: 'f32, bf16 or f16 (default: the base model\'s dtype)' },
  gguf: { type: 'string', help: 'also write the merged model as this .gguf file (llama.cpp, ollama)' },
  'gguf-dtype': { type: 'string', help: `${GGUF_DTYPES.join(', ')} for the .gguf weights (default: the merged model's dtype)` },
} as const;

export async function merge(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora merge --base DIR --adapter DIR --out DIR [--dtype bf16] [--gguf FILE.gguf [--gguf-dtype q8_0]]', OPTIONS);
  if (!args) return;
  const { base, adapter, out, dtype, gguf } = args.values;
  for (const [k, v] of Object.entries({ base, adapter, out })) if (typeof v !== 'string') throw new LongLoraError(`merge: --${k} is required`);
  if (dtype !== undefined && !['f32', 'bf16', 'f16'].includes(String(dtype))) throw new LongLoraError(`merge: --dtype must be f32, bf16 or f16, got ${String(dtype)}`);
  if (typeof gguf === 'string' && !gguf.endsWith('.gguf')) throw new LongLoraError(`merge: --gguf must name a .gguf file, got ${gguf}`);
  const ggufDtype = ggufDType(args.values['gguf-dtype'], 'merge', '--gguf-dtype');
  if (ggufDtype && typeof gguf !== 'string') throw new LongLoraError('merge: --gguf-dtype needs --gguf FILE.gguf');
  const r = await mergeAdapter(await resolveModel(String(base)), await resolveAdapter(String(adapter)), String(out), dtype ? { dtype: dtype as 'f32' | 'bf16' | 'f16' } : {});
  console.log(`merged ${r.merged} LoRA layers into ${String(out)} (${r.dtype}); config.json carries the adapter's rope_scaling`);
  if (typeof gguf === 'string') exportWithProgress(String(out), gguf, { ...(ggufDtype ? { dtype: ggufDtype } : {}) });
}
