// What an import did: rows read, stored, skipped as duplicates, refused by kind with counts and
// the first few places, printed for the operator at the end (and logged as one line).

const FIRST_PLACES = 5;

export interface RefusalGroup {
  kind: string;
  count: number;
  /** The first FIRST_PLACES places ("line 12"). */
  places: string[];
  /** The first such row's full reason. */
  example: string;
}

export class ImportSummary {
  rowsRead = 0;
  stored = 0;
  duplicates = 0;
  refused = 0;
  /** Rows that passed every check (all of them in a dry run: nothing is written). */
  accepted = 0;
  files = 0;
  readonly started = Date.now();
  private readonly groups = new Map<string, RefusalGroup>();

  constructor(readonly dryRun = false) {}

  refuse(kind: string, where: string, reason: string): void {
    this.refused++;
    let g = this.groups.get(kind);
    if (!g) this.groups.set(kind, (g = { kind, count: 0, places: [], example: reason }));
    g.count++;
    if (g.places.length < FIRST_PLACES) g.places.push(where);
  }

  get refusals(): RefusalGroup[] {
    return [...this.groups.values()].sort((a, b) => b.count - a.count || a.kind.localeCompare(b.kind));
  }

  /** Lines for the terminal. */
  format(): string {
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? Math.round(this.rowsRead / seconds) : this.rowsRead;
    const lines = [
      this.dryRun ? 'Import check (dry run: nothing written)' : 'Import finished',
      `  files read:   ${this.files}`,
      `  rows read:    ${this.rowsRead}  (${seconds.toFixed(1)} s, ${rate} rows/s)`,
      ...(this.dryRun
        ? [`  would store:  ${this.accepted}  (duplicates of stored readings are not checked in a dry run)`]
        : [`  stored:       ${this.stored}`, `  duplicates:   ${this.duplicates}  (already stored: same device, sensor type and time; not stored again)`]),
      `  refused:      ${this.refused}`,
    ];
    for (const g of this.refusals) {
      const more = g.count > g.places.length ? ', …' : '';
      lines.push(`    ${g.kind}: ${g.count} (${g.places.join(', ')}${more})`, `      e.g. ${g.example}`);
    }
    return lines.join('\n') + '\n';
  }

  toJSON() {
    return { dryRun: this.dryRun, files: this.files, rowsRead: this.rowsRead, stored: this.stored, duplicates: this.duplicates,
      accepted: this.accepted, refused: this.refused, refusals: this.refusals, seconds: (Date.now() - this.started) / 1000 };
  }
}
