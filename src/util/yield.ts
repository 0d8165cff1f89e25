/**
 * Lets the event loop run (timers, messages, a Ctrl-C handler, a page's Stop button) before
 * going on: setImmediate in Node; a message to itself in a page or worker, which a
 * browser does not clamp to 4 ms as it does nested timeouts.
 */
export function yieldToEvents(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const port = channel.port1 as unknown as { onmessage: (() => void) | null; close(): void };
    port.onmessage = () => { port.close(); resolve(); };
    channel.port2.postMessage(null);
  });
}

/** Whether `signal` has been aborted, after letting other events run (at once false, without yielding, when there is none). */
export async function abortedAfterEvents(signal: AbortSignal | undefined): Promise<boolean> {
  if (!signal) return false;
  await yieldToEvents();
  return signal.aborted;
}
