// Reads a Parquet file written by `iot export` row by row (the reader loads one row group at a
// time: 10,000 rows as the exporter writes them).
import { ParquetReader } from '@dsnp/parquetjs';
import { ARCHIVE_COLUMNS, PARQUET_TENANT_KEY } from './format';
import { ImportFileError } from './csv-source';
import { SourceItem, planHeader, rowOf } from './import-row';

export async function* parquetRows(file: string, label: string | undefined, tenantHint?: string): AsyncGenerator<SourceItem> {
  let reader: ParquetReader;
  try {
    reader = await ParquetReader.openFile(file);
  } catch (error) {
    throw new ImportFileError(`${label ?? file} is not a readable Parquet file: ${(error as Error).message}`);
  }
  try {
    const names = Object.keys(reader.getSchema().fields);
    let plan;
    try {
      plan = planHeader(names);
    } catch (error) {
      throw new ImportFileError(`${label ?? file} is not an archive Parquet file (${ARCHIVE_COLUMNS.join(', ')}): ${(error as Error).message}`);
    }
    const tenant = String(reader.getMetadata()[PARQUET_TENANT_KEY] ?? '') || tenantHint;
    const cursor = reader.getCursor();
    let n = 0;
    for (let record = await cursor.next(); record; record = await cursor.next()) {
      n++;
      const r = record as Record<string, unknown>;
      yield { row: rowOf(plan, names.map((k) => r[k]), label ? `${label} row ${n}` : `row ${n}`, n, tenant) };
    }
  } finally {
    await reader.close();
  }
}
