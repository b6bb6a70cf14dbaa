// `npm test` in a checkout without ../shared: the dataset evaluations count as skipped, each with
// its reason, and the closing line says so.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const test = suite('test runner: skipped suites');
const root = join(__dirname, '../..');

test('without the datasets the eval suites are counted as skipped, with their reasons', async () => {
  const missing = join(root, '.data', 'no-such-datasets-folder');
  const r = await promisify(execFile)(process.execPath, [join(root, 'test/run.mjs'), 'eval/(cmapss|nab)'], {
    cwd: root,
    // TEST_DATABASE_URL comes from the runner of this suite, so no second embedded server starts.
    env: { ...process.env, CMAPSS_DATASETS_DIR: missing, NAB_DATASETS_DIR: missing },
  }).then((x) => ({ code: 0, ...x }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.at(-1), '0 passed, 0 failed, 2 skipped', r.stdout);
  assert.is(r.code, 0, `a run with nothing but skips has not failed\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /\[test\] \[cmapss\] skipped: .*no-such-datasets-folder/);
  assert.match(r.stdout, /\[test\] \[nab\] skipped: .*no-such-datasets-folder/);
});

test.run();
