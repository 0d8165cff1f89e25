/** `longlora info <path>`: what a model folder, a safetensors file or a GGUF file holds. */
import fs from 'node:fs';
import path from 'node:path';
import { ggmlTypeName } from '../../io/gguf-parse.js';
import { ggufFileTypeName, readGgufHeader } from '../../io/gguf-read.js';
import { LongLoraError } from '../../errors.js';
import { openCheckpoint, readJsonFile } from '../../io/checkpoint.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { parseLlamaConfig } from '../../models/llama/config.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, readAdapterConfig } from '../../io/peft.js';
import { adapterSummary, cardFacts } from '../../io/model-card.js';
import { listCheckpoints } from '../../train/state.js';
import { HF_TOKENIZER_KEY } from '../../models/llama/gguf-layout.js';
import { describeGgufRopeScaling } from '../../models/llama/gguf-load.js';
import { parse } from '../args.js';
import { describeRopeScaling } from '../../nn/rope-scaling.js';

const OPTIONS = {
  tensors: { type: 'boolean', default: false, help: 'list every tensor' },
} as const;

function listTensors(rows: Array<{ name: string; dtype: string; shape: number[] }>): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) console.log(`  ${r.name.padEnd(w)}  ${r.dtype.padEnd(4)}  [${r.shape.join(', ')}]`);
}

/** A GGUF file's header, read with Hugging Face's GGUF parser: architecture, shape, context, RoPE, tokenizer, tensors. */
async function describeGguf(file: string, tensors: boolean): Promise<void> {
  const parsed = await readGgufHeader(file);
  const m = parsed.metadata;
  const arch = String(m['general.architecture'] ?? '?');
  const list = (): void => {
    if (tensors) listTensors(parsed.tensorInfos.map((t) => ({ name: t.name, dtype: ggmlTypeName(t.dtype), shape: t.shape.map(Number).reverse() })));
  };
  if (m['general.type'] === 'adapter') {
    const a = parsed.tensorInfos.find((t) => t.name.endsWith('.lora_a'));
    console.log(`${file}: GGUF v${parsed.metadata.version}, a ${String(m['adapter.type'] ?? '?')} adapter for ${arch} "${String(m['general.name'] ?? '')}", ` +
      `${parsed.tensorInfos.length / 2} adapted weights, rank ${a ? Number(a.shape[1]) : '?'}, alpha ${String(m['adapter.lora.alpha'] ?? '?')}`);
    list();
    return;
  }
  const k = (key: string): unknown => m[`${arch}.${key}`];
  const tokens = m['tokenizer.ggml.tokens'];
  const scaling = await describeGgufRopeScaling(file, parsed);
  console.log(`${file}: GGUF v${parsed.metadata.version}, ${arch} "${String(m['general.name'] ?? '')}", ${String(k('block_count'))} layers, hidden ${String(k('embedding_length'))}, ` +
    `intermediate ${String(k('feed_forward_length'))}, heads ${String(k('attention.head_count'))} (kv ${String(k('attention.head_count_kv'))})`);
  console.log(`  context ${String(k('context_length'))}, RoPE base ${String(k('rope.freq_base'))}, scaling ${scaling}`);
  console.log(`  tokenizer ${String(m['tokenizer.ggml.model'] ?? 'none')}${m['tokenizer.ggml.pre'] ? ` (${String(m['tokenizer.ggml.pre'])})` : ''}, ` +
    `${Array.isArray(tokens) ? tokens.length : 0} tokens${m['tokenizer.chat_template'] ? ', chat template' : ''}${typeof m[HF_TOKENIZER_KEY] === 'string' ? ', and the Hugging Face tokenizer' : ''}`);
  const counts = new Map<string, number>();
  let params = 0;
  for (const t of parsed.tensorInfos) {
    const name = ggmlTypeName(t.dtype);
    counts.set(name, (counts.get(name) ?? 0) + 1);
    params += t.shape.reduce((a, s) => a * Number(s), 1);
  }
  const bits = ((fs.statSync(file).size - Number(parsed.tensorDataOffset)) * 8) / params;
  const ftype = ggufFileTypeName(m['general.file_type']);
  console.log(`  ${parsed.tensorInfos.length} tensors (${[...counts].map(([n, c]) => `${c} ${n}`).join(', ')}), ${params.toLocaleString('en-US')} parameters, ` +
    `${bits.toFixed(2)} bits per weight${ftype ? ` (${ftype})` : ''}`);
  list();
}

/** A training run's folder (an adapter): what it was trained from and how, and what else it holds. */
function describeRun(dir: string, tensors: boolean): void {
  readAdapterConfig(dir); // checks it
  const [first, ...rest] = adapterSummary(cardFacts(dir));
  console.log(`${dir}: ${first}`);
  for (const l of rest) console.log(l);
  const checkpoints = listCheckpoints(dir);
  const extras = [
    checkpoints.length ? `${checkpoints.length} checkpoint${checkpoints.length > 1 ? 's' : ''} (latest ${path.basename(checkpoints.at(-1)!)})` : '',
    fs.existsSync(path.join(dir, 'merged', 'config.json')) ? 'the merged model in merged/' : '',
    fs.existsSync(path.join(dir, 'model.gguf')) ? 'model.gguf' : '',
  ].filter(Boolean);
  if (extras.length) console.log(`  also: ${extras.join(', ')}`);
  if (tensors) {
    const f = SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS));
    listTensors(f.names().map((name) => ({ name, ...f.info(name) })));
    f.close();
  }
}

export async function info(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora info <model folder | run folder | file.safetensors | file.gguf> [--tensors]', OPTIONS, true);
  if (!args) return;
  const target = args.positionals[0];
  if (!target) throw new LongLoraError('info: give a model folder, a .safetensors file or a .gguf file');
  if (target.endsWith('.gguf') && !fs.existsSync(target)) throw new LongLoraError(`${target} does not exist; check the path`);
  if (target.endsWith('.gguf') && fs.statSync(target).isFile()) {
    await describeGguf(target, args.values.tensors === true);
    return;
  }
  if (fs.existsSync(target) && fs.statSync(target).isFile()) {
    const f = SafetensorsFile.open(target);
    const rows = f.names().map((name) => ({ name, ...f.info(name) }));
    console.log(`${target}: ${rows.length} tensors, ${rows.reduce((a, r) => a + r.byteLength, 0).toLocaleString('en-US')} bytes`);
    if (Object.keys(f.metadata).length) console.log(`metadata: ${JSON.stringify(f.metadata)}`);
    listTensors(rows);
    f.close();
    return;
  }
  if (fs.existsSync(path.join(target, ADAPTER_CONFIG)) && !fs.existsSync(path.join(target, 'config.json'))) {
    describeRun(target, args.values.tensors === true);
    return;
  }
  const configPath = path.join(target, 'config.json');
  const c = parseLlamaConfig(readJsonFile(configPath), configPath);
  const ck = openCheckpoint(target);
  const rows = ck.names().map((name) => ({ name, ...ck.info(name) }));
  const params = rows.reduce((a, r) => a + r.shape.reduce((p, s) => p * s, 1), 0);
  console.log(`${target}: ${{ llama: 'Llama', mistral: 'Mistral', qwen2: 'Qwen 2', qwen3: 'Qwen 3' }[c.modelType]}, ${c.numLayers} layers, hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}, ` +
    `heads ${c.numHeads} (kv ${c.numKvHeads}, head dim ${c.headDim}), vocab ${c.vocabSize}`);
  console.log(`  context ${c.maxPositionEmbeddings}, RoPE theta ${c.ropeTheta}, scaling ${describeRopeScaling(c.ropeScaling)}, ` +
    `tied embeddings ${c.tieWordEmbeddings ? 'yes' : 'no'}${c.slidingWindow !== null ? `, sliding window ${c.slidingWindow}` : ''}` +
    `${c.qkvBias ? `, biases on q, k, v${c.oBias ? ', o' : ''}` : ''}${c.qkNorm ? ', q/k head norms' : ''}`);
  console.log(`  ${params.toLocaleString('en-US')} parameters in ${ck.files.length} file(s)`);
  if (args.values.tensors) listTensors(rows);
  ck.close();
}
