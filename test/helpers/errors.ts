/** Assertions on user-facing errors. */
import assert from 'node:assert/strict';
import { LongLoraError } from '../../src/errors.js';

/** Asserts `fn` throws a LongLoraError whose message contains every string in `parts`. */
export function throwsLL(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LongLoraError, `expected LongLoraError, got ${String(err)}`);
    for (const p of parts) assert.ok(err.message.includes(p), `message lacks "${p}": ${err.message}`);
    return true;
  });
}
