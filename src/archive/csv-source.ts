// Streams an import CSV (header row first) record by record with csv-parse: a file of any size is
// read in constant memory. A record the parser cannot read (bad quoting, another number of cells
// than the header) is reported as unreadable with its line, and reading goes on.
import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import type { Readable } from 'node:stream';
import { HeaderPlan, SourceItem, planHeader, rowOf } from './import-row';

export class ImportFileError extends Error {}

export async function* csvRows(input: Readable | string, label: string | undefined, tenantHint?: string): AsyncGenerator<SourceItem> {
  const skipped: SourceItem[] = [];
  const where = (line: number) => (label ? `${label} line ${line}` : `line ${line}`);
  const parser = parse({
    bom: true,
    info: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    on_skip: (err) => {
      const e = err as { lines?: number; message?: string } | undefined;
      const line = e?.lines ?? 0;
      const reason = (e?.message ?? 'unreadable record').replace(/^Invalid (Record Length|Opening Quote|Closing Quote)?:?\s*/, '');
      skipped.push({ unreadable: { where: where(line), line, reason: `not readable as CSV: ${reason}` } });
      return undefined;
    },
  });
  const source = typeof input === 'string' ? createReadStream(input) : input;
  source.on('error', (error: Error) => parser.destroy(error));
  source.pipe(parser);
  let plan: HeaderPlan | undefined;
  for await (const item of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    while (skipped.length) yield skipped.shift()!;
    if (!plan) {
      try {
        plan = planHeader(item.record);
      } catch (error) {
        throw new ImportFileError(`${label ?? 'the file'} is not an import CSV: ${(error as Error).message}`);
      }
      continue;
    }
    yield { row: rowOf(plan, item.record, where(item.info.lines), item.info.lines, tenantHint) };
  }
  while (skipped.length) yield skipped.shift()!;
  if (!plan) throw new ImportFileError(`${label ?? 'the file'} is empty: an import CSV needs a header row`);
}
