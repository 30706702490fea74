/** Waiting in tests: poll a synchronous condition until it holds, or fail saying what never happened. */

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Resolves when `predicate` holds, polling every `everyMs`; rejects with "timed out waiting for <what>" after `ms`. */
export async function until(predicate: () => boolean, what: string, ms = 3000, everyMs = 5): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(everyMs)
  }
}

/**
 * Resolves once `read()` has returned the same value for `quietMs` (e.g. an API server's
 * resourceVersion: nothing is being written any more); rejects after `ms` if it never settles.
 */
export async function steady(read: () => unknown, quietMs: number, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  let last = read()
  let since = Date.now()
  while (Date.now() - since < quietMs) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
    const now = read()
    if (now !== last) [last, since] = [now, Date.now()]
  }
}
