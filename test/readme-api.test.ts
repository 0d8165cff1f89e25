/**
 * The library as the README shows it: every function or class the README calls is
 * exported by the package entry a user imports it from (`longlora`, `longlora/browser` or
 * `longlora/browser/text`, loaded through the package's own `exports` map), and the names
 * its code examples import exist in the entry they import from.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './helpers/fixtures.js';

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** Methods and non-library names the README writes as calls (`model.forward(...)` is skipped by its receiver). */
const NOT_EXPORTS = new Set(['run', 'keep', 'dispose', 'range']);

async function entries(): Promise<Record<string, Record<string, unknown>>> {
  return {
    longlora: await import('longlora') as Record<string, unknown>,
    'longlora/browser': await import('longlora/browser') as Record<string, unknown>,
    'longlora/browser/text': await import('longlora/browser/text') as Record<string, unknown>,
  };
}

describe('the README and the package exports', () => {
  it('every function or class the README calls is exported by an entry', async () => {
    const all = await entries();
    const missing: string[] = [];
    for (const m of readme.matchAll(/`(?:new |await )?([A-Za-z_]\w*)(\.\w+)?\(/g)) {
      const [, name, member] = m as unknown as [string, string, string | undefined];
      if (NOT_EXPORTS.has(name)) continue;
      if (member && /^[a-z]/.test(name) && !Object.values(all).some((e) => name in e)) continue; // a method of a value: model.forward(
      if (!Object.values(all).some((e) => name in e)) missing.push(name);
    }
    assert.deepEqual([...new Set(missing)], []);
  });

  it('the names each code example imports are exported by the entry it names', async () => {
    const all = await entries();
    const bad: string[] = [];
    let imports = 0;
    for (const m of readme.matchAll(/^import \{([^}]+)\} from '([^']+)';$/gm)) {
      const entry = all[m[2]!];
      assert.ok(entry, `README imports from ${m[2]}, which is not a package entry`);
      for (const n of m[1]!.split(',').map((s) => s.trim()).filter((s) => s && !s.startsWith('type '))) {
        imports++;
        if (!(n in entry)) bad.push(`${n} from ${m[2]}`);
      }
    }
    assert.ok(imports >= 5, `${imports} imported names found`);
    assert.deepEqual(bad, []);
  });

  it('the training loop, adapters and merging are in the Node entry', async () => {
    const { longlora } = await entries();
    for (const n of ['Trainer', 'defaultTrainConfig', 'loadWithAdapter', 'mergeAdapter']) assert.equal(typeof longlora![n], 'function', n);
  });
});
