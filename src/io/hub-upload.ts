/**
 * Publishing to the Hugging Face Hub: `longlora push DIR --repo org/name` uploads an
 * adapter (a training run's folder) or a model folder (a merged model) as one commit with
 * @huggingface/hub, creating the repository when it does not exist. An adapter goes as
 * PEFT loads it — adapter_config.json, adapter_model.safetensors, longlora.json (the RoPE
 * scaling), ppl.json and the model card — without checkpoints, merged models or GGUF
 * files; a model folder goes whole (its visible files); a .gguf file goes with the ollama
 * Modelfile beside it and a card written from its header. A model card this project wrote
 * is uploaded with the repository's name in its loading snippets (the local file is left
 * as it is); a README.md of the user's own is uploaded unchanged. The token is HF_TOKEN,
 * else the one `huggingface-cli login` saved; HF_ENDPOINT points at another Hub.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRepo, HUB_URL, uploadFilesWithProgress } from '@huggingface/hub';
import { LongLoraError } from '../errors.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';
import { hubEndpoint, hubToken } from './hub.js';
import { cardFacts, CARD_FILE, CARD_MARK, ggufCard, ggufFacts } from './model-card.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, LONGLORA_JSON } from './peft-format.js';

/** Options of `pushToHub`. */
export interface PushOptions {
  /** The repository, "org/name" or "user/name". */
  repo: string;
  /** Create the repository private (an existing one keeps its visibility). */
  private?: boolean;
  /** Branch to commit to (default main). */
  revision?: string;
  /** Commit title. */
  message?: string;
  /** Access token with write access (default: see hubToken). */
  token?: string;
  /** The Hub's address (default HF_ENDPOINT, else the public Hub). */
  hubUrl?: string;
  env?: NodeJS.ProcessEnv;
  out?: ProgressStream;
}

/** What was pushed. */
export interface PushResult {
  /** The repository's page. */
  url: string;
  commit: string | null;
  files: string[];
  bytes: number;
  kind: PushKind;
}

/** What is pushed: an adapter (a run's folder), a model folder, or one GGUF file. */
export type PushKind = 'adapter' | 'model' | 'gguf';

const KIND_NAMES: Record<PushKind, string> = { adapter: 'LongLoRA adapter', model: 'model', gguf: 'GGUF file' };

/** The files of an adapter that go to the Hub (when present). */
const ADAPTER_FILES = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, LONGLORA_JSON, 'ppl.json', CARD_FILE];

/** What a folder (or .gguf file) holds and which files to upload from which folder. */
export function pushPlan(target: string): { kind: PushKind; dir: string; files: string[] } {
  if (target.endsWith('.gguf') && fs.existsSync(target) && fs.statSync(target).isFile()) {
    const dir = path.dirname(target);
    const modelfile = path.basename(target).replace(/\.gguf$/, '.Modelfile');
    return { kind: 'gguf', dir, files: [path.basename(target), ...(fs.existsSync(path.join(dir, modelfile)) ? [modelfile] : [])] };
  }
  const dir = target;
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new LongLoraError(`push: ${dir} is not a folder or a .gguf file; push a training run's folder (the adapter), a model folder or a GGUF file`);
  if (fs.existsSync(path.join(dir, ADAPTER_CONFIG))) {
    if (!fs.existsSync(path.join(dir, ADAPTER_WEIGHTS))) throw new LongLoraError(`push: ${dir} has ${ADAPTER_CONFIG} but no ${ADAPTER_WEIGHTS}; has the run finished?`);
    return { kind: 'adapter', dir, files: ADAPTER_FILES.filter((f) => fs.existsSync(path.join(dir, f))) };
  }
  if (fs.existsSync(path.join(dir, 'config.json'))) {
    const files = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name).sort();
    if (!files.some((f) => f.endsWith('.safetensors'))) throw new LongLoraError(`push: ${dir} has config.json but no safetensors weights`);
    return { kind: 'model', dir, files };
  }
  throw new LongLoraError(`push: ${dir} is neither an adapter (${ADAPTER_CONFIG}) nor a model folder (config.json); push a training run's folder or a merged model`);
}

/** A card this project wrote, with the folder's name in its title and snippets replaced by the repository's. */
export function retargetCard(text: string, folderName: string, repo: string): string {
  if (!text.includes(CARD_MARK)) return text;
  const swap = (t: string, a: string, b: string): string => t.split(a).join(b);
  return swap(swap(swap(text, `# ${folderName}\n`, `# ${repo}\n`), JSON.stringify(folderName), JSON.stringify(repo)), ` --adapter ${folderName} `, ` --adapter ${repo} `);
}

function isRepoName(repo: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) && !repo.includes('..') && !repo.endsWith('.git');
}

/** Uploads an adapter or model folder to a Hub repository as one commit (see the module comment). */
export async function pushToHub(target: string, o: PushOptions): Promise<PushResult> {
  if (!isRepoName(o.repo)) throw new LongLoraError(`push: --repo must be "user/name" or "org/name", got ${JSON.stringify(o.repo)}`);
  const plan = pushPlan(target);
  const dir = plan.dir;
  const env = o.env ?? process.env;
  const token = o.token ?? hubToken(env);
  if (!token) throw new LongLoraError('push: no Hugging Face access token; set HF_TOKEN to a token with write access (or log in once with `huggingface-cli login`)');
  const hubUrl = o.hubUrl ?? hubEndpoint(env);
  const where = hubUrl ? { hubUrl } : {};
  const out = o.out ?? process.stderr;
  const repo = { type: 'model' as const, name: o.repo };
  try {
    await createRepo({ repo, accessToken: token, ...(o.private !== undefined ? { private: o.private } : {}), ...where });
    out.write(`created ${o.private ? 'private ' : ''}repository ${o.repo}\n`);
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 409) throw hubError(e, o.repo, 'creating the repository');
  }
  const folderName = path.basename(path.resolve(dir));
  const files: Array<{ path: string; content: URL | Blob; size: number }> = plan.files.map((f) => {
    const full = path.join(dir, f);
    if (f !== CARD_FILE) return { path: f, content: pathToFileURL(full), size: fs.statSync(full).size };
    const text = retargetCard(fs.readFileSync(full, 'utf8'), folderName, o.repo);
    return { path: f, content: new Blob([text]), size: Buffer.byteLength(text) };
  });
  if (plan.kind === 'gguf') {
    const text = ggufCard(await ggufFacts(path.join(dir, plan.files[0]!)), cardFacts(dir, { self: o.repo }), plan.files[0]!, plan.files[1] ?? null);
    files.push({ path: CARD_FILE, content: new Blob([text]), size: Buffer.byteLength(text) });
    plan.files.push(CARD_FILE);
  }
  const bytes = files.reduce((a, f) => a + f.size, 0);
  const bar = new ProgressBar(Math.max(1, Math.ceil(bytes / 1e6)), 'MB', 0, out);
  bar.log(`pushing the ${KIND_NAMES[plan.kind]} in ${dir} to ${o.repo} (${files.length} files, ${(bytes / 1e6).toFixed(1)} MB): ${plan.files.join(', ')}`);
  const done = new Map<string, number>();
  let commit: string | null = null;
  try {
    const it = uploadFilesWithProgress({
      repo, accessToken: token, ...where,
      files: files.map(({ path: p, content }) => ({ path: p, content })),
      commitTitle: o.message ?? `Upload ${KIND_NAMES[plan.kind]} with longlora`,
      ...(o.revision ? { branch: o.revision } : {}),
    });
    for (;;) {
      const r = await it.next();
      if (r.done) { commit = r.value?.commit.oid ?? null; break; }
      const ev = r.value;
      if (ev.event === 'fileProgress' && ev.state === 'uploading') {
        done.set(ev.path, ev.progress * (files.find((f) => f.path === ev.path)?.size ?? 0));
        bar.update(Math.min(bar.total, Math.floor([...done.values()].reduce((a, b) => a + b, 0) / 1e6)), { file: ev.path });
      }
    }
  } catch (e) {
    throw hubError(e, o.repo, 'uploading');
  }
  bar.update(bar.total);
  return { url: `${hubUrl ?? HUB_URL}/${o.repo}`, commit, files: plan.files, bytes, kind: plan.kind };
}

/** A Hub failure as a user error that says what was being done and the likely fix. */
function hubError(e: unknown, repo: string, doing: string): Error {
  if (e instanceof LongLoraError) return e;
  const status = (e as { statusCode?: number }).statusCode;
  const hint = status === 401 ? ': the token was refused; check HF_TOKEN'
    : status === 403 ? `: the token may not write to ${repo} (a read-only token, or another user's namespace)`
      : status === 404 ? `: ${repo} or its branch was not found`
        : '';
  return new LongLoraError(`push: ${doing} ${repo} failed (${(e as Error).message})${hint}`);
}
