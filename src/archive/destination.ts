// Where an export's day files go: a local folder (written in place) or an S3-compatible bucket
// (each file written to a temporary folder first, uploaded, then removed).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { ArchiveFormat } from './format';
import { S3Settings, isS3Url, joinKey, parseS3Url, s3Client, uploadFile } from './s3';

export interface Destination {
  /** Human-readable place of a relative path (for logs and the summary). */
  describe(relative: string): string;
  /** Local path to write `relative` to. */
  localPath(relative: string): Promise<string>;
  /** Called once the local file is complete. */
  commit(relative: string, format: ArchiveFormat): Promise<void>;
  close(): Promise<void>;
}

export function folderDestination(root: string): Destination {
  const base = resolve(root);
  return {
    describe: (relative) => join(base, relative),
    async localPath(relative) {
      const path = join(base, relative);
      await mkdir(dirname(path), { recursive: true });
      return path;
    },
    async commit() {},
    async close() {},
  };
}

export async function s3Destination(url: string, env: S3Settings = process.env, client: S3Client = s3Client(env)): Promise<Destination> {
  const { bucket, prefix } = parseS3Url(url);
  const scratch = await mkdtemp(join(tmpdir(), 'iot-export-'));
  const local = (relative: string) => join(scratch, relative.replace(/[/\\]/g, '_'));
  return {
    describe: (relative) => `s3://${bucket}/${joinKey(prefix, relative)}`,
    localPath: async (relative) => local(relative),
    async commit(relative, format) {
      const file = local(relative);
      try {
        await uploadFile(client, bucket, joinKey(prefix, relative), file, format === 'csv' ? 'text/csv' : 'application/vnd.apache.parquet');
      } finally {
        await rm(file, { force: true });
      }
    },
    async close() {
      await rm(scratch, { recursive: true, force: true });
      client.destroy();
    },
  };
}

/** A folder path or an s3:// URL. */
export function openDestination(target: string, env: S3Settings = process.env): Promise<Destination> {
  return isS3Url(target) ? s3Destination(target, env) : Promise.resolve(folderDestination(target));
}
