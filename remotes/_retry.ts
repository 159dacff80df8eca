/** Bounded exponential backoff with jitter, `Retry-After`, and abortable sleeps. */

// one abortable sleep serves lock waits and retries
export { sleep } from "../content/internal/mod.ts";

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

/** Describes a network-level failure in a few words, without secrets (no URLs with queries). */
export function describeNetworkError(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
  // Deno's fetch says "fetch failed", with the story in its cause
  if (cause && !message.includes(cause)) {
    message = message === "fetch failed" ? cause : `${message}: ${cause}`;
  }
  // "error sending request for url (URL): …": the URL is known from context and may carry a
  // signed query string; drop it, and queries of any other URL
  return message
    .replace(/ for url \([^)]*\)/g, "")
    .replace(/ from [\d.:[\]a-f]+(?= for )/g, "")
    .replace(/ for https?:\/\/\S+( \([^)]*\))?/g, "")
    .replace(/https?:\/\/\S+/g, (url) => url.replace(/\?.*$/, "?…"));
}

/** Joins the reasons of failed tries, runs of the same reason as one: "tries 1-3: 503 …". */
export function summarizeTries(reasons: string[]): string {
  const parts: string[] = [];
  for (let i = 0; i < reasons.length;) {
    let j = i;
    while (j + 1 < reasons.length && reasons[j + 1] === reasons[i]) j++;
    parts.push(i === j ? `try ${i + 1}: ${reasons[i]}` : `tries ${i + 1}-${j + 1}: ${reasons[i]}`);
    i = j + 1;
  }
  return parts.join("; ");
}
