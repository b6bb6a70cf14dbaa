// npm run bench: every benchmark, one after another.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

for (const bench of ['ingest', 'health']) {
  execFileSync(process.execPath, [join(__dirname, `${bench}.js`)], { stdio: 'inherit', env: process.env });
}
