/**
 * until: polls `f` every `everyMs` until it returns a value (not undefined), for at most `ms`; an
 * error thrown by `f` is remembered and polling goes on (the thing may not exist yet), except an
 * AssertionError, which fails at once (the test decided). On a timeout the failure names what was
 * awaited, the last error, and `context()` (recent logs, say).
 */
import assert, { AssertionError } from 'node:assert/strict';

export async function until<T>(what: string, ms: number, f: () => Promise<T | undefined> | T | undefined, o: { everyMs?: number; context?: () => string } = {}): Promise<T> {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < ms) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof AssertionError) throw e;
      last = (e as Error).message.slice(0, 300);
    }
    await new Promise((r) => setTimeout(r, o.everyMs ?? 250));
  }
  const ctx = o.context?.() ?? '';
  assert.fail(`timed out after ${ms} ms waiting for ${what}${last !== '' ? ` (last error: ${last})` : ''}${ctx !== '' ? `\n${ctx}` : ''}`);
}
