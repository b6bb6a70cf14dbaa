// REST ingest bodies: JSON (one reading object, an array of them, or {"readings": [...]}) or CSV
// with a header row naming the MQTT payload's fields (deviceId, sensorType, value, unit, timestamp,
// quality; other columns become metadata). A body that cannot be read as a whole is a BodyError
// (HTTP 400) naming the line; a row that is wrong on its own is one refused item, the rest are kept.

/** One reading as sent: its fields, where it was in the body, or why it cannot even be read as one. */
export interface BodyItem {
  fields?: Record<string, unknown>;
  /** 1-based line of the body where the item starts (CSV rows; JSON when the body is one line per reading). */
  line?: number;
  /** Set when the item is wrong on its own (a CSV row with too many cells): it is refused, the others are kept. */
  problem?: string;
  /** The item as sent, for its dead letter (made only when asked: most items never need it). */
  readonly text: string;
}

export class BodyError extends Error {
  constructor(message: string, readonly line?: number, readonly column?: number) {
    super(message);
  }
}

export type BodyKind = 'json' | 'csv';

/** The kind a Content-Type names, or undefined (HTTP 415). */
export function bodyKind(contentType: string | undefined): BodyKind | undefined {
  const type = (contentType ?? '').split(';', 1)[0].trim().toLowerCase();
  if (type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type)) return 'json';
  if (type === 'text/csv' || type === 'application/csv') return 'csv';
  return undefined;
}

/** Line and column (1-based) of a character offset. */
function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

const clip = (text: string, max = 4096) => (text.length > max ? text.slice(0, max) + '…' : text);

export function parseJsonBody(text: string): BodyItem[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const at = /position (\d+)/.exec(message);
    if (at) {
      const { line, column } = position(text, Number(at[1]));
      throw new BodyError(`body is not valid JSON: ${message} (line ${line}, column ${column})`, line, column);
    }
    throw new BodyError(`body is not valid JSON: ${message}`);
  }
  let items: unknown[];
  if (Array.isArray(body)) items = body;
  else if (body && typeof body === 'object' && Array.isArray((body as { readings?: unknown }).readings)) {
    items = (body as { readings: unknown[] }).readings;
  } else if (body && typeof body === 'object' && 'readings' in body) {
    throw new BodyError('body field "readings" must be an array of readings');
  } else items = [body];
  // One reading per line (the usual way to write a batch by hand or from a gateway): name its line too.
  const lines = text.split('\n');
  const oneLineEach = lines.filter((l) => l.trim().startsWith('{')).length === items.length;
  let line = 0;
  return items.map((item) => {
    let where: number | undefined;
    if (oneLineEach) {
      while (line < lines.length && !lines[line].trim().startsWith('{')) line++;
      where = ++line;
    }
    const printed = {
      get text() {
        try {
          return clip(JSON.stringify(item) ?? String(item));
        } catch {
          return '(an item nested too deeply to print)';
        }
      },
    };
    if (!item || typeof item !== 'object' || Array.isArray(item)) {
      return Object.assign(printed, { line: where, problem: 'reading must be a JSON object' });
    }
    return Object.assign(printed, { fields: item as Record<string, unknown>, line: where });
  });
}

/** RFC 4180 rows: quoted cells may hold commas, quotes ("") and line breaks. Each row with the line it starts on. */
function csvRows(text: string): { cells: string[]; line: number }[] {
  const rows: { cells: string[]; line: number }[] = [];
  let cells: string[] = [];
  let cell = '';
  let line = 1;
  let rowLine = 1;
  let i = 0;
  let quotedCell = false;
  const endCell = () => {
    cells.push(cell);
    cell = '';
    quotedCell = false;
  };
  const endRow = () => {
    endCell();
    // A blank line is no row (a trailing newline, a gap between blocks).
    if (!(cells.length === 1 && cells[0].trim() === '')) rows.push({ cells, line: rowLine });
    cells = [];
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '"' && cell.trim() === '' && !quotedCell) {
      const startLine = line;
      cell = '';
      quotedCell = true;
      i++;
      for (;;) {
        if (i >= text.length) throw new BodyError(`body is not valid CSV: a quoted cell opened on line ${startLine} is never closed`, startLine);
        const q = text[i];
        if (q === '"') {
          if (text[i + 1] === '"') {
            cell += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q === '\n') line++;
        cell += q;
        i++;
      }
      const after = text[i];
      if (after !== undefined && after !== ',' && after !== '\n' && after !== '\r') {
        throw new BodyError(`body is not valid CSV: text after the closing quote on line ${line}`, line);
      }
      continue;
    }
    if (c === ',') endCell();
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else if (quotedCell) throw new BodyError(`body is not valid CSV: text after the closing quote on line ${line}`, line);
    else cell += c;
    i++;
  }
  if (cell !== '' || cells.length) endRow();
  return rows;
}

const CSV_FIELDS = ['deviceId', 'sensorType', 'value', 'unit', 'timestamp', 'quality'];
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

export function parseCsvBody(text: string): BodyItem[] {
  const rows = csvRows(text.replace(/^\ufeff/, ''));
  if (!rows.length) throw new BodyError('body is empty: CSV needs a header row and at least one reading');
  const [header, ...data] = rows;
  // Header names match the payload's fields in any case (SensorType, sensor_type is not one of them).
  const names = header.cells.map((h) => {
    const trimmed = h.trim();
    return CSV_FIELDS.find((f) => f.toLowerCase() === trimmed.toLowerCase()) ?? trimmed;
  });
  const seen = new Set<string>();
  for (const n of names) {
    if (n === '') throw new BodyError('body is not valid CSV for readings: the header row (line 1) has an empty column name', header.line);
    if (seen.has(n)) throw new BodyError(`body is not valid CSV for readings: column ${JSON.stringify(n)} appears twice in the header row`, header.line);
    seen.add(n);
  }
  for (const required of ['sensorType', 'value']) {
    if (!seen.has(required)) {
      throw new BodyError(`body is not valid CSV for readings: the header row (line ${header.line}) has no ${required} column ` +
        `(columns: ${CSV_FIELDS.join(', ')}; others become metadata)`, header.line);
    }
  }
  return data.map(({ cells, line }) => {
    const printed = { get text() { return clip(cells.map((c) => (/[",\n\r]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(',')); } };
    if (cells.length > names.length) {
      return Object.assign(printed, { line, problem: `line ${line} has ${cells.length} cells, more than the ${names.length} columns of the header row` });
    }
    const fields: Record<string, unknown> = {};
    names.forEach((name, i) => {
      const raw = cells[i];
      if (raw === undefined || raw.trim() === '') return; // an empty cell is a field not given
      const cell = raw.trim();
      // Numbers in the number columns are numbers; every other cell is text (as a JSON string would be).
      const value = (name === 'value' || name === 'timestamp') && NUMBER.test(cell) ? Number(cell) : cell;
      // defineProperty: a column named "__proto__" is kept as data, as JSON.parse keeps such a key.
      Object.defineProperty(fields, name, { value, enumerable: true, writable: true, configurable: true });
    });
    return Object.assign(printed, { fields, line });
  });
}
