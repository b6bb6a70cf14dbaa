// The birth certificates on disk (DATA_DIR/sparkplug/births.json), so that after a restart the
// DATA the broker queued for the persistent session can still be read by alias. Written shortly
// after a birth or death (coalesced), and at stop; replaced atomically (write, then rename).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { logger } from '../../lib/log';
import { EdgeNodeStates } from './node-state';

const log = logger('ingest-sparkplug');

export class BirthsFile {
  private timer: NodeJS.Timeout | undefined;
  readonly path: string;

  constructor(dir: string, private readonly states: () => EdgeNodeStates, private readonly delayMs = 200) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, 'births.json');
  }

  /** The saved states, or empty ones when there is no file or it cannot be read (then births are requested as needed). */
  load(): EdgeNodeStates {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return new EdgeNodeStates();
    }
    try {
      return EdgeNodeStates.fromJSON(JSON.parse(text));
    } catch (error) {
      log.warn('saved Sparkplug birth certificates are unreadable; starting without them (rebirths will be requested)', { path: this.path, error });
      return new EdgeNodeStates();
    }
  }

  changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.save(), this.delayMs);
    this.timer.unref();
  }

  save(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    try {
      const tmp = `${this.path}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(this.states().toJSON()));
      renameSync(tmp, this.path);
    } catch (error) {
      log.warn('could not save Sparkplug birth certificates; after a restart rebirths will be requested', { path: this.path, error });
    }
  }
}
