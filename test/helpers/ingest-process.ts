// The real ingest process (`iot ingest mqtt`, from source) as a child, for tests that stop or kill it.
import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { waitFor } from './wait';

const root = join(__dirname, '../..');

export interface IngestProcess {
  child: ChildProcess;
  /** Its stdout and stderr so far. */
  out: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  /** When the test signalled it (exited's ms counts from here). */
  signalledAt: number;
}

export function startIngest(env: Record<string, string>): IngestProcess {
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), 'ingest', 'mqtt'], {
    cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p: IngestProcess = { child, out: '', exited: undefined as never, signalledAt: 0 };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (p.out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (p.out += d));
  p.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, ms: Date.now() - p.signalledAt })));
  return p;
}

export async function untilSubscribed(p: IngestProcess): Promise<void> {
  await waitFor(() => {
    if (p.child.exitCode !== null) throw new Error(`iot ingest mqtt exited ${p.child.exitCode}:\n${p.out}`);
    return /\[ingest-mqtt\] subscribed/.test(p.out);
  }, 30_000, `iot ingest mqtt to subscribe:\n${p.out}`);
}
