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
