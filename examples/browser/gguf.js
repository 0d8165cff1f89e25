// A GGUF model in a page with longlora's browser entries: plain ES modules, no bundler.
// Serve the repository (`npm run example:browser`) and open /examples/browser/gguf.html.
// The model runs in a Web Worker (gguf-worker.js), so the page stays responsive; the
// tokenizer runs here, from the file's own metadata.
import { StreamDecoder, tokenizerOfGguf } from '../../dist/src/browser-text.js';

const params = new URLSearchParams(location.search);
const $ = (s) => document.querySelector(s);
const status = (s) => { $('#status').textContent = s; };
// The page's state, for anyone watching (the browser tests read it).
const state = (globalThis.longlora = { loaded: false, done: false, backend: '', ids: [], text: '' });
const worker = new Worker(new URL('./gguf-worker.js', import.meta.url), { type: 'module' });
let reading = null; // the file being loaded: { name, t0 }
let loaded = null; // the model the worker holds: { name, tokenizer, config }
let stream = null;
let beyond = ''; // the note on a generation that reaches past the model's context

function fail(message) {
  state.error = message;
  state.done = true;
  status(`failed: ${message}`);
  $('#run').disabled = !loaded;
  $('#stop').disabled = true;
}

function load(source) {
  $('#run').disabled = true;
  loaded = null; // the worker frees the old model first
  state.loaded = false;
  const name = source instanceof File ? source.name : String(source);
  status(`reading ${name}…`);
  reading = { name, t0: performance.now(), id: (reading?.id ?? 0) + 1 };
  worker.postMessage({
    type: 'load', id: reading.id, source, backend: params.get('backend') ?? undefined, dtype: params.get('dtype') ?? undefined,
    quantize: params.get('quantize') ?? undefined,
  });
}

function onLoaded(m) {
  if (m.id !== reading.id) return; // a file picked meanwhile replaces this one
  const tokenizer = tokenizerOfGguf(m.metadata, m.source);
  if (!tokenizer) { fail(`${m.source} carries no tokenizer`); return; }
  loaded = { name: reading.name, tokenizer, config: m.config };
  const c = m.config;
  status(`${loaded.name}: ${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocabulary ${c.vocabSize}, context ` +
    `${c.context}${m.quantized ? '; linear layers in NF4' : ''}; on ${m.backend}, read in ${((performance.now() - reading.t0) / 1000).toFixed(1)} s`);
  Object.assign(state, { backend: m.backend, quantized: m.quantized, loaded: true });
  $('#run').disabled = false;
}

function run() {
  const { tokenizer, config } = loaded;
  const maxNewTokens = Number(params.get('tokens') ?? 64);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) { fail(`?tokens=${params.get('tokens')} is not a whole number of at least 1; try ?tokens=64`); return; }
  $('#run').disabled = true;
  $('#stop').disabled = false;
  $('#out').textContent = '';
  Object.assign(state, { done: false, ids: [], text: '' });
  delete state.error;
  stream = new StreamDecoder(tokenizer);
  const prompt = tokenizer.encode($('#prompt').value);
  // As the command line's note: past the positions the model was trained on, it extrapolates.
  beyond = prompt.length + maxNewTokens > config.context
    ? `; note: the prompt's ${prompt.length} tokens and up to ${maxNewTokens} new ones exceed the ${config.context} positions the model covers`
    : '';
  status(`generating${beyond}`);
  worker.postMessage({
    type: 'generate', prompt, greedy: Boolean(params.get('greedy')),
    maxNewTokens, stopIds: tokenizer.stopIds([config.eos].flat()),
  });
}

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case 'status': status(data.text); break;
    case 'loaded': onLoaded(data); break;
    case 'token':
      state.ids.push(data.id);
      $('#out').textContent += stream.push(data.id);
      break;
    case 'done':
      $('#out').textContent += stream.flush();
      state.text = $('#out').textContent;
      if (loaded) status(data.speed + beyond); // else a file picked meanwhile is being read: its status stays
      state.done = true;
      $('#run').disabled = !loaded;
      $('#stop').disabled = true;
      break;
    case 'error': fail(data.message); break;
  }
};
worker.onerror = (e) => fail(e.message ?? 'the model worker failed');

$('#file').addEventListener('change', () => { if ($('#file').files[0]) load($('#file').files[0]); });
$('#load').addEventListener('click', () => { if ($('#url').value) load($('#url').value); });
$('#run').addEventListener('click', run);
$('#stop').addEventListener('click', () => worker.postMessage({ type: 'stop' }));
if (params.get('url')) { $('#url').value = params.get('url'); load(params.get('url')); }
