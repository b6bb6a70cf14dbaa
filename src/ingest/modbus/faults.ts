// Fault counting per device: a poll with a failed request is a fault; after `threshold` faults in a
// row one equipment event is raised (ERROR when nothing answered, WARNING when some requests were
// answered and some refused), and the first fully answered poll after it raises one recovery event.
// A fault that heals before the threshold raises nothing: a lost packet is not an incident.

export type FaultKind = 'TIMEOUT' | 'CONNECTION' | 'EXCEPTION';

export interface RequestFailure {
  kind: FaultKind;
  /** The Modbus exception code (1 illegal function, 2 illegal data address, 3 illegal data value, 4 device failure...). */
  exceptionCode?: number;
  /** What was read: `holding:0 x4`. */
  request: string;
  message: string;
}

export interface PollOutcome {
  answered: number;
  failures: RequestFailure[];
}

export interface FaultEvent {
  eventType: 'ERROR' | 'WARNING' | 'STARTUP';
  severity: 'ERROR' | 'WARNING' | 'INFO';
  eventCode: string;
  /** Why, without the device: the caller prefixes it. */
  cause: string;
  metadata: Record<string, unknown>;
}

/** The event code recovery events carry; event type STARTUP (communication started again), severity INFO. */
export const RECOVERY_CODE = 'MODBUS_COMMUNICATION_RESTORED';

const EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function', 2: 'illegal data address', 3: 'illegal data value', 4: 'server device failure',
  5: 'acknowledge', 6: 'server device busy', 10: 'gateway path unavailable', 11: 'gateway target failed to respond',
};

export function exceptionName(code: number | undefined): string {
  return code === undefined ? 'unknown exception' : EXCEPTION_NAMES[code] ?? `exception ${code}`;
}

export function faultCode(f: RequestFailure): string {
  if (f.kind === 'TIMEOUT') return 'MODBUS_TIMEOUT';
  if (f.kind === 'CONNECTION') return 'MODBUS_CONNECTION_FAILED';
  return `MODBUS_EXCEPTION_${String(f.exceptionCode ?? 0).padStart(2, '0')}`;
}

export class FaultTracker {
  consecutive = 0;
  raised = false;
  private since: Date | undefined;

  constructor(public threshold: number) {}

  /** What this poll's outcome raises, if anything. */
  observe(outcome: PollOutcome, at = new Date()): FaultEvent | undefined {
    if (outcome.failures.length === 0) {
      const wasRaised = this.raised;
      const faults = this.consecutive;
      const since = this.since;
      this.consecutive = 0;
      this.raised = false;
      this.since = undefined;
      if (!wasRaised) return undefined;
      return {
        eventType: 'STARTUP', severity: 'INFO', eventCode: RECOVERY_CODE,
        cause: `answers again after ${faults} failed polls since ${since?.toISOString()}`,
        metadata: { failedPolls: faults, since: since?.toISOString() },
      };
    }
    this.consecutive++;
    this.since ??= at;
    if (this.raised || this.consecutive < this.threshold) return undefined;
    this.raised = true;
    // Name the cause that matters most: no connection, then no answer, then refusals.
    const rank: Record<FaultKind, number> = { CONNECTION: 0, TIMEOUT: 1, EXCEPTION: 2 };
    const first = [...outcome.failures].sort((a, b) => rank[a.kind] - rank[b.kind])[0];
    const degraded = outcome.answered > 0;
    const what = first.kind === 'EXCEPTION'
      ? `exception ${first.exceptionCode} (${exceptionName(first.exceptionCode)}) reading ${first.request}`
      : first.kind === 'TIMEOUT' ? `no answer reading ${first.request}: ${first.message}` : `cannot connect: ${first.message}`;
    return {
      eventType: degraded ? 'WARNING' : 'ERROR', severity: degraded ? 'WARNING' : 'ERROR', eventCode: faultCode(first),
      cause: `${what}; ${this.consecutive} failed polls in a row` +
        (degraded ? `, ${outcome.answered} other request(s) still answered` : '') +
        (outcome.failures.length > 1 ? `, ${outcome.failures.length} requests failed in the last poll` : ''),
      metadata: {
        failedPolls: this.consecutive, since: this.since.toISOString(), answeredRequests: outcome.answered,
        failures: outcome.failures.slice(0, 20).map((f) => ({ kind: f.kind, code: faultCode(f), request: f.request, message: f.message })),
      },
    };
  }
}
