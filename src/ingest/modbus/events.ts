// Writes the poller's equipment events through iot.record_equipment_event (sql/300), one at a time
// in order. While the database is down they wait in a bounded queue and are retried, so a fault
// and its recovery reach the database in the order they happened.
import type { Pool } from 'pg';
import { logger } from '../../lib/log';
import { isConnectionError } from '../sink';

const log = logger('ingest-modbus');

export interface EquipmentEvent {
  workCenterId: string;
  deviceId: string;
  eventType: string;
  severity: string;
  eventCode: string;
  description: string;
  metadata: Record<string, unknown>;
}

const QUEUE_MAX = 1000;

export class EventRecorder {
  private queue: EquipmentEvent[] = [];
  private writing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  written = 0;
  dropped = 0;

  constructor(private readonly pool: Pool, private readonly retryMs = 2000) {}

  record(event: EquipmentEvent): void {
    if (this.queue.length >= QUEUE_MAX) {
      this.dropped++;
      log.error('equipment event queue full while the database is unreachable; event not recorded',
        { eventCode: event.eventCode, description: event.description });
      return;
    }
    this.queue.push(event);
    this.kick();
  }

  private kick(): void {
    if (this.writing || this.retryTimer || !this.queue.length) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if (this.queue.length && !this.retryTimer) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const e = this.queue[0];
      try {
        await this.pool.query('select iot.record_equipment_event($1, $2, $3, $4, $5, $6, $7)',
          [e.workCenterId, e.eventType, e.description, e.severity, JSON.stringify(e.metadata), e.eventCode, e.deviceId]);
        this.queue.shift();
        this.written++;
      } catch (error) {
        if (!isConnectionError(error)) {
          // The database refuses this event itself (device removed meanwhile...): say so and move on.
          this.queue.shift();
          this.dropped++;
          log.error('equipment event refused by the database', { eventCode: e.eventCode, description: e.description, error });
          continue;
        }
        log.warn('cannot record equipment event yet (database unreachable); retrying', { queued: this.queue.length, error });
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.kick();
        }, this.retryMs);
        this.retryTimer.unref();
        return;
      }
    }
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Writes what is queued, waiting at most `deadlineMs`. */
  async flush(deadlineMs = 5000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while ((this.queue.length || this.writing) && Date.now() < deadline) {
      if (this.retryTimer && this.queue.length) {
        // Retry now rather than at the timer, but not in a tight loop while the database is down.
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        this.kick();
      }
      await (this.writing ?? Promise.resolve());
      if (this.queue.length) await new Promise((r) => setTimeout(r, 200));
    }
    if (this.queue.length) log.error('equipment events not recorded at shutdown', { count: this.queue.length });
  }

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }
}
