// A GGUF model in a page with longlora's browser entries: plain ES modules, no bundler.
// Serve the repository (`npm run example:browser`) and open /examples/browser/gguf.html.
// It runs on the page's thread (WebGPU keeps it responsive; the Wasm kernels make the page
// wait while they run: the training example shows the Web Worker way).
import * as ll from '../../dist/src/browser.js';
import { StreamDecoder, tokenizerOfGguf } from '../../dist/src/browser-text.js';

const params = new URLSearchParams(location.search);
const $ = (s) => document.querySelector(s);
const status = (s) => { $('#status').textContent = s; };
// The page's state, for anyone watching (the browser tests read it).
const state = (globalThis.longlora = { loaded: false, done: false, backend: '', ids: [], text: '' });
let loaded = null;

/** WebGPU when the browser has a GPU adapter, else the Wasm SIMD kernels, else plain JavaScript. */
async function pickBackend(asked) {
  if (asked) return ll.setBackend(asked);
  const { backend } = await ll.autoBackend();
  return ll.setBackend(backend.name);
}

async function load(source) {
  $('#run').disabled = true;
  loaded?.model.dispose();
  loaded = null;
  try {
    const backend = await pickBackend(params.get('backend'));
    state.backend = backend.name;
    const t0 = performance.now();
    const name = source instanceof File ? source.name : String(source);
    status(`reading ${name}…`);
    const m = await ll.llamaFromGguf(source, {
      dtype: params.get('dtype') ?? (backend.name === 'cpu' ? 'f32' : 'f16'),
      quantize: params.get('quantize') ?? 'none', // nf4: the linear layers in 4 bits
      onTensor: (done, total) => status(`reading ${name}: weight ${done} of ${total}`),
    });
    const tokenizer = tokenizerOfGguf(m.metadata, m.source);
    if (!tokenizer) throw new Error(`${name} carries no tokenizer`);
    loaded = { ...m, tokenizer };
    const c = m.config;
    status(`${name}: ${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocabulary ${c.vocabSize}, context ` +
      `${c.maxPositionEmbeddings}${m.model.quantization ? '; linear layers in NF4' : ''}; on ${backend.name}, read in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    state.quantized = m.model.quantization !== null;
    state.loaded = true;
    $('#run').disabled = false;
  } catch (e) {
    state.error = e.message;
    state.done = true;
    status(`failed: ${e.message}`);
  }
}

async function run() {
  const { model, tokenizer } = loaded;
  $('#run').disabled = true;
  $('#out').textContent = '';
  state.done = false;
  state.ids = [];
  try {
    const prompt = tokenizer.encode($('#prompt').value);
    const stream = new StreamDecoder(tokenizer);
    const r = await ll.generate(model, prompt, {
      ...(params.get('greedy') ? ll.GREEDY : ll.OFFICIAL_SAMPLING),
      maxNewTokens: Number(params.get('tokens') ?? 64),
      stopIds: tokenizer.stopIds([model.config.eosTokenId].flat()),
      onToken: (id) => { state.ids.push(id); $('#out').textContent += stream.push(id); },
    });
    $('#out').textContent += stream.flush();
    state.text = $('#out').textContent;
    status(ll.describeSpeed(r));
  } catch (e) {
    state.error = e.message;
    status(`failed: ${e.message}`);
  }
  state.done = true;
  $('#run').disabled = false;
}

$('#file').addEventListener('change', () => { if ($('#file').files[0]) load($('#file').files[0]); });
$('#load').addEventListener('click', () => { if ($('#url').value) load($('#url').value); });
$('#run').addEventListener('click', run);
if (params.get('url')) { $('#url').value = params.get('url'); load(params.get('url')); }
