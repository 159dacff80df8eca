/** Waiting with a way out, and timers that cost little to start. */

/**
 * Calls `fire` after `ms` milliseconds unless the returned function is called first. Deno's
 * `setTimeout` loads Node's timers on its first call (10–15 ms of a short command's main thread);
 * `AbortSignal.timeout` does not. Its timer keeps the process alive only while it is armed.
 */
export function armTimer(ms: number, fire: () => void): () => void {
  const signal = AbortSignal.timeout(ms);
  signal.addEventListener("abort", fire, { once: true });
  return () => signal.removeEventListener("abort", fire);
}

/** Waits `ms` milliseconds; rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      disarm();
      reject(signal!.reason);
    };
    const disarm = armTimer(ms, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
