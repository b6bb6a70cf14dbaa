// The previous release's db/ and sql/, taken from git, for the upgrade tests (a database migrated
// by it must upgrade in place with its data). Without the history the tests say so and skip.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/lib/db/migrate';

export const PREVIOUS_RELEASE = '928d2ad'; // the last commit of 0.1.0 (issues 2 and 3)

/** db/ and sql/ as they were at `commit` (default: the previous release), in a temporary folder. */
export function extractPreviousRelease(commit = PREVIOUS_RELEASE): { dir: string; remove(): void } | { skip: string } {
  const dir = mkdtempSync(join(tmpdir(), 'iot-release-'));
  try {
    const tar = execFileSync('git', ['-C', projectRoot, 'archive', commit, 'db', 'sql'], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `commit ${commit} is not in this checkout's git history (${(error as Error).message.split('\n')[0]})` };
  }
}
