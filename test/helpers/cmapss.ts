// NASA C-MAPSS turbofan run-to-failure data, subset FD001, kept in shared/datasets/cmapss beside this
// repository: train_FD001.txt (engines run to failure), test_FD001.txt (engines cut short) and
// RUL_FD001.txt (true remaining cycles of each test engine at its last cycle). Space-separated, no
// header: unit, cycle, 3 operational settings, 21 sensors. Plus the scoring used by test/eval/cmapss.test.ts.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The sensors that carry the degradation in FD001 (the others are constant or near it). */
export const FD001_SENSORS = [2, 3, 4, 7, 11, 12, 15, 17, 20, 21] as const;

/** Units from the C-MAPSS documentation (Saxena et al., 2008), for the channels. */
export const SENSOR_INFO: Record<number, { name: string; unit: string }> = {
  2: { name: 'T24 total temperature at LPC outlet', unit: '°R' },
  3: { name: 'T30 total temperature at HPC outlet', unit: '°R' },
  4: { name: 'T50 total temperature at LPT outlet', unit: '°R' },
  7: { name: 'P30 total pressure at HPC outlet', unit: 'psia' },
  11: { name: 'Ps30 static pressure at HPC outlet', unit: 'psia' },
  12: { name: 'phi ratio of fuel flow to Ps30', unit: 'pps/psi' },
  15: { name: 'BPR bypass ratio', unit: 'ratio' },
  17: { name: 'htBleed bleed enthalpy', unit: 'count' },
  20: { name: 'W31 HPT coolant bleed', unit: 'lbm/s' },
  21: { name: 'W32 LPT coolant bleed', unit: 'lbm/s' },
};

/** Upper case, as every sensor type is (the contract's spelling). */
export const sensorType = (s: number) => `CMAPSS_S${s}`;

export interface Engine {
  unit: number;
  /** cycles[i] is the cycle number of row i (1, 2, ...). */
  cycles: number[];
  /** sensors[s][i]: sensor s (1-based, 1..21) at row i. */
  sensors: Record<number, number[]>;
}

export interface Cmapss {
  train: Engine[];
  test: Engine[];
  /** True RUL of test engine i+1 at its last cycle. */
  rul: number[];
}

export function datasetsDir(): string {
  return process.env.CMAPSS_DATASETS_DIR ?? join(__dirname, '../../../shared/datasets');
}

function readEngines(file: string): Engine[] {
  const engines = new Map<number, Engine>();
  readFileSync(file, 'utf8').split(/\r?\n/).forEach((line, n) => {
    if (line.trim() === '') return;
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length !== 26 || f.some((v) => !Number.isFinite(v))) throw new Error(`${file} line ${n + 1}: expected 26 numbers, got "${line}"`);
    const unit = f[0];
    let e = engines.get(unit);
    if (!e) engines.set(unit, (e = { unit, cycles: [], sensors: {} }));
    e.cycles.push(f[1]);
    for (let s = 1; s <= 21; s++) (e.sensors[s] ??= []).push(f[4 + s]);
  });
  return [...engines.values()].sort((a, b) => a.unit - b.unit);
}

/** Loads FD001, or returns a reason why it cannot. */
export function loadCmapss(dir = join(datasetsDir(), 'cmapss')): Cmapss | { missing: string } {
  const files = ['train_FD001.txt', 'test_FD001.txt', 'RUL_FD001.txt'].map((f) => join(dir, f));
  for (const f of files) if (!existsSync(f)) return { missing: `${f} not found` };
  const rul = readFileSync(files[2], 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '').map(Number);
  const data = { train: readEngines(files[0]), test: readEngines(files[1]), rul };
  if (data.test.length !== rul.length) throw new Error(`${files[2]}: ${rul.length} values for ${data.test.length} test engines`);
  return data;
}

/** The PHM08 / NASA scoring function: late predictions (pred > true) cost more. d = pred - true. */
export function nasaScore(pred: number[], truth: number[]): number {
  return pred.reduce((sum, p, i) => {
    const d = p - truth[i];
    return sum + (d < 0 ? Math.exp(-d / 13) - 1 : Math.exp(d / 10) - 1);
  }, 0);
}

export function rmse(pred: number[], truth: number[]): number {
  return Math.sqrt(pred.reduce((s, p, i) => s + (p - truth[i]) ** 2, 0) / pred.length);
}

/** Share of cases whose truth lies in [lower, upper]; a missing lower bound is 0, a missing upper bound is unbounded. */
export function coverage(truth: number[], lower: (number | null)[], upper: (number | null)[]): number {
  const inside = truth.filter((t, i) => (lower[i] ?? 0) <= t && t <= (upper[i] ?? Infinity)).length;
  return inside / truth.length;
}
