/** Waiting with a way out, and timers that cost little to start. */

/** The longest delay a timer takes; longer ones (and `Infinity`) never fire. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * Calls `fire` after `ms` milliseconds unless the returned function is called first. Deno's
 * `setTimeout` loads Node's timers on its first call (10–15 ms of a short command's main thread);
 * `AbortSignal.timeout` does not. Its timer keeps the process alive only while it is armed, but
 * lives (and holds a little memory) until it is due: for a timer per read, see {@link IdleWatch}.
 */
function armTimer(ms: number, fire: () => void): () => void {
  if (!(ms <= MAX_DELAY)) return () => {};
  const signal = AbortSignal.timeout(Math.max(0, Math.floor(ms)));
  signal.addEventListener("abort", fire, { once: true });
  return () => signal.removeEventListener("abort", fire);
}

/**
 * Watches waits that must each end within `ms`: `begin()` when a wait starts (a read, a request),
 * `end()` when it ends; `onIdle` runs when one outlasts `ms`. One timer at a time serves every
 * wait, moved on when it fires early, so a download of a million reads arms a timer a period,
 * not one a read.
 */
export class IdleWatch {
  readonly #ms: number;
  readonly #onIdle: () => void;
  #since = 0;
  #waiting = false;
  #disarm: (() => void) | undefined;

  constructor(ms: number, onIdle: () => void) {
    this.#ms = ms;
    this.#onIdle = onIdle;
  }

  begin(): void {
    this.#since = performance.now();
    this.#waiting = true;
    if (!this.#disarm) this.#arm(this.#ms);
  }

  end(): void {
    this.#waiting = false;
  }

  /** Ends the watch: its timer no longer fires `onIdle` (nor keeps the process alive). */
  stop(): void {
    this.#waiting = false;
    this.#disarm?.();
    this.#disarm = undefined;
  }

  #arm(ms: number): void {
    this.#disarm = armTimer(ms, () => {
      this.#disarm = undefined;
      if (!this.#waiting) return; // the next wait arms it again
      const left = this.#ms - (performance.now() - this.#since);
      if (left > 0) return this.#arm(left);
      this.#waiting = false;
      this.#onIdle();
    });
  }
}

/** Waits `ms` milliseconds; rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      disarm();
      reject(signal!.reason);
    };
    const disarm = armTimer(Math.min(ms, MAX_DELAY), () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
