// What `iot import <source>` reads: a CSV or Parquet file, a folder of them (an exported archive,
// read recursively in path order: oldest day first), or the same in an S3-compatible bucket
// (s3://bucket/key or s3://bucket/prefix/), each object downloaded to a temporary file first.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { ImportFileError } from './csv-source';
import { tenantOfPath } from './format';
import { S3Settings, downloadFile, isS3Url, listKeys, parseS3Url, s3Client } from './s3';

export interface ImportFile {
  /** As the operator knows it (a path, or an s3:// URL). */
  label: string;
  kind: 'csv' | 'parquet';
  tenantHint?: string;
  /** A local path to read (downloaded first for S3). */
  open(): Promise<string>;
  /** Removes what open() downloaded. */
  done(): Promise<void>;
}

const kindOf = (name: string): ImportFile['kind'] | undefined =>
  /\.csv$/i.test(name) ? 'csv' : /\.parquet$/i.test(name) ? 'parquet' : undefined;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else if (entry.isFile() && kindOf(entry.name)) out.push(path);
  }
  return out;
}

export async function importFiles(source: string, env: S3Settings = process.env): Promise<{ files: ImportFile[]; close(): Promise<void> }> {
  if (isS3Url(source)) {
    const { bucket, prefix } = parseS3Url(source);
    const client = s3Client(env);
    const single = kindOf(prefix) ? [prefix] : [];
    const keys = single.length ? single : (await listKeys(client, bucket, prefix ? `${prefix}/` : '')).filter((k) => kindOf(k));
    if (!keys.length) throw new ImportFileError(`${source} holds no .csv or .parquet objects`);
    const scratch = await mkdtemp(join(tmpdir(), 'iot-import-'));
    const files = keys.map((key, i): ImportFile => {
      const local = join(scratch, `${i}.${kindOf(key)}`);
      return {
        label: `s3://${bucket}/${key}`, kind: kindOf(key)!, tenantHint: tenantOfPath(key),
        async open() {
          await downloadFile(client, bucket, key, local);
          return local;
        },
        done: () => rm(local, { force: true }),
      };
    });
    return { files, async close() { await rm(scratch, { recursive: true, force: true }); client.destroy(); } };
  }
  const path = resolve(source);
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new ImportFileError(`${source} does not exist`);
  const paths = info.isDirectory() ? (await walk(path)).sort() : [path];
  if (!paths.length) throw new ImportFileError(`${source} holds no .csv or .parquet files`);
  const files = paths.map((p): ImportFile => ({
    label: info.isDirectory() ? relative(path, p) : source,
    // A single file of another name is read as CSV (the MQTT payload's columns).
    kind: kindOf(p) ?? 'csv',
    tenantHint: tenantOfPath(p),
    open: async () => p,
    done: async () => undefined,
  }));
  return { files, close: async () => undefined };
}
