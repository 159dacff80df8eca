/** Bounded exponential backoff with jitter, `Retry-After`, and abortable sleeps. */

/** How often and how patiently requests are retried. */
export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** The delay before the first retry; it doubles for each further one. */
  baseDelayMs: number;
  /** No delay is longer, `Retry-After` included. */
  maxDelayMs: number;
}

/** Statuses worth another try: timeouts, rate limits and transient server trouble. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/**
 * The delay before retry number `retry` (1 for the first retry): `base · 2^(retry-1)`, capped,
 * with "equal jitter" (between half and all of it) so parallel clients spread out.
 */
export function backoffDelay(policy: RetryPolicy, retry: number): number {
  const full = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(full / 2 + Math.random() * (full / 2));
}

/** Parses `Retry-After` (seconds or an HTTP date) into milliseconds; undefined when absent. */
export function parseRetryAfter(
  value: string | null,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Describes a network-level failure in a few words, without secrets (no URLs with queries). */
export function describeNetworkError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // Deno's fetch errors read "error sending request for url (URL): cause"; drop the URL
  const withoutUrl = message.replace(/\s*for url \([^)]*\)/, "");
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
  const text = cause && !withoutUrl.includes(cause) ? `${withoutUrl}: ${cause}` : withoutUrl;
  return text.replace(/https?:\/\/\S+/g, (url) => url.replace(/\?.*$/, "?…"));
}
