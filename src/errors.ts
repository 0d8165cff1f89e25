/**
 * One error class for everything a user can get wrong. The message always says what is
 * wrong, where (file, tensor, option), and how to fix it.
 */
export class LongLoraError extends Error {
  override name = 'LongLoraError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A violated internal invariant: a bug in longlora, not in the user's input. */
export class InternalError extends Error {
  override name = 'InternalError';
}

/** Throws an InternalError when `cond` is false. For invariants, never for user input. */
export function invariant(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new InternalError(typeof message === 'function' ? message() : message);
}
