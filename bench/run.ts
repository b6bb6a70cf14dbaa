// npm run bench: every benchmark, one after another.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { handleArguments } from './support';

handleArguments(`
npm run bench: every benchmark, one after another (npm run bench:ingest, bench:health, bench:realtime, bench:query;
each takes --help for its own variables).`);

for (const bench of ['ingest', 'health', 'realtime', 'query']) {
  execFileSync(process.execPath, ['--expose-gc', join(__dirname, `${bench}.js`)], { stdio: 'inherit', env: process.env });
}
