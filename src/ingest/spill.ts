// What the sink could not write before shutdown, kept in a local file that the next start replays.
//  - One file per shutdown, `spill-<time>-<pid>-<random>.ndjson` in the spill folder (DATA_DIR/
//    ingest-spill): a header line, then one JSON line per dead letter ({"d": ...}) and per reading
//    ({"r": [epoch ms, tenant, device, sensor type, value, unit, quality, metadata]}).
//  - Written atomically: to a .tmp file, fsynced, renamed, the folder fsynced. A file is at most
//    `maxBytes`; what does not fit is counted and logged, never silently left out.
//  - Replay claims a file by renaming it to `<name>.replaying-<pid>` (one process wins), and deletes
//    it once everything in it is written. Readings are stored once whatever is replayed twice
//    (they dedup on device, sensor type and time); a dead letter replayed after a kill -9 during
//    replay may be recorded twice.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { PreparedDeadLetter } from './dead-letters';
import type { Quality, Reading } from './reading';

const FORMAT = 'iot-ingest-spill';
const CLAIM = /\.replaying-(\d+)$/;
const TMP = /^spill-.*-(\d+)-[0-9a-f]+\.ndjson\.tmp$/;

export interface SpillContent {
  readings: Reading[];
  deadLetters: PreparedDeadLetter[];
}

export interface SpillWritten {
  file: string;
  readings: number;
  deadLetters: number;
  bytes: number;
  /** Left out because the file reached its bound. */
  readingsLeftOut: number;
  deadLettersLeftOut: number;
}

const readingLine = (r: Reading) =>
  JSON.stringify({ r: [r.time.getTime(), r.tenantId, r.deviceId, r.sensorType, r.value, r.unit, r.quality, r.metadata ?? null] }) + '\n';

export async function writeSpill(dir: string, content: SpillContent, maxBytes: number): Promise<SpillWritten> {
  await fs.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:.]/g, '');
  const file = join(dir, `spill-${stamp}-${process.pid}-${randomBytes(3).toString('hex')}.ndjson`);
  const tmp = `${file}.tmp`;
  const out: SpillWritten = { file, readings: 0, deadLetters: 0, bytes: 0, readingsLeftOut: 0, deadLettersLeftOut: 0 };
  const fh = await fs.open(tmp, 'w', 0o600);
  try {
    let chunk = JSON.stringify({ format: FORMAT, version: 1, createdAt: new Date().toISOString(), pid: process.pid,
      readings: content.readings.length, deadLetters: content.deadLetters.length }) + '\n';
    let chunkBytes = Buffer.byteLength(chunk);
    let full = false;
    const put = async (line: string): Promise<boolean> => {
      const n = Buffer.byteLength(line);
      if (full || out.bytes + chunkBytes + n > maxBytes) {
        full = true;
        return false;
      }
      chunk += line;
      chunkBytes += n;
      if (chunkBytes > 1 << 20) {
        out.bytes += chunkBytes;
        await fh.write(chunk);
        chunk = '';
        chunkBytes = 0;
      }
      return true;
    };
    // Dead letters first: they are few and small, and each is the only copy of what a device sent.
    for (const d of content.deadLetters) {
      if (await put(JSON.stringify({ d }) + '\n')) out.deadLetters++;
      else out.deadLettersLeftOut++;
    }
    for (const r of content.readings) {
      let line: string;
      try {
        line = readingLine(r);
      } catch {
        line = JSON.stringify({ r: [r.time?.getTime?.() ?? null, r.tenantId, r.deviceId, r.sensorType, r.value, r.unit, r.quality, null] }) + '\n';
      }
      if (await put(line)) out.readings++;
      else out.readingsLeftOut++;
    }
    out.bytes += chunkBytes;
    await fh.write(chunk);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
  await syncDir(dir);
  return out;
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await fs.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Some file systems cannot fsync a folder; the rename is still atomic.
  }
}

const alive = (pid: number) => {
  if (pid === process.pid) return false; // a leftover of an earlier run under the same pid (pid 1 in a container)
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Claims the spill files no live process is replaying or writing: finished files, files a dead
 * process had claimed, and .tmp files a process died writing (their whole lines are replayed).
 */
export async function claimSpills(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const claimed: string[] = [];
  for (const name of names.sort()) {
    const claim = CLAIM.exec(name);
    const tmp = TMP.exec(name);
    const base = claim ? name.slice(0, claim.index) : name;
    if (!name.startsWith('spill-')) continue;
    if (claim && alive(Number(claim[1]))) continue;
    if (tmp && alive(Number(tmp[1]))) continue;
    if (!claim && !tmp && !name.endsWith('.ndjson')) continue;
    const to = join(dir, `${base}.replaying-${process.pid}`);
    try {
      await fs.rename(join(dir, name), to);
      claimed.push(to);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error; // another process won it
    }
  }
  return claimed;
}

/** Gives a claimed file back (renamed to its unclaimed name) for the next start. */
export async function unclaimSpill(file: string): Promise<void> {
  const m = CLAIM.exec(file);
  if (!m) return;
  let base = file.slice(0, m.index);
  if (base.endsWith('.tmp')) base = base.slice(0, -4); // its whole lines are worth replaying
  await fs.rename(file, base).catch(() => undefined);
}

export interface SpillRead extends SpillContent {
  badLines: number;
}

export async function readSpill(file: string): Promise<SpillRead> {
  const text = await fs.readFile(file, 'utf8');
  const out: SpillRead = { readings: [], deadLetters: [], badLines: 0 };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line) continue;
    try {
      const o = JSON.parse(line) as { format?: string; r?: unknown[]; d?: PreparedDeadLetter };
      if (i === 0 && o.format === FORMAT) continue;
      if (Array.isArray(o.r)) {
        const [t, tenantId, deviceId, sensorType, value, unit, quality, metadata] = o.r;
        out.readings.push({
          time: new Date(Number(t)), tenantId: String(tenantId), deviceId: String(deviceId), sensorType: String(sensorType),
          value: Number(value), unit: String(unit), quality: quality as Quality, metadata: (metadata as Record<string, unknown>) ?? null,
        });
      } else if (o.d && typeof o.d === 'object') {
        out.deadLetters.push(o.d);
      } else {
        out.badLines++;
      }
    } catch {
      out.badLines++; // a line cut short by a crash while a .tmp file was written
    }
  }
  return out;
}

export async function removeSpill(file: string): Promise<void> {
  await fs.unlink(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
