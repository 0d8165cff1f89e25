// The training of the browser example, in a module Web Worker so that the page stays
// responsive (and so that the Wasm backend's calling thread may block while its own
// workers run a kernel). It talks to the page (main.js) only through messages.
import * as ll from '../../dist/src/browser.js';

const post = (message, transfer = []) => self.postMessage(message, transfer);
const log = (text) => post({ type: 'log', text });
const status = (text) => post({ type: 'status', text });

/**
 * The automatic choice: WebGPU on a hardware adapter, else the Wasm SIMD kernels, else
 * plain JavaScript (a software WebGPU adapter, such as SwiftShader's, is far slower than
 * Wasm and is passed over; ?backend=webgpu takes it anyway).
 */
async function pickBackend(asked) {
  if (asked) return ll.setBackend(asked);
  const { backend, skipped } = await ll.autoBackend();
  for (const s of skipped) log(`${s.name}: ${s.error.replace("setBackend('webgpu')", '?backend=webgpu')}`);
  return ll.setBackend(backend.name);
}

/** A small corpus: 4 random 12-token phrases; each row repeats one of them over N tokens. */
function corpus(rng, vocab) {
  return Array.from({ length: 4 }, () => Array.from({ length: 12 }, () => 3 + rng.int(vocab - 3)));
}

function batch(rng, phrases, B, N) {
  const ids = new Int32Array(B * N);
  for (let b = 0; b < B; b++) {
    const phrase = phrases[rng.int(phrases.length)];
    for (let i = 0; i < N; i++) ids[b * N + i] = phrase[i % phrase.length];
  }
  return { ids, B, N };
}

async function train(options) {
  const steps = options.steps;
  status('starting the backend…');
  const backend = await pickBackend(options.backend);
  post({ type: 'backend', name: backend.name });
  log(`backend: ${backend.name}`);

  // A model in Hugging Face's config format. For a real checkpoint, fetch its files:
  //   const model = ll.llamaFromSafetensors(await (await fetch(`${url}/config.json`)).json(),
  //     [new Uint8Array(await (await fetch(`${url}/model.safetensors`)).arrayBuffer())]);
  const config = ll.parseLlamaConfig({
    model_type: 'llama', vocab_size: 128, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false,
  });
  const N = 128;
  // Position interpolation: the RoPE scaling that stretches 64 positions over 128 tokens.
  const rope = ll.extendRopeScaling(config, N);
  log(rope.explanation);
  const model = ll.randomLlama({ ...config, ropeScaling: rope.scaling }, { seed: 0 });

  // LongLoRA: LoRA on q, k, v, o, and the embeddings and norms trained too.
  const runtime = { training: true, rng: new ll.Rng(1) };
  ll.applyLora(model, ll.DEFAULT_TARGETS, { r: 8, alpha: 16, dropout: 0, rslora: false }, new ll.Rng(2), runtime);
  const report = ll.setTrainable(model, 'longlora', ['embed', 'norm']);
  log(`trainable: ${report.trainable.toLocaleString()} of ${report.total.toLocaleString()} values`);
  const optimizer = new ll.AdamW(model.namedParameters().filter(([, p]) => p.requiresGrad), { betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });

  // S²-Attn while training: groups of a quarter of the context, half the heads shifted.
  const mask = { kind: 's2', form: 'segmented', group: N / 4 };
  log(`training attention: ${ll.describeMask(mask)}`);
  const rng = new ll.Rng(3);
  const phrases = corpus(rng, config.vocabSize);
  // The first step also compiles the kernels (on WebGPU, its pipelines), so it takes longest.
  status(`training on ${backend.name}: step 1/${steps}…`);
  const t0 = performance.now();
  for (let k = 0; k < steps; k++) {
    const r = await ll.trainStep(model, optimizer, [batch(rng, phrases, 2, N)], 2e-2, { mask, maxGradNorm: 1, checkpointing: false });
    post({ type: 'loss', value: r.losses[0] });
    status(`step ${k + 1}/${steps}: loss ${r.losses[0].toFixed(4)}`);
    if (k === 0 || (k + 1) % 5 === 0 || k === steps - 1) log(`step ${k + 1}: loss ${r.losses[0].toFixed(4)}, gradient norm ${r.gradNorm.toFixed(3)}`);
  }
  log(`${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  runtime.training = false;

  // Inference uses dense attention (and the KV cache): prompt with a phrase and a half,
  // and see whether the model goes on with it.
  const phrase = phrases[0];
  const prompt = [...phrase, ...phrase.slice(0, 6)];
  const expected = [...phrase.slice(6), ...phrase.slice(0, 6)];
  const out = await ll.generate(model, prompt, { temperature: 0, maxNewTokens: expected.length });
  post({ type: 'generated', ids: out.ids });
  const right = out.ids.filter((id, i) => id === expected[i]).length;
  log(`greedy continuation of a training phrase: ${right} of ${expected.length} tokens as in the phrase (${ll.describeSpeed(out)})`);

  // The adapter as PEFT files: adapter_config.json, adapter_model.safetensors, ...
  const extras = report.names.filter((n) => !n.includes('.lora_'));
  const files = ll.encodeAdapter(await ll.collectAdapter(model, {
    baseModel: 'tiny-random-llama', extras,
    sidecar: { rope_scaling: ll.ropeScalingToHF(rope.scaling, config.maxPositionEmbeddings), seq_len: N, training_attention: ll.describeMask(mask) },
  }));
  post({ type: 'files', files: [...files] }, [...files.values()].map((b) => b.buffer));
  optimizer.dispose();
  model.dispose();
}

self.onmessage = (e) => {
  train(e.data).then(() => post({ type: 'done' }), (err) => post({ type: 'error', message: err.message }));
};
