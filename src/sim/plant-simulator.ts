// Simulated sensors: slow drift, noise, a running counter, the occasional transient fault
// (overheating, bearing vibration, pressure loss, or a stopped machine) that lasts a few minutes,
// and, when asked, degradations with ground truth: a work center wears from a known instant, fails
// at a known instant, is down for repair, then runs as new (test/eval/predictive-fp.test.ts).
import { DEMO_FACILITIES, DemoFacility } from './demo-plant';

export interface SimReading {
  topic: string;
  payload: { deviceId: string; sensorType: string; value: number; unit: string; timestamp: string; quality: string };
}

type Fault = 'OVERHEAT' | 'VIBRATION' | 'PRESSURE_LOSS' | 'STOPPED';

/** How a degrading machine shows it (the failure modes sql/540 names from the worst channel). */
export type FailureMode = 'BEARING_WEAR' | 'OVERHEATING' | 'PRESSURE_DEVIATION';

/** Ground truth of one failure: `${facility}/${workCenter}` wears from startsAt, fails at failsAt, is repaired after repairHours. */
export interface Degradation {
  workCenter: string;
  mode: FailureMode;
  startsAt: Date;
  failsAt: Date;
  repairHours: number;
}

export type Condition =
  | { state: 'HEALTHY' }
  | { state: 'DEGRADING'; wear: number; degradation: Degradation }
  | { state: 'FAILED'; degradation: Degradation };

export interface SimulatorOptions {
  /** Transient faults per work center per second of simulated time. */
  faultRate?: number;
  /** How long a transient fault lasts, in minutes [min, max]. */
  faultMinutes?: [number, number];
  random?: () => number;
  degradations?: Degradation[];
}

interface WorkCenterState {
  drift: number;
  count: number;
  fault?: { kind: Fault; until: number };
}

/**
 * Wear w (0 at the start of a degradation, 1 at failure) rises as ((t - start) / (fail - start))^1.5:
 * slow at first, faster towards the end, as wear does. At w it adds, on top of normal operation:
 *   BEARING_WEAR        vibration +4.5 w mm/s (its noise x (1 + 2 w), impacts of +3 mm/s on 2 w % of
 *                       readings), temperature +8 w °F
 *   OVERHEATING         temperature +22 w °F, vibration +0.8 w mm/s
 *   PRESSURE_DEVIATION  pressure -40 w PSI (noise x (1 + 2 w)), temperature +4 w °F
 * A failed machine is stopped (speed 0, counter still, vibration near 0, a little cooler).
 */
export const WEAR_EXPONENT = 1.5;

export class PlantSimulator {
  private states = new Map<string, WorkCenterState>();
  private readonly faultRate: number;
  private readonly faultMinutes: [number, number];
  private readonly random: () => number;
  private readonly degradations: Degradation[];

  constructor(private readonly facilities: DemoFacility[] = DEMO_FACILITIES, options: SimulatorOptions | number = {},
              random?: () => number) {
    const o: SimulatorOptions = typeof options === 'number' ? { faultRate: options, random } : options;
    this.faultRate = o.faultRate ?? 1 / 1800; // one transient fault per work center per half hour
    this.faultMinutes = o.faultMinutes ?? [1, 2.5];
    this.random = o.random ?? Math.random;
    this.degradations = [...(o.degradations ?? [])].sort((a, b) => a.startsAt.getTime() - b.startsAt.getTime());
    for (const f of facilities) for (const w of f.workCenters) this.states.set(`${f.code}/${w.code}`, { drift: 0, count: 0 });
    for (const d of this.degradations) {
      if (!this.states.has(d.workCenter)) throw new Error(`degradation of unknown work center ${d.workCenter}`);
      if (!(d.failsAt > d.startsAt) || !(d.repairHours >= 0)) throw new Error(`degradation of ${d.workCenter}: failsAt must follow startsAt`);
    }
  }

  /** The ground truth of a work center (`${facility}/${code}`) at an instant. */
  condition(workCenter: string, at: Date): Condition {
    const t = at.getTime();
    for (const d of this.degradations) {
      if (d.workCenter !== workCenter) continue;
      const start = d.startsAt.getTime();
      const fail = d.failsAt.getTime();
      if (t >= start && t < fail) return { state: 'DEGRADING', wear: ((t - start) / (fail - start)) ** WEAR_EXPONENT, degradation: d };
      if (t >= fail && t < fail + d.repairHours * 3600_000) return { state: 'FAILED', degradation: d };
    }
    return { state: 'HEALTHY' };
  }

  private gauss(): number {
    return Math.sqrt(-2 * Math.log(this.random() || 1e-12)) * Math.cos(2 * Math.PI * this.random());
  }

  /** One reading per channel for this tick. */
  tick(now: Date, intervalSeconds: number): SimReading[] {
    const out: SimReading[] = [];
    for (const f of this.facilities) for (const w of f.workCenters) {
      const key = `${f.code}/${w.code}`;
      const s = this.states.get(key)!;
      const c0 = this.condition(key, now);
      const wear = c0.state === 'DEGRADING' ? c0.wear : 0;
      const mode = c0.state === 'DEGRADING' ? c0.degradation.mode : undefined;
      const failed = c0.state === 'FAILED';
      if (s.fault && s.fault.until <= now.getTime()) s.fault = undefined;
      if (!s.fault && !failed && this.random() < this.faultRate * intervalSeconds) {
        const kinds: Fault[] = ['OVERHEAT', 'VIBRATION', 'PRESSURE_LOSS', 'STOPPED'];
        const [lo, hi] = this.faultMinutes;
        s.fault = { kind: kinds[Math.floor(this.random() * kinds.length)], until: now.getTime() + (lo + this.random() * (hi - lo)) * 60_000 };
      }
      s.drift = Math.max(-1, Math.min(1, s.drift + this.gauss() * 0.02));
      const stopped = failed || s.fault?.kind === 'STOPPED';
      for (const d of w.devices) for (const c of d.channels) {
        let value: number;
        switch (c.sensorType) {
          case 'TEMPERATURE':
            value = c.base + s.drift * 2 + this.gauss() * c.noise + (s.fault?.kind === 'OVERHEAT' ? 12 : 0) - (stopped ? 3 : 0)
              + (mode === 'BEARING_WEAR' ? 8 * wear : mode === 'OVERHEATING' ? 22 * wear : mode === 'PRESSURE_DEVIATION' ? 4 * wear : 0);
            break;
          case 'VIBRATION': {
            const impact = mode === 'BEARING_WEAR' && this.random() < 0.02 * wear ? 3 : 0;
            const noise = this.gauss() * c.noise * (mode === 'BEARING_WEAR' ? 1 + 2 * wear : 1);
            value = Math.max(0, c.base + noise + (s.fault?.kind === 'VIBRATION' ? 3 : 0) + impact
              + (mode === 'BEARING_WEAR' ? 4.5 * wear : mode === 'OVERHEATING' ? 0.8 * wear : 0)) * (stopped ? 0.05 : 1);
            break;
          }
          case 'PRESSURE':
            value = c.base + s.drift * 3 + this.gauss() * c.noise * (mode === 'PRESSURE_DEVIATION' ? 1 + 2 * wear : 1)
              - (s.fault?.kind === 'PRESSURE_LOSS' ? 30 : 0) - (mode === 'PRESSURE_DEVIATION' ? 40 * wear : 0);
            break;
          case 'SPEED':
            value = stopped ? 0 : Math.max(0, c.base + this.gauss() * c.noise);
            break;
          case 'COUNT': {
            const speed = stopped ? 0 : w.idealCycleTimeSeconds > 0 ? 1 / w.idealCycleTimeSeconds : 0;
            s.count += Math.round(speed * intervalSeconds * (0.9 + this.random() * 0.1));
            value = s.count;
            break;
          }
          default:
            value = c.base + this.gauss() * c.noise;
        }
        out.push({
          topic: `facility/${f.code}/workcenter/${w.code}/sensor/${c.sensorType}`,
          payload: {
            deviceId: d.deviceCode, sensorType: c.sensorType, value: Math.round(value * 1000) / 1000, unit: c.unit,
            timestamp: now.toISOString(), quality: 'GOOD',
          },
        });
      }
    }
    return out;
  }
}
