/** `longlora info <path>`: what a model folder or safetensors file holds. */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../../errors.js';
import { openCheckpoint, readJsonFile } from '../../io/checkpoint.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { parseLlamaConfig } from '../../models/llama/config.js';
import { parse } from '../args.js';
import { describeRopeScaling } from '../../nn/rope-scaling.js';

const OPTIONS = {
  tensors: { type: 'boolean', default: false, help: 'list every tensor' },
} as const;

function listTensors(rows: Array<{ name: string; dtype: string; shape: number[] }>): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) console.log(`  ${r.name.padEnd(w)}  ${r.dtype.padEnd(4)}  [${r.shape.join(', ')}]`);
}

export async function info(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora info <model folder | file.safetensors> [--tensors]', OPTIONS, true);
  if (!args) return;
  const target = args.positionals[0];
  if (!target) throw new LongLoraError('info: give a model folder or a .safetensors file');
  if (fs.existsSync(target) && fs.statSync(target).isFile()) {
    const f = SafetensorsFile.open(target);
    const rows = f.names().map((name) => ({ name, ...f.info(name) }));
    console.log(`${target}: ${rows.length} tensors, ${rows.reduce((a, r) => a + r.byteLength, 0).toLocaleString('en-US')} bytes`);
    if (Object.keys(f.metadata).length) console.log(`metadata: ${JSON.stringify(f.metadata)}`);
    listTensors(rows);
    f.close();
    return;
  }
  const configPath = path.join(target, 'config.json');
  const c = parseLlamaConfig(readJsonFile(configPath), configPath);
  const ck = openCheckpoint(target);
  const rows = ck.names().map((name) => ({ name, ...ck.info(name) }));
  const params = rows.reduce((a, r) => a + r.shape.reduce((p, s) => p * s, 1), 0);
  console.log(`${target}: ${{ llama: 'Llama', mistral: 'Mistral', qwen2: 'Qwen 2' }[c.modelType]}, ${c.numLayers} layers, hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}, ` +
    `heads ${c.numHeads} (kv ${c.numKvHeads}, head dim ${c.headDim}), vocab ${c.vocabSize}`);
  console.log(`  context ${c.maxPositionEmbeddings}, RoPE theta ${c.ropeTheta}, scaling ${describeRopeScaling(c.ropeScaling)}, ` +
    `tied embeddings ${c.tieWordEmbeddings ? 'yes' : 'no'}${c.slidingWindow !== null ? `, sliding window ${c.slidingWindow}` : ''}`);
  console.log(`  ${params.toLocaleString('en-US')} parameters in ${ck.files.length} file(s)`);
  if (args.values.tensors) listTensors(rows);
  ck.close();
}
