/**
 * What an importance matrix does to a quantised GGUF export, with a control: for each
 * dtype, the perplexity of the export without an importance matrix, with the model's own
 * (importanceMatrix over calibration tokens), with all-equal importances (what the fits'
 * weighting by √(σ² + x²) does alone), and with a few random ones (each column's
 * importance uniform in 0.5 … 1.5, seeded). A real effect is one the real matrix shows and
 * the random ones do not: on a small model, any change to the fits moves the perplexity by
 * chance too.
 *
 *   npm start && npm run build && node dist/bench/imatrix.js [--model runs/quickstart/merged]
 *     [--calib models/tiny-longlora/data/train.bin] [--data models/tiny-longlora/data/heldout.bin]
 *     [--dtypes q4_0,q3_k_l,q5_k_m,iq4_nl] [--controls 4] [--tokens 16384] [--calib-seq-len 512]
 *     [--seq-len 2048] [--max-windows 16]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setBackend } from '../src/backend/registry.js';
import { TokenFile } from '../src/data/tokens.js';
import { perplexity } from '../src/eval/perplexity.js';
import { exportGguf, GGUF_DTYPES, type GgufDType } from '../src/models/llama/gguf.js';
import { loadLlamaGguf } from '../src/models/llama/gguf-load.js';
import { importanceFromData } from '../src/models/llama/importance.js';
import { Rng } from '../src/tensor/random.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'runs/quickstart/merged' },
    calib: { type: 'string', default: 'models/tiny-longlora/data/train.bin' },
    data: { type: 'string', default: 'models/tiny-longlora/data/heldout.bin' },
    dtypes: { type: 'string', default: 'q4_0,q3_k_l,q5_k_m,iq4_nl' },
    controls: { type: 'string', default: '4' },
    tokens: { type: 'string', default: '16384' },
    'calib-seq-len': { type: 'string', default: '512' },
    'seq-len': { type: 'string', default: '2048' },
    'max-windows': { type: 'string', default: '16' },
  },
});
const dtypes = values.dtypes.split(',') as GgufDType[];
for (const d of dtypes) if (!GGUF_DTYPES.includes(d)) throw new Error(`--dtypes: unknown dtype ${d} (one of ${GGUF_DTYPES.join(', ')})`);
if (!fs.existsSync(path.join(values.model, 'config.json'))) throw new Error(`${values.model} is no model folder: run npm start first (it writes runs/quickstart/merged) or give --model`);
const controls = Number(values.controls);
const seqLen = Number(values['seq-len']);

await setBackend('wasm');
const quiet = { write: (): void => {} };
const t0 = performance.now();
const real = await importanceFromData(values.model, values.calib, { tokens: Number(values.tokens), seqLen: Number(values['calib-seq-len']), out: quiet });
console.log(`importance matrix of ${values.model}: ${real.weights.size} weights from ${real.tokens} tokens of ${values.calib} ` +
  `(${((performance.now() - t0) / 1000).toFixed(1)} s); perplexity at ${seqLen} tokens on ${values.data}, ${values['max-windows']} windows; Node ${process.version}`);

const rng = new Rng(1);
const variants: Array<{ name: string; importance?: Map<string, Float32Array> }> = [
  { name: 'without' },
  { name: 'real' },
  { name: 'all equal', importance: new Map([...real.weights].map(([k, w]) => [k, new Float32Array(w.length).fill(1)])) },
];
variants[1]!.importance = real.weights;
for (let i = 0; i < controls; i++) {
  variants.push({ name: `random ${i + 1}`, importance: new Map([...real.weights].map(([k, w]) => [k, Float32Array.from(w, () => 0.5 + rng.uniform())])) });
}

const vocabSize = (JSON.parse(fs.readFileSync(path.join(values.model, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
const data = TokenFile.open(values.data, 'auto', vocabSize);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imatrix-bench-'));
try {
  console.log(`\n| dtype | ${variants.map((v) => v.name).join(' | ')} |\n|---|${variants.map(() => '---:').join('|')}|`);
  for (const dtype of dtypes) {
    const row: string[] = [];
    for (const v of variants) {
      const file = path.join(tmp, `${dtype}.gguf`);
      exportGguf(values.model, file, { dtype, ...(v.importance ? { importance: v.importance } : {}) });
      const model = await loadLlamaGguf(file);
      try {
        const [r] = await perplexity(model, data, { seqLens: [seqLen], procedures: ['windowed'], maxWindows: Number(values['max-windows']), out: quiet });
        row.push(r!.ppl.toFixed(3));
      } finally {
        model.dispose();
      }
    }
    console.log(`| ${dtype} | ${row.join(' | ')} |`);
  }
} finally {
  data.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
