/** The command line, run as a user runs it (a child process on the built entry). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './helpers/fixtures.js';

const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function cli(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('longlora command line', () => {
  it('demo: parity with PyTorch and a falling loss', () => {
    const r = cli('demo', '--steps', '10');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /parity with PyTorch/);
    const m = /loss ([\d.]+) → ([\d.]+)/.exec(r.out);
    assert.ok(m, r.out);
    assert.ok(Number(m[2]) < Number(m[1]) / 2, `loss fell: ${m[0]}`);
  });

  it('info describes a model folder', () => {
    const r = cli('info', path.join(ROOT, 'test', 'fixtures', 'golden', 'tiny-llama'), '--tensors');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /2 layers, hidden 32/);
    assert.match(r.out, /model\.layers\.1\.mlp\.down_proj\.weight\s+F32\s+\[32, 64\]/);
  });

  it('usage errors: unknown command, unknown option, bad path', () => {
    const a = cli('frobnicate');
    assert.equal(a.code, 2);
    assert.match(a.err, /unknown command 'frobnicate'/);
    const b = cli('info', '--bogus');
    assert.notEqual(b.code, 0);
    assert.match(b.err, /Unknown option '--bogus'/);
    const c = cli('info', path.join(ROOT, 'no-such-model'));
    assert.equal(c.code, 1);
    assert.match(c.err, /no-such-model.*config\.json not found/);
    assert.doesNotMatch(c.err, /at .*\.js:\d+/, 'no stack trace for user errors');
  });

  it('--help lists the commands', () => {
    const r = cli('--help');
    assert.equal(r.code, 0);
    assert.match(r.out, /demo/);
    assert.match(r.out, /info/);
  });
});
