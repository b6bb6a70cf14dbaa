// The Numenta Anomaly Benchmark series kept in shared/datasets/nab (beside this repository):
// machine_temperature_system_failure.csv (`timestamp,value`, 5-minute steps) and its labelled
// anomaly windows, with the window-based scoring used by test/eval/nab.test.ts.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const NAB_SERIES = 'realKnownCause/machine_temperature_system_failure.csv';

export interface NabPoint {
  time: Date;
  value: number;
}

export interface NabData {
  points: NabPoint[];
  windows: [Date, Date][];
}

/** The datasets folder: shared/datasets beside the repository (NAB_DATASETS_DIR overrides). */
export function datasetsDir(): string {
  return process.env.NAB_DATASETS_DIR ?? join(__dirname, '../../../shared/datasets');
}

/** NAB timestamps carry no zone; they are read as UTC. */
const utc = (s: string) => new Date(s.trim().replace(' ', 'T').replace(/(\.\d{3})\d*$/, '$1') + 'Z');

/** Loads the series and its windows, or returns a reason why it cannot. */
export function loadNab(dir = join(datasetsDir(), 'nab')): NabData | { missing: string } {
  const csv = join(dir, 'machine_temperature_system_failure.csv');
  const labels = join(dir, 'labels_windows.json');
  for (const f of [csv, labels]) if (!existsSync(f)) return { missing: `${f} not found` };
  const lines = readFileSync(csv, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines[0].trim() !== 'timestamp,value') throw new Error(`${csv}: expected the header "timestamp,value", got "${lines[0]}"`);
  const points = lines.slice(1).map((line, i) => {
    const [ts, v] = line.split(',');
    const point = { time: utc(ts), value: Number(v) };
    if (Number.isNaN(point.time.getTime()) || !Number.isFinite(point.value)) {
      throw new Error(`${csv} line ${i + 2}: cannot read "${line}"`);
    }
    return point;
  });
  const all = JSON.parse(readFileSync(labels, 'utf8')) as Record<string, [string, string][]>;
  const windows = all[NAB_SERIES];
  if (!windows) throw new Error(`${labels}: no windows for ${NAB_SERIES}`);
  return { points, windows: windows.map(([a, b]) => [utc(a), utc(b)]) };
}

export interface NabScore {
  events: number;
  windowsDetected: number;
  windowsHit: boolean[];
  falsePositives: number;
  falsePositivesPer1000: number;
}

/** Windows with at least one event inside (bounds included), and events outside every window. */
export function scoreEvents(eventTimes: Date[], windows: [Date, Date][], readings: number): NabScore {
  const windowsHit = windows.map(() => false);
  let falsePositives = 0;
  for (const t of eventTimes) {
    const i = windows.findIndex(([a, b]) => t >= a && t <= b);
    if (i >= 0) windowsHit[i] = true;
    else falsePositives++;
  }
  return {
    events: eventTimes.length,
    windowsDetected: windowsHit.filter(Boolean).length,
    windowsHit,
    falsePositives,
    falsePositivesPer1000: (falsePositives / readings) * 1000,
  };
}
