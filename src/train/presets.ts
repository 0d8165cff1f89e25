/**
 * Training presets: small YAML files of config values shipped with the package in
 * `presets/<name>.yaml` (e.g. `longqlora`), applied after the defaults and before a config
 * file and flags (`longlora train --preset longqlora`). A preset holds ordinary config keys,
 * checked like any other source. Relative paths in a preset (model, data, pplData,
 * tokenizer) name files shipped with the package and are resolved against its root, so a
 * preset works from any working folder (a path not found there is left as written: a Hub
 * id, say); `output` stays relative to the working folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LongLoraError } from '../errors.js';
import { applyValues, readConfigFile, type TrainConfig } from './config.js';

/** The package root (this file is dist/src/train/). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The folder of the shipped presets (the package's `presets/`). */
export const PRESETS_DIR = path.join(PACKAGE_ROOT, 'presets');
/** Preset keys that name shipped files. */
const PATH_KEYS = ['model', 'data', 'pplData', 'tokenizer'];

/** Names of the shipped presets. */
export function presetNames(): string[] {
  if (!fs.existsSync(PRESETS_DIR)) return [];
  return fs.readdirSync(PRESETS_DIR).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -'.yaml'.length)).sort();
}

/** The raw values of a preset; an unknown name is an error listing the known ones. */
export function presetValues(name: string): Record<string, unknown> {
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(name) || !presetNames().includes(name)) {
    const known = presetNames();
    throw new LongLoraError(`unknown preset '${name}'; presets: ${known.length ? known.join(', ') : `none found in ${PRESETS_DIR}`}`);
  }
  const values = readConfigFile(path.join(PRESETS_DIR, `${name}.yaml`));
  for (const k of PATH_KEYS) {
    const v = values[k];
    if (typeof v !== 'string' || v === '' || path.isAbsolute(v)) continue;
    const shipped = path.join(PACKAGE_ROOT, v);
    if (fs.existsSync(shipped)) values[k] = shipped; // else: a Hub id or the user's own relative path
  }
  return values;
}

/** `c` with a preset's values applied. */
export function applyPreset(c: TrainConfig, name: string): TrainConfig {
  return applyValues(c, presetValues(name), `preset ${name}`);
}
