// The model side of the GGUF example (gguf.js), in a module Web Worker so that the page
// stays responsive while the kernels run (and so that the Wasm backend's calling thread
// may block while its own workers run a kernel). The tokenizer stays on the page: its
// package comes through the page's import map, which does not reach workers. The two
// talk only through messages: the page sends a file or address and then prompts as token
// ids; this worker sends back the file's metadata and each new token id.
import * as ll from '../../dist/src/browser.js';

const post = (message) => self.postMessage(message);
let loaded = null;

/** WebGPU when the browser has a GPU adapter, else the Wasm SIMD kernels, else plain JavaScript. */
async function pickBackend(asked) {
  if (asked) return ll.setBackend(asked);
  const { backend } = await ll.autoBackend();
  return ll.setBackend(backend.name);
}

async function load({ id, source, backend: asked, dtype, quantize }) {
  loaded?.model.dispose();
  loaded = null;
  const backend = await pickBackend(asked);
  const name = source instanceof File ? source.name : String(source);
  post({ type: 'status', text: `reading ${name}…` });
  const m = await ll.llamaFromGguf(source, {
    dtype: dtype ?? (backend.name === 'cpu' ? 'f32' : 'f16'),
    quantize: quantize ?? 'none', // nf4: the linear layers in 4 bits
    onTensor: (done, total) => post({ type: 'status', text: `reading ${name}: weight ${done} of ${total}` }),
  });
  loaded = m;
  const c = m.config;
  post({
    type: 'loaded', id, backend: backend.name, metadata: m.metadata, source: m.source, quantized: m.model.quantization !== null,
    config: { modelType: c.modelType, numLayers: c.numLayers, hiddenSize: c.hiddenSize, vocabSize: c.vocabSize, context: c.maxPositionEmbeddings, eos: c.eosTokenId },
  });
}

let stopping = null; // the running generation's AbortController

async function generate({ prompt, greedy, maxNewTokens, stopIds }) {
  stopping = new AbortController();
  try {
    const r = await ll.generate(loaded.model, prompt, {
      ...(greedy ? ll.GREEDY : ll.OFFICIAL_SAMPLING),
      maxNewTokens,
      stopIds,
      onToken: (id) => post({ type: 'token', id }),
      signal: stopping.signal, // the generation lets messages in between tokens: Stop reaches it
    });
    post({ type: 'done', speed: ll.describeSpeed(r) + (r.stopReason === 'aborted' ? '; stopped' : '') });
  } finally {
    stopping = null;
  }
}

// One message at a time: a file picked while a prompt runs is loaded after it ends (loading
// at once would free the model the generation is still using), and of two files picked in
// quick succession the first is freed before the second is read.
let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  if (data.type === 'stop') { stopping?.abort(); return; } // at once, not after the generation it stops
  queue = queue.then(async () => {
    try {
      if (data.type === 'load') await load(data);
      else if (data.type === 'generate') await generate(data);
    } catch (e) {
      post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
    }
  });
};
