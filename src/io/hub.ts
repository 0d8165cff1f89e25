/**
 * Models from the Hugging Face Hub: `--model org/name` resolves to a folder in the
 * standard Hugging Face cache (`<cache>/models--org--name/snapshots/<commit>/…`, blobs
 * under `blobs/`, the branch → commit map under `refs/`), shared with Python's
 * huggingface_hub. Online, the files a Llama needs (config, safetensors weights, tokenizer
 * and generation files) are downloaded with @huggingface/hub; offline (HF_HUB_OFFLINE=1,
 * or the Hub cannot be reached) the cached snapshot is used. When neither works the error
 * says which cache was searched and why the Hub failed. Local folders are used as they are.
 * The cache is HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub — the same rule as huggingface_hub. HF_ENDPOINT points at another Hub.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { downloadFileToCacheDir, listFiles, modelInfo } from '@huggingface/hub';
import { LongLoraError } from '../errors.js';
import { INDEX_FILE, parseIndex } from './checkpoint.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, LONGLORA_JSON } from './peft-format.js';
import { ProgressBar, type ProgressStream } from '../train/progress.js';

/** What is wanted of a repository: a model, a PEFT adapter (a training run's output), or one GGUF file of it (`gguf:PATH`). */
export type RepoKind = 'model' | 'adapter' | `gguf:${string}`;

/** An adapter's files: the two PEFT needs, and longlora.json when there is one. */
const ADAPTER_NEEDED = [ADAPTER_CONFIG, ADAPTER_WEIGHTS];
const ADAPTER_FILES = [...ADAPTER_NEEDED, LONGLORA_JSON];

/** Files a model folder needs besides weights. */
const NEEDED = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja', INDEX_FILE];

/** Where and how to resolve a Hub model. */
export interface HubOptions {
  /** Cache folder (default from the environment, see hubCacheDir). */
  cacheDir?: string;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** Never contact the Hub (default: HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Access token (default: HF_TOKEN, else the one `huggingface-cli login` saved). */
  token?: string;
  /** For tests and proxies. */
  fetch?: typeof fetch;
  hubUrl?: string;
  out?: ProgressStream;
  env?: NodeJS.ProcessEnv;
}

/** Hugging Face's folder: HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The Hugging Face hub cache folder for an environment. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return path.join(hfHome(env), 'hub');
}

/**
 * The access token: HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else the file
 * `huggingface-cli login` writes (HF_TOKEN_PATH, else $HF_HOME/token, else
 * ~/.cache/huggingface/token); null when there is none.
 */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | null {
  const t = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
  if (t) return t.trim();
  const file = env.HF_TOKEN_PATH || path.join(hfHome(env), 'token');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() || null : null;
}

/** The Hub's address for an environment: HF_ENDPOINT (a mirror, a private Hub), else undefined for the public Hub. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.HF_ENDPOINT ? env.HF_ENDPOINT.replace(/\/+$/, '') : undefined;
}

/** Whether `spec` names a Hub repository ("org/name") rather than a local path. */
export function isRepoId(spec: string): boolean {
  return !fs.existsSync(spec) && /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(spec) && !spec.includes('..');
}

/**
 * The repository and path of a GGUF file on the Hub, "org/name/path/in/repo.gguf" (as in
 * the file's address on the Hub), or null for anything else (a local file among them).
 */
export function repoGgufFile(spec: string): { repo: string; file: string } | null {
  const m = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)\/([\w.\-/]+\.gguf)$/i.exec(spec);
  return m && !fs.existsSync(spec) && !spec.includes('..') ? { repo: m[1]!, file: m[2]! } : null;
}

function repoFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, `models--${repo.split('/').join('--')}`);
}

/** Why a snapshot folder cannot be used, or null when it holds a complete model (or adapter). */
function snapshotProblem(dir: string, kind: RepoKind = 'model'): string | null {
  if (kind.startsWith('gguf:')) return fs.existsSync(path.join(dir, kind.slice(5))) ? null : `${kind.slice(5)} missing`;
  if (kind === 'adapter') {
    const missing = ADAPTER_NEEDED.filter((f) => !fs.existsSync(path.join(dir, f)));
    return missing.length ? `${missing.join(' and ')} missing` : null;
  }
  if (!fs.existsSync(path.join(dir, 'config.json'))) return 'config.json is missing';
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
    } catch (e) {
      return `${INDEX_FILE} is not valid JSON (${(e as Error).message})`;
    }
    const missing = [...new Set(Object.values(map))].filter((f) => !fs.existsSync(path.join(dir, f)));
    return missing.length ? `weight shard(s) missing: ${missing.slice(0, 3).join(', ')}` : null;
  }
  return fs.existsSync(path.join(dir, 'model.safetensors')) ? null : 'no safetensors weights';
}

/** The cached snapshot of `repo` at `revision` (a branch via refs/, or a commit), or why there is none. */
export function cachedSnapshot(repo: string, revision: string, cacheDir: string, kind: RepoKind = 'model'): { dir: string | null; why: string } {
  const root = repoFolder(cacheDir, repo);
  let commit = revision;
  if (!/^[0-9a-f]{40}$/.test(revision)) {
    const ref = path.join(root, 'refs', revision);
    if (!fs.existsSync(ref)) return { dir: null, why: `${repo}@${revision} is not in the cache ${cacheDir}` };
    commit = fs.readFileSync(ref, 'utf8').trim();
  }
  const dir = path.join(root, 'snapshots', commit);
  if (!fs.existsSync(dir)) return { dir: null, why: `the cached snapshot ${dir} is missing` };
  const problem = snapshotProblem(dir, kind);
  return problem ? { dir: null, why: `the cached snapshot ${dir} is incomplete (${problem})` } : { dir, why: '' };
}

type Credentials = Pick<Parameters<typeof downloadFileToCacheDir>[0], 'accessToken' | 'fetch' | 'hubUrl'>;

/**
 * The weight files of the Hugging Face layout: the shards model.safetensors.index.json
 * names, else model.safetensors. Other safetensors files a repository may carry beside
 * them (Mistral's consolidated.safetensors, adapters, other precisions) are not fetched.
 */
async function weightFiles(repo: string, commit: string, cacheDir: string, listed: ReadonlyMap<string, number>, creds: Credentials): Promise<string[]> {
  if (listed.has(INDEX_FILE)) {
    const index = await downloadFileToCacheDir({ repo, path: INDEX_FILE, revision: commit, cacheDir, ...creds });
    const shards = [...new Set(parseIndex(index).values())];
    const missing = shards.filter((f) => !listed.has(f));
    if (missing.length > 0) throw new LongLoraError(`${repo}: ${INDEX_FILE} names shard(s) the repository does not have: ${missing.slice(0, 3).join(', ')}`);
    return shards;
  }
  if (listed.has('model.safetensors')) return ['model.safetensors'];
  const other = [...listed.keys()].filter((p) => p.endsWith('.safetensors'));
  throw new LongLoraError(other.length > 0
    ? `${repo} has safetensors files (${other.slice(0, 3).join(', ')}) but not in the Hugging Face layout (model.safetensors, or shards listed by ${INDEX_FILE}); pick a repository in transformers' format`
    : `${repo} has no safetensors weights (only other formats); convert it to safetensors or pick a repository that has them`);
}

/** The adapter files of a repository, checked. */
function adapterFiles(repo: string, listed: ReadonlyMap<string, number>): string[] {
  const missing = ADAPTER_NEEDED.filter((f) => !listed.has(f));
  if (missing.length) throw new LongLoraError(`${repo} has no ${missing.join(' or ')}: it is not a PEFT LoRA adapter (for a model, pass it as --model)`);
  return ADAPTER_FILES.filter((f) => listed.has(f));
}

/** The one GGUF file wanted of a repository, checked; a missing one names those it has. */
function ggufFile(repo: string, file: string, listed: ReadonlyMap<string, number>): string[] {
  if (listed.has(file)) return [file];
  const have = [...listed.keys()].filter((p) => p.toLowerCase().endsWith('.gguf'));
  throw new LongLoraError(`${repo} has no file ${file}; ${have.length ? `its GGUF files: ${have.slice(0, 12).join(', ')}${have.length > 12 ? ', …' : ''}` : 'it has no GGUF files'}`);
}

/** Downloads what a Llama (or an adapter, or a GGUF file) needs from `repo` into the cache and records the ref. Returns the snapshot folder. */
async function download(repo: string, revision: string, cacheDir: string, o: HubOptions, kind: RepoKind): Promise<string> {
  const creds = { ...(o.token ? { accessToken: o.token } : {}), ...(o.fetch ? { fetch: o.fetch } : {}), ...(o.hubUrl ? { hubUrl: o.hubUrl } : {}) };
  const info = await modelInfo({ name: repo, revision, additionalFields: ['sha'], ...creds });
  const commit = (info as { sha?: string }).sha;
  if (!commit) throw new LongLoraError(`the Hub gave no commit for ${repo}@${revision}`);
  const listed = new Map<string, number>();
  for await (const f of listFiles({ repo, revision: commit, recursive: true, ...creds })) {
    if (f.type === 'file') listed.set(f.path, f.size);
  }
  const wanted = kind.startsWith('gguf:') ? ggufFile(repo, kind.slice(5), listed) : kind === 'adapter' ? adapterFiles(repo, listed) : [...listed.keys()].filter((p) => NEEDED.includes(p));
  const files = wanted.map((p) => ({ path: p, size: listed.get(p)! }));
  if (kind === 'model') for (const w of await weightFiles(repo, commit, cacheDir, listed, creds)) files.push({ path: w, size: listed.get(w)! });
  const total = files.reduce((a, f) => a + f.size, 0);
  const bar = new ProgressBar(Math.max(1, Math.ceil(total / 1e6)), 'MB', 0, o.out ?? process.stderr);
  bar.log(`downloading ${repo}@${commit.slice(0, 8)}: ${files.length} file(s), ${(total / 1e9).toFixed(2)} GB into ${cacheDir}`);
  const debug = console.debug;
  console.debug = () => {}; // the library announces each download on stdout
  let done = 0;
  try {
    for (const f of files) {
      await downloadFileToCacheDir({ repo, path: f.path, revision: commit, cacheDir, ...creds });
      done += f.size;
      bar.update(Math.min(bar.total, Math.floor(done / 1e6)), { file: f.path });
    }
  } finally {
    console.debug = debug;
  }
  bar.update(bar.total);
  if (revision !== commit) {
    const refs = path.join(repoFolder(cacheDir, repo), 'refs');
    fs.mkdirSync(refs, { recursive: true });
    fs.writeFileSync(path.join(refs, revision), commit);
  }
  return path.join(repoFolder(cacheDir, repo), 'snapshots', commit);
}

/**
 * A local model folder for `spec`: an existing path as it is, or a Hub repository id
 * resolved through the cache (downloading when online).
 */
export async function resolveModel(spec: string, o: HubOptions = {}): Promise<string> {
  return resolveRepo(spec, o, 'model');
}

/**
 * A local GGUF file for a file on the Hub ("org/name/path/file.gguf", see repoGgufFile),
 * resolved through the cache (downloading that one file when online).
 */
export async function resolveGgufFile(spec: string, o: HubOptions = {}): Promise<string> {
  const r = repoGgufFile(spec);
  if (!r) throw new LongLoraError(`${spec} is not a GGUF file on the Hub; name one as org/name/file.gguf`);
  return path.join(await resolveRepo(r.repo, o, `gguf:${r.file}`), r.file);
}

/**
 * A local adapter folder for `spec`: an existing path as it is, or a Hub repository id
 * (an adapter `longlora push` uploaded, or any PEFT LoRA adapter) resolved through the
 * cache: adapter_config.json, adapter_model.safetensors and longlora.json when it has one.
 */
export async function resolveAdapter(spec: string, o: HubOptions = {}): Promise<string> {
  return resolveRepo(spec, o, 'adapter');
}

/** What to pass instead, in the errors. */
function local(kind: RepoKind): string {
  return kind === 'model' ? 'model folder' : kind === 'adapter' ? 'adapter folder' : 'GGUF file';
}

async function resolveRepo(spec: string, o: HubOptions, kind: RepoKind): Promise<string> {
  if (!isRepoId(spec)) {
    if (!fs.existsSync(spec)) throw new LongLoraError(`${spec} does not exist; pass ${kind === 'adapter' ? 'an adapter' : 'a model'} folder, or a Hub repository as org/name`);
    return spec;
  }
  const env = o.env ?? process.env;
  const cacheDir = o.cacheDir ?? hubCacheDir(env);
  const revision = o.revision ?? 'main';
  const offline = o.offline ?? ['1', 'true', 'yes', 'on'].includes(String(env.HF_HUB_OFFLINE ?? '').toLowerCase());
  const cached = cachedSnapshot(spec, revision, cacheDir, kind);
  if (offline) {
    if (cached.dir) return cached.dir;
    throw new LongLoraError(`${spec}: offline (HF_HUB_OFFLINE) and ${cached.why}; download it once while online, or pass a local ${local(kind)}`);
  }
  try {
    const hubUrl = o.hubUrl ?? hubEndpoint(env);
    const token = o.token ?? hubToken(env);
    return await download(spec, revision, cacheDir, { ...o, ...(token ? { token } : {}), ...(hubUrl ? { hubUrl } : {}) }, kind);
  } catch (e) {
    if (e instanceof LongLoraError) throw e;
    const reason = e instanceof Error ? e.message : String(e);
    const status = (e as { statusCode?: number }).statusCode;
    if (cached.dir) {
      (o.out ?? process.stderr).write(`cannot reach the Hub (${reason}); using the cached snapshot ${cached.dir}\n`);
      return cached.dir;
    }
    if (status === 401 || status === 403 || status === 404) {
      throw new LongLoraError(`${spec}: the Hub refused (${status}: ${reason}); check the name, and for gated models accept the licence and set HF_TOKEN`);
    }
    throw new LongLoraError(`${spec}: cannot reach the Hub (${reason}) and ${cached.why}; connect to the internet once, or pass a local ${local(kind)}`);
  }
}
