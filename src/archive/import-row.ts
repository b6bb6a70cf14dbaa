// One row of an import file, before it is resolved against the registry. Two layouts are read:
//  - the MQTT payload's (README "Sending readings"): deviceId, sensorType, value, unit, timestamp,
//    quality, optionally facility and workCenter (the topic's codes); other columns become metadata;
//  - the archive's own (format.ts), so an export can be restored as it was.

export type RowLayout = 'contract' | 'archive';

export interface ImportRow {
  /** Where the row is, as an operator finds it: "line 12", or "2026/01/02.parquet row 7" among several files. */
  where: string;
  /** 1-based line (CSV: the line the record ends on) or row number (Parquet). */
  line: number;
  layout: RowLayout;
  facility?: string;
  workCenter?: string;
  deviceCode?: string;
  /** The archive's iot_device_id (a uuid of the database it came from). */
  deviceUuid?: string;
  sensorType?: string;
  /** As read: text from CSV, a number from Parquet. */
  value?: string | number;
  unit?: string;
  timestamp?: string | number | Date;
  quality?: string;
  /** Archive layout: its metadata column (JSON text); contract layout: the extra columns. */
  metadata?: string | Record<string, string>;
  /** The tenant the file says it belongs to (Parquet key-value metadata, or the archive path). */
  tenantHint?: string;
}

/** A row the file itself made unreadable (bad quoting, wrong cell count). */
export interface UnreadableRow {
  where: string;
  line: number;
  reason: string;
}

export type SourceItem = { row: ImportRow } | { unreadable: UnreadableRow };

/** Contract column names (any case, with or without underscores) -> field. */
const CONTRACT_NAMES: Record<string, keyof ImportRow> = {
  facility: 'facility', facilitycode: 'facility',
  workcenter: 'workCenter', workcentercode: 'workCenter',
  deviceid: 'deviceCode', devicecode: 'deviceCode',
  sensortype: 'sensorType', value: 'value', unit: 'unit', timestamp: 'timestamp', quality: 'quality',
};
const ARCHIVE_NAMES: Record<string, keyof ImportRow> = {
  reading_timestamp: 'timestamp', iot_device_id: 'deviceUuid', device_code: 'deviceCode', sensor_type: 'sensorType',
  reading_value: 'value', unit_of_measure: 'unit', quality: 'quality', metadata: 'metadata',
};

export interface HeaderPlan {
  layout: RowLayout;
  /** Per column: the field it fills, or the metadata key it becomes (contract layout), or null (ignored). */
  columns: ({ field: keyof ImportRow } | { extra: string } | null)[];
}

/** Reads the header row; throws with the reason when it cannot be an import file. */
export function planHeader(header: string[]): HeaderPlan {
  const names = header.map((h) => h.trim());
  const archive = names.includes('reading_timestamp') && names.includes('reading_value');
  const seen = new Set<string>();
  const columns = names.map((name, i) => {
    if (name === '') throw new Error(`the header row has an empty column name (column ${i + 1})`);
    if (seen.has(name.toLowerCase())) throw new Error(`column ${JSON.stringify(name)} appears twice in the header row`);
    seen.add(name.toLowerCase());
    if (archive) {
      // production_run_id is recomputed on import (the run active at that time in this database).
      if (name === 'production_run_id') return null;
      const field = ARCHIVE_NAMES[name];
      return field ? { field } : null;
    }
    const field = CONTRACT_NAMES[name.toLowerCase().replace(/[_\s-]/g, '')];
    return field ? { field } : { extra: name };
  });
  const fields = new Set(columns.flatMap((c) => (c && 'field' in c ? [c.field] : [])));
  const required: (keyof ImportRow)[] = archive ? ['deviceCode', 'sensorType', 'value', 'timestamp'] : ['sensorType', 'value', 'timestamp'];
  for (const f of required) {
    if (!fields.has(f)) {
      throw new Error(`the header row has no ${f} column (columns: facility, workCenter, deviceId, sensorType, value, unit, ` +
        'timestamp, quality; or the archive\'s reading_timestamp, iot_device_id, device_code, sensor_type, reading_value, ...)');
    }
  }
  if (!archive && !fields.has('deviceCode') && !(fields.has('facility') && fields.has('workCenter'))) {
    throw new Error('the header row needs a deviceId column, or facility and workCenter columns (a work center with one channel of the type)');
  }
  return { layout: archive ? 'archive' : 'contract', columns };
}

/** A record's cells as an ImportRow by the header's plan; empty cells are fields not given. */
export function rowOf(plan: HeaderPlan, cells: unknown[], where: string, line: number, tenantHint?: string): ImportRow {
  const row: ImportRow = { where, line, layout: plan.layout, tenantHint };
  const extra: Record<string, string> = {};
  plan.columns.forEach((c, i) => {
    let v = cells[i];
    if (v === undefined || v === null || c === null) return;
    if (typeof v === 'string') {
      v = v.trim();
      if (v === '') return;
    }
    if ('extra' in c) {
      // defineProperty: a column named "__proto__" is data.
      Object.defineProperty(extra, c.extra, { value: String(v), enumerable: true, writable: true, configurable: true });
    } else {
      (row as unknown as Record<string, unknown>)[c.field] = v;
    }
  });
  if (plan.layout === 'contract' && Object.keys(extra).length) row.metadata = extra;
  return row;
}
