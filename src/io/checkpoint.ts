/**
 * Hugging Face checkpoint folders: a single `model.safetensors`, or shards
 * `model-0000k-of-0000n.safetensors` listed by `model.safetensors.index.json`
 * (`{metadata: {total_size}, weight_map: {tensor: file}}`), next to `config.json`.
 *
 * Reading opens shards lazily (each header once) and checks each shard against the index
 * when it is first opened; `verify()` opens them all. Writing stages every shard under a
 * temporary name, renames them only when all were written, and writes the index last.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LongLoraError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { writeJsonAtomic, type StagedFile } from './atomic.js';
import {
  SafetensorsFile, type HostTensor, type TensorEntry, type TensorInfo,
  entryByteLength, missingTensorError, stageSafetensors,
} from './safetensors.js';

/** File name of an unsharded checkpoint. */
export const SINGLE_FILE = 'model.safetensors';
/** File name of the shard index. */
export const INDEX_FILE = 'model.safetensors.index.json';
/** Default shard size limit, as transformers' `max_shard_size="5GB"`. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** Where a tensor lives in a checkpoint: its safetensors info plus the shard path. */
export interface CheckpointTensorInfo extends TensorInfo {
  file: string;
}

/** Options of `writeCheckpoint`. */
export interface WriteCheckpointOptions {
  /** Largest data size per shard in bytes (default 5e9); a bigger tensor gets a shard of its own. */
  maxShardBytes?: number;
  /** `__metadata__` of every file; `format: "pt"` is added unless given (transformers expects it). */
  metadata?: Record<string, string>;
}

/** What `writeCheckpoint` wrote. */
export interface WrittenCheckpoint {
  /** Paths of the safetensors files, in order. */
  files: string[];
  /** Path of the index, or null for a single file. */
  index: string | null;
  /** Total tensor bytes (the index's metadata.total_size). */
  totalSize: number;
}

/**
 * Why a file cannot stand where a model folder is needed: a GGUF file (an export) can be
 * evaluated and run, but training, merging and exporting start from a Hugging Face folder
 * (which `longlora export --model FILE.gguf --out DIR` makes of it).
 */
export function notAFolder(file: string): string {
  if (file.endsWith('.gguf')) {
    return `${file} is a GGUF file, and this needs a Hugging Face model folder (config.json and *.safetensors): ` +
      'a GGUF file can be evaluated and run (eval ppl, eval passkey, generate and chat take --model FILE.gguf); ' +
      `train, merge or export from the checkpoint folder it was made from, or convert it into one first: longlora export --model ${file} --out DIR`;
  }
  return `${file} is a file, and this needs a folder; pass the folder that holds it`;
}

/**
 * Reads a JSON file (e.g. `config.json`) as raw JSON. Throws a LongLoraError naming the
 * file when it is missing, unreadable or not valid JSON, or when a file stands where its
 * folder should be.
 */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') {
      const dir = path.dirname(file);
      throw new LongLoraError(fs.existsSync(dir) ? `${file} not found; check the path (a model folder needs it)` : `${dir} does not exist; check the path`, { cause: err });
    }
    const dir = path.dirname(file);
    if (code === 'ENOTDIR' && isFile(dir)) throw new LongLoraError(notAFolder(dir), { cause: err });
    throw new LongLoraError(`cannot read ${file} (${code ?? String(err)}); check the path and permissions`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LongLoraError(`${file} is not valid JSON (${(err as Error).message}); fix or re-download the file`, { cause: err });
  }
}

/** An opened HF checkpoint folder. Call `close()` when done. */
export class Checkpoint {
  private readonly opened = new Map<string, SafetensorsFile>();
  private readonly byShard = new Map<string, string[]>();

  /**
   * @param dir the folder
   * @param files absolute shard paths, in order
   * @param index path of the index file, or null for a single file
   * @param weightMap tensor → shard file name (from the index), or null for a single file
   */
  constructor(
    readonly dir: string,
    readonly files: readonly string[],
    readonly index: string | null,
    private readonly weightMap: ReadonlyMap<string, string> | null,
  ) {
    for (const [tensor, file] of weightMap ?? []) {
      const list = this.byShard.get(file) ?? [];
      list.push(tensor);
      this.byShard.set(file, list);
    }
  }

  /** Tensor names: the index order when sharded, else the header order of model.safetensors. */
  names(): string[] {
    return this.weightMap ? [...this.weightMap.keys()] : this.shard(SINGLE_FILE).names();
  }

  has(name: string): boolean {
    return this.weightMap ? this.weightMap.has(name) : this.shard(SINGLE_FILE).has(name);
  }

  /** Dtype, shape, size, offset and shard path of `name`. */
  info(name: string): CheckpointTensorInfo {
    const f = this.fileOf(name);
    return { ...f.info(name), file: f.path };
  }

  /** Reads `name` (see SafetensorsFile.read for `to`). */
  read(name: string, to?: DType): HostTensor {
    return this.fileOf(name).read(name, to);
  }

  /** Exactly the stored bytes of `name`. */
  readRaw(name: string): Uint8Array {
    return this.fileOf(name).readRaw(name);
  }

  /** Opens every shard now and checks it against the index (otherwise done lazily). */
  verify(): void {
    for (const f of this.files) this.shard(path.basename(f));
  }

  /** Closes every opened shard. */
  close(): void {
    for (const f of this.opened.values()) f.close();
    this.opened.clear();
  }

  private fileOf(name: string): SafetensorsFile {
    if (!this.weightMap) return this.shard(SINGLE_FILE);
    const file = this.weightMap.get(name);
    if (file === undefined) throw missingTensorError(`${this.index}`, name, [...this.weightMap.keys()]);
    return this.shard(file);
  }

  private shard(file: string): SafetensorsFile {
    let f = this.opened.get(file);
    if (!f) {
      f = SafetensorsFile.open(path.join(this.dir, file));
      try {
        this.checkShard(file, f);
      } catch (err) {
        f.close();
        throw err;
      }
      this.opened.set(file, f);
    }
    return f;
  }

  /** Every tensor the index maps to `file` is in it, and it holds none the index puts elsewhere. */
  private checkShard(file: string, f: SafetensorsFile): void {
    if (!this.weightMap) return;
    for (const tensor of this.byShard.get(file) ?? []) {
      if (!f.has(tensor)) {
        throw new LongLoraError(`${this.index} maps tensor "${tensor}" to ${file}, but ${f.path} does not contain it; the shard or the index is wrong: re-download or re-export the checkpoint`);
      }
    }
    for (const tensor of f.names()) {
      const listed = this.weightMap.get(tensor);
      if (listed !== undefined && listed !== file) {
        throw new LongLoraError(`tensor "${tensor}" is in two shards: ${f.path} holds it and ${this.index} maps it to ${listed}; a tensor must be in exactly one shard: re-export the checkpoint`);
      }
    }
  }
}

/**
 * Opens the checkpoint in `dir`: through model.safetensors.index.json when present, else
 * model.safetensors. Validates the index and that every shard exists; a folder without a
 * safetensors checkpoint is a LongLoraError saying what it does hold.
 */
export function openCheckpoint(dir: string): Checkpoint {
  checkFolder(dir);
  const indexPath = path.join(dir, INDEX_FILE);
  if (fs.existsSync(indexPath)) return openSharded(dir, indexPath);
  const single = path.join(dir, SINGLE_FILE);
  if (fs.existsSync(single)) {
    const ck = new Checkpoint(dir, [single], null, null);
    ck.verify(); // a single file is opened (and validated) at once
    return ck;
  }
  throw noCheckpointError(dir);
}

function checkFolder(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    throw new LongLoraError(`checkpoint folder ${dir} does not exist; check the path`, { cause: err });
  }
  if (!st.isDirectory()) {
    throw new LongLoraError(`${dir} is a file, not a checkpoint folder; pass the folder that holds ${SINGLE_FILE} (or ${INDEX_FILE}) and config.json`);
  }
}

function noCheckpointError(dir: string): LongLoraError {
  const names = fs.readdirSync(dir);
  const torch = names.filter((n) => /^pytorch_model.*\.bin(\.index\.json)?$/.test(n));
  if (torch.length > 0) {
    return new LongLoraError(`${dir} holds a PyTorch checkpoint (${torch.slice(0, 3).join(', ')}) but no ${SINGLE_FILE} or ${INDEX_FILE}; convert it to safetensors (in Python: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, safe_serialization=True))`);
  }
  const other = names.filter((n) => n.endsWith('.safetensors'));
  const holds = other.length > 0 ? `; it holds ${other.slice(0, 5).join(', ')}` : '';
  const adapter = names.includes('adapter_model.safetensors') ? ' (a LoRA adapter folder is not a base model: pass the base model folder)' : '';
  return new LongLoraError(`${dir} has no safetensors checkpoint: neither ${SINGLE_FILE} nor ${INDEX_FILE}${holds}; pass the folder of a Hugging Face model${adapter}`);
}

function openSharded(dir: string, indexPath: string): Checkpoint {
  const weightMap = parseIndex(indexPath);
  const shards = [...new Set(weightMap.values())].sort();
  const missing = shards.filter((f) => !isFile(path.join(dir, f)));
  if (missing.length > 0) {
    const first = [...weightMap].find(([, f]) => f === missing[0])![0];
    throw new LongLoraError(`${indexPath} lists shard ${missing.join(', ')} (e.g. for tensor "${first}"), but ${path.join(dir, missing[0]!)} does not exist; the download is incomplete: download the missing shard${missing.length > 1 ? 's' : ''}`);
  }
  return new Checkpoint(dir, shards.map((f) => path.join(dir, f)), indexPath, weightMap);
}

/** Validates the index JSON; returns weight_map in file order. */
export function parseIndex(indexPath: string): Map<string, string> {
  const json = readJsonFile(indexPath);
  const fix = 'fix or re-download the index';
  if (!isObject(json)) throw new LongLoraError(`${indexPath} must be a JSON object with "weight_map"; ${fix}`);
  if (json['metadata'] !== undefined && !isObject(json['metadata'])) {
    throw new LongLoraError(`${indexPath}: "metadata" must be an object; ${fix}`);
  }
  const wm = json['weight_map'];
  if (!isObject(wm)) throw new LongLoraError(`${indexPath} has no "weight_map" object mapping tensor names to shard files; ${fix}`);
  const map = new Map<string, string>();
  for (const [tensor, file] of Object.entries(wm)) {
    if (typeof file !== 'string' || file === '' || file !== path.basename(file) || file === '..' || file.includes('\\')) {
      throw new LongLoraError(`${indexPath}: weight_map["${tensor}"] is ${JSON.stringify(file)}; it must be the file name of a shard in the same folder; ${fix}`);
    }
    map.set(tensor, file);
  }
  if (map.size === 0) throw new LongLoraError(`${indexPath}: weight_map is empty; ${fix}`);
  return map;
}

/** `model-0000k-of-0000n.safetensors`, 1-based. */
export function shardFileName(k: number, n: number): string {
  const pad = (x: number) => String(x).padStart(5, '0');
  return `model-${pad(k)}-of-${pad(n)}.safetensors`;
}

/** Greedy split in the given order: a new shard starts when the next tensor would overflow. */
function planShards(entries: TensorEntry[], sizes: number[], maxShardBytes: number): TensorEntry[][] {
  const shards: TensorEntry[][] = [[]];
  let used = 0;
  entries.forEach((e, i) => {
    const size = sizes[i]!;
    if (used > 0 && used + size > maxShardBytes) {
      shards.push([]);
      used = 0;
    }
    shards[shards.length - 1]!.push(e);
    used += size;
  });
  return shards;
}

/**
 * Writes tensors to `dir` (created if needed) as one model.safetensors when their data fit
 * in `maxShardBytes`, else as shards plus the index. All files are staged first and
 * renamed only when every one was written (the index last), so an error while writing
 * (e.g. a data function throwing) leaves a previous checkpoint intact. Files of a previous
 * checkpoint that the new one does not use (old shards, a stale index) are removed last.
 */
export function writeCheckpoint(dir: string, entries: Iterable<TensorEntry>, options: WriteCheckpointOptions = {}): WrittenCheckpoint {
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0) {
    throw new LongLoraError(`writeCheckpoint(${dir}): maxShardBytes must be a positive integer, got ${maxShardBytes}`);
  }
  const list = [...entries];
  checkUniqueNames(dir, list);
  const sizes = list.map((e) => entryByteLength(e, dir));
  const totalSize = sizes.reduce((a, b) => a + b, 0);
  const groups = planShards(list, sizes, maxShardBytes);
  const metadata = { format: 'pt', ...options.metadata };
  fs.mkdirSync(dir, { recursive: true });
  const names = groups.length === 1 ? [SINGLE_FILE] : groups.map((_, i) => shardFileName(i + 1, groups.length));
  const staged = stageAll(dir, names, groups, metadata);
  for (const s of staged) s.commit();
  let index: string | null = null;
  if (groups.length > 1) {
    index = path.join(dir, INDEX_FILE);
    const weightMap: Record<string, string> = Object.create(null);
    groups.forEach((g, i) => g.forEach((e) => { weightMap[e.name] = names[i]!; }));
    const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    writeJsonAtomic(index, { metadata: { total_size: totalSize }, weight_map: sortedMap });
  }
  removeStale(dir, new Set(index ? [...names, INDEX_FILE] : names));
  return { files: names.map((n) => path.join(dir, n)), index, totalSize };
}

function stageAll(dir: string, names: string[], groups: TensorEntry[][], metadata: Record<string, string>): StagedFile[] {
  const staged: StagedFile[] = [];
  try {
    groups.forEach((g, i) => staged.push(stageSafetensors(path.join(dir, names[i]!), g, metadata)));
  } catch (err) {
    for (const s of staged) s.discard();
    throw err;
  }
  return staged;
}

function checkUniqueNames(dir: string, list: TensorEntry[]): void {
  const seen = new Set<string>();
  for (const e of list) {
    if (seen.has(e.name)) throw new LongLoraError(`writeCheckpoint(${dir}): tensor "${e.name}" is given twice; tensor names must be unique`);
    seen.add(e.name);
  }
}

/** Removes checkpoint files in `dir` that are not in `keep` (model.safetensors, the index, model-*-of-* shards). */
function removeStale(dir: string, keep: Set<string>): void {
  // The index goes first, so no moment has an index that points to a removed shard.
  const stale = fs.readdirSync(dir).filter((name) =>
    (name === SINGLE_FILE || name === INDEX_FILE || SHARD_RE.test(name)) && !keep.has(name));
  stale.sort((a, b) => Number(b === INDEX_FILE) - Number(a === INDEX_FILE));
  for (const name of stale) fs.rmSync(path.join(dir, name), { force: true });
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
