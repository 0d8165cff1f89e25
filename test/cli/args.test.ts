import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandOf, parse, parseStrict, UsageError, type OptionSpec } from '../../src/cli/args.js';

const OPTIONS: Record<string, OptionSpec> = {
  model: { type: 'string', help: 'model folder' },
  out: { type: 'string', help: 'output folder' },
  steps: { type: 'string', help: 'steps' },
  private: { type: 'boolean', help: 'private' },
};
const USAGE = 'longlora thing --model DIR --out DIR [--steps N]';

function usageError(argv: string[]): string {
  try {
    parse(argv, USAGE, OPTIONS);
  } catch (e) {
    assert.ok(e instanceof UsageError, `a UsageError, got ${String(e)}`);
    return e.message;
  }
  assert.fail(`${argv.join(' ')} parsed`);
}

describe('command-line parsing', () => {
  it('takes the command from the usage line', () => {
    assert.equal(commandOf(USAGE), 'longlora thing');
    assert.equal(commandOf('longlora eval ppl --model DIR'), 'longlora eval ppl');
    assert.equal(commandOf('longlora info <model folder>'), 'longlora info');
    assert.equal(commandOf('longlora backends'), 'longlora backends');
  });

  it('names the nearest option for a misspelt or shortened one, and none for a name far from all', () => {
    assert.match(usageError(['--modle', 'x']), /^unknown option '--modle' for longlora thing; did you mean --model\? \(`longlora thing --help` lists the options\)$/);
    assert.match(usageError(['--output', 'x']), /did you mean --out\?/);
    assert.match(usageError(['--stepz=3']), /unknown option '--stepz' for longlora thing; did you mean --steps\?/);
    const far = usageError(['--bogus', '1']);
    assert.match(far, /unknown option '--bogus'/);
    assert.doesNotMatch(far, /did you mean/);
    assert.doesNotMatch(usageError(['-x']), /did you mean/);
  });

  it('names every option a shortened name may mean, one whose words it has, and not --help for a near spelling of it', () => {
    const options: Record<string, OptionSpec> = {
      temperature: { type: 'string', help: '' }, template: { type: 'string', help: '' }, 'max-new-tokens': { type: 'string', help: '' },
    };
    const err = (argv: string[]): string => { try { parse(argv, 'longlora generate --model DIR', options); } catch (e) { return (e as Error).message; } return ''; };
    assert.match(err(['--temp', '0.5']), /did you mean --temperature or --template\?/);
    assert.match(err(['--max-tokens', '5']), /did you mean --max-new-tokens\?/);
    assert.match(err(['--backend', 'cpu']), /^longlora generate does not choose a compute backend: it takes no --backend or --device/);
  });

  it('says what a missing value, a dash-led value, a value given to a switch and a stray argument need', () => {
    assert.match(usageError(['--steps']), /^--steps needs a value \(/);
    assert.match(usageError(['--steps', '-3']), /--steps needs a value, and the next argument '-3' starts with '-'; if that is the value, write --steps=-3/);
    assert.match(usageError(['--private=yes']), /^--private is a switch and takes no value: write --private alone \(/);
    assert.match(usageError(['some/folder']), /^unexpected argument 'some\/folder': longlora thing takes every input as an option\nusage: longlora thing --model DIR/);
  });

  it('names the off switch where the command has one', () => {
    const options = { checkpointing: { type: 'boolean' as const }, 'no-checkpointing': { type: 'boolean' as const } };
    assert.throws(() => parseStrict(['--checkpointing=1'], options, 'longlora train'), /write --checkpointing alone to turn it on, --no-checkpointing to turn it off/);
  });

  it('refuses an option of one value given twice with different values, and lets a repeat of the same value or a switch pass', () => {
    assert.match(usageError(['--steps', '3', '--out', 'o', '--steps=4']), /^--steps was given twice \('3' and '4'\); it takes one value, so give it once \(`longlora thing --help`/);
    const r = parse(['--steps', '3', '--private', '--steps', '3', '--private'], USAGE, OPTIONS);
    assert.deepEqual({ ...r!.values }, { steps: '3', private: true });
    const many = parseStrict(['--stop', 'a', '--stop', 'b'], { stop: { type: 'string', multiple: true } }, 'longlora generate');
    assert.deepEqual(many.values.stop, ['a', 'b']);
  });

  it('parses what is right as node:util does', () => {
    const r = parse(['--model', 'm', '--steps=-3', '--private'], USAGE, OPTIONS);
    assert.deepEqual({ ...r!.values }, { model: 'm', steps: '-3', private: true });
    assert.deepEqual(r!.positionals, []);
  });
});
