/**
 * util: small helpers with no dependencies, usable from every layer.
 *
 * parallel: runs fn over items with at most `limit` calls in flight. After the first failure
 * no new call starts; the first error is rethrown once the calls in flight have settled.
 */
export async function parallel<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed = false;
  let failure: unknown;
  const run = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        if (!failed) {
          failed = true;
          failure = err;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, run));
  if (failed) throw failure;
}
