import * as assert from 'uvu/assert';

/** Asserts that `fn` rejects with a message matching `pattern` (and SQLSTATE `code` if given). */
export async function rejects(fn: () => Promise<unknown>, pattern: RegExp | string, code?: string): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    const e = error as Error & { code?: string };
    assert.match(e.message, pattern);
    if (code) assert.is(e.code, code, `expected SQLSTATE ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
  throw new Error('unreachable');
}
