/** Locations inside the installed package. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (this file is dist/src/cli/paths.js). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The tiny Llama used by the demo and the golden tests. */
export const TINY_MODEL = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'golden', 'tiny-llama');
