import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { deviceAlias } from '../../src/cli/device-alias.js';
import { UsageError } from '../../src/cli/args.js';
import { LongLoraError } from '../../src/errors.js';
import { ROOT, goldenDir } from '../helpers/fixtures.js';
import { tempFolders } from '../helpers/tmp.js';
import { tokenFile } from '../helpers/train.js';

const fresh = tempFolders('device');

describe('--device', () => {
  it('is rewritten to --backend, in both spellings, and only before --', () => {
    assert.deepEqual(deviceAlias(['--model', 'm', '--device', 'wasm']), ['--model', 'm', '--backend', 'wasm']);
    assert.deepEqual(deviceAlias(['--device=webgpu', '--steps', '2']), ['--backend=webgpu', '--steps', '2']);
    assert.deepEqual(deviceAlias(['--', '--device', 'cpu']), ['--', '--device', 'cpu']);
    assert.deepEqual(deviceAlias(['--backend', 'cpu']), ['--backend', 'cpu']);
  });

  it('with --backend too, or without a value, is a clear error', () => {
    const bad = (argv: string[], re: RegExp): void => {
      assert.throws(() => deviceAlias(argv), (e: unknown) => e instanceof LongLoraError && re.test(e.message));
    };
    bad(['--device', 'cpu', '--backend', 'wasm'], /give one of them/);
    bad(['--backend=cpu', '--device=wasm'], /give one of them/);
    bad(['--device'], /needs a value/);
    assert.throws(() => deviceAlias(['--device']), UsageError, 'a usage mistake (exit status 2)');
    bad(['--device', '--steps', '3'], /needs a value/);
  });

  it('selects the backend of a command', () => {
    const data = tokenFile(fresh(), 600);
    const ok = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'eval', 'ppl', '--model', goldenDir('tiny-llama'), '--device', 'cpu', '--data', data, '--seq-len', '8', '--procedure', 'sliding'], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /sliding\s+8/);
    const e = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'eval', 'ppl', '--model', goldenDir('tiny-llama'), '--device', 'no-such-device', '--data', 'x.bin', '--seq-len', '8'], { encoding: 'utf8' });
    assert.equal(e.status, 1);
    assert.match(e.stderr, /no-such-device/);
  });
});
