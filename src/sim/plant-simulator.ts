// Simulated sensors: slow drift, noise, a running counter, and the occasional fault (overheating,
// bearing vibration, pressure loss, or a stopped machine) that lasts a minute or two.
import { DEMO_FACILITIES, DemoFacility } from './demo-plant';

export interface SimReading {
  topic: string;
  payload: { deviceId: string; sensorType: string; value: number; unit: string; timestamp: string; quality: string };
}

type Fault = 'OVERHEAT' | 'VIBRATION' | 'PRESSURE_LOSS' | 'STOPPED';

interface WorkCenterState {
  facility: string;
  code: string;
  drift: number;
  count: number;
  fault?: { kind: Fault; until: number };
}

export class PlantSimulator {
  private states = new Map<string, WorkCenterState>();

  constructor(private readonly facilities: DemoFacility[] = DEMO_FACILITIES, private readonly faultRate = 0.002,
              private readonly random: () => number = Math.random) {
    for (const f of facilities) for (const w of f.workCenters) {
      this.states.set(`${f.code}/${w.code}`, { facility: f.code, code: w.code, drift: 0, count: 0 });
    }
  }

  private gauss(): number {
    return Math.sqrt(-2 * Math.log(this.random() || 1e-12)) * Math.cos(2 * Math.PI * this.random());
  }

  /** One reading per channel for this tick. */
  tick(now: Date, intervalSeconds: number): SimReading[] {
    const out: SimReading[] = [];
    for (const f of this.facilities) for (const w of f.workCenters) {
      const s = this.states.get(`${f.code}/${w.code}`)!;
      if (s.fault && s.fault.until <= now.getTime()) s.fault = undefined;
      if (!s.fault && this.random() < this.faultRate * intervalSeconds) {
        const kinds: Fault[] = ['OVERHEAT', 'VIBRATION', 'PRESSURE_LOSS', 'STOPPED'];
        s.fault = { kind: kinds[Math.floor(this.random() * kinds.length)], until: now.getTime() + (60 + this.random() * 90) * 1000 };
      }
      s.drift = Math.max(-1, Math.min(1, s.drift + this.gauss() * 0.02));
      for (const d of w.devices) for (const c of d.channels) {
        let value: number;
        const stopped = s.fault?.kind === 'STOPPED';
        switch (c.sensorType) {
          case 'temperature':
            value = c.base + s.drift * 2 + this.gauss() * c.noise + (s.fault?.kind === 'OVERHEAT' ? 12 : 0) - (stopped ? 3 : 0);
            break;
          case 'vibration':
            value = Math.max(0, c.base + this.gauss() * c.noise + (s.fault?.kind === 'VIBRATION' ? 3 : 0)) * (stopped ? 0.05 : 1);
            break;
          case 'pressure':
            value = c.base + s.drift * 3 + this.gauss() * c.noise - (s.fault?.kind === 'PRESSURE_LOSS' ? 30 : 0);
            break;
          case 'speed':
            value = stopped ? 0 : Math.max(0, c.base + this.gauss() * c.noise);
            break;
          case 'count': {
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
