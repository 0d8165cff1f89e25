// LongLoRA in a browser with longlora's browser entry: plain ES modules, no bundler.
// Serve the repository (`npm run example:browser`) and open the address it prints. The
// training runs in a Web Worker (train.js); this page shows its progress and the adapter.
const params = new URLSearchParams(location.search);
// The page's state, for anyone watching (the browser tests read it).
const state = (globalThis.longlora = { done: false, backend: '', losses: [] });
const status = (s) => { document.querySelector('#status').textContent = s; };
const log = (s) => { document.querySelector('#log').textContent += `${s}\n`; };

const worker = new Worker(new URL('./train.js', import.meta.url), { type: 'module' });
worker.onmessage = ({ data: m }) => {
  if (m.type === 'log') log(m.text);
  else if (m.type === 'status') status(m.text);
  else if (m.type === 'backend') state.backend = m.name;
  else if (m.type === 'loss') state.losses.push(m.value);
  else if (m.type === 'generated') state.generated = m.ids;
  else if (m.type === 'files') {
    const links = document.querySelector('#downloads');
    for (const [name, bytes] of m.files) {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([bytes]));
      a.download = name;
      a.textContent = `${name} (${bytes.length.toLocaleString()} bytes)`;
      links.append(a);
    }
  } else if (m.type === 'done' || m.type === 'error') {
    if (m.type === 'error') {
      state.error = m.message;
      status(`failed: ${m.message}`);
    } else {
      status(`done: loss ${state.losses[0].toFixed(3)} → ${state.losses.at(-1).toFixed(3)}; the adapter is below`);
    }
    state.done = true;
    worker.terminate();
  }
};
worker.onerror = (e) => {
  state.error = e.message;
  status(`failed: ${e.message}`);
  state.done = true;
};
const steps = Number(params.get('steps') ?? 40);
if (Number.isInteger(steps) && steps >= 1) worker.postMessage({ steps, backend: params.get('backend') });
else {
  state.error = `?steps=${params.get('steps')} is not a whole number of at least 1; try ?steps=40`;
  status(`failed: ${state.error}`);
  state.done = true;
  worker.terminate();
}
