// A protocol row's ingesting process (a child of bench/rows.ts IngestChild): registry, ReadingSink
// (the MQTT rows' settings) and one protocol's ingestor, as `iot ingest <protocol>` runs them, in a
// process of its own so its peak RSS is the ingestor's alone, not the benchmark's. Reports the
// sink's counts, RSS and the ingestor's own counters to the parent every 100 ms.
import { join } from 'node:path';
import { Pool } from 'pg';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { setLogLevel } from '../src/lib/log';
import type { IngestJob, IngestStats } from './rows';

// Each protocol's modules are loaded only by its own row (node-opcua alone is tens of MiB of RSS).
/* eslint-disable @typescript-eslint/no-require-imports */
const load = {
  sparkplug: () => (require('../src/ingest/sparkplug/ingestor') as typeof import('../src/ingest/sparkplug/ingestor')).SparkplugIngestor,
  opcua: () => (require('../src/ingest/opcua/ingestor') as typeof import('../src/ingest/opcua/ingestor')).OpcuaIngestor,
  modbus: () => (require('../src/ingest/modbus/poller') as typeof import('../src/ingest/modbus/poller')).ModbusPoller,
  rest: () => (require('../src/ingest/rest/server') as typeof import('../src/ingest/rest/server')).RestIngestServer,
};
/* eslint-enable @typescript-eslint/no-require-imports */

interface Running { stop(): Promise<void>; extra(): Record<string, number>; url?: string }

async function startIngestor(job: IngestJob, pool: Pool, registry: RegistryCache, sink: ReadingSink): Promise<Running> {
  switch (job.protocol) {
    case 'sparkplug': {
      const i = new (load.sparkplug())({ brokerUrl: job.brokerUrl!, clientId: job.clientId, stateDir: join(job.stateDir, 'sparkplug') }, registry, sink, pool);
      await i.start();
      return { stop: () => i.stop(), extra: () => ({ messages: i.stats.messages, seqGaps: i.stats.seqGaps, deadLetters: i.stats.deadLetters, unknownAliases: i.stats.unknownAliases }) };
    }
    case 'opcua': {
      const i = new (load.opcua())({ pkiDir: join(job.stateDir, 'pki') }, registry, sink, pool);
      await i.start();
      return { stop: () => i.stop(), extra: () => ({ devices: i.devices, connected: i.connectedDevices, notifications: i.counters.notifications, reconnects: i.counters.reconnects }) };
    }
    case 'modbus': {
      const p = new (load.modbus())(pool, registry, sink);
      await p.start();
      return { stop: () => p.stop(), extra: () => ({ polls: p.stats.polls, failedRequests: p.stats.failedRequests, sinkWaits: p.sinkWaits, devices: p.stats.devices }) };
    }
    case 'rest': {
      const s = new (load.rest())({ port: 0, host: '127.0.0.1',
        limits: { maxReadingsPerMessage: Math.max(1000, job.restMaxReadings ?? 0), maxMessageBytes: 4 * 2 ** 20 } }, registry, sink, pool);
      await s.start();
      return { stop: () => s.stop(), extra: () => ({}), url: s.url };
    }
  }
}

process.once('message', async (job: IngestJob) => {
  setLogLevel('error');
  const pool = new Pool({ connectionString: job.dbUrl, max: job.sink.writers + 4 });
  const registry = new RegistryCache(pool);
  await registry.start();
  const sink = new ReadingSink(pool, { batchSize: job.sink.batchSize, maxWaitMs: job.sink.maxWaitMs, bufferMax: 200_000, writers: job.sink.writers });
  const ingestor = await startIngestor(job, pool, registry, sink);
  let peakRss = 0;
  const stats = (): IngestStats => {
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    return { kind: 'stats', stored: sink.stats.stored, duplicates: sink.stats.duplicates, deadLetters: sink.stats.deadLetters,
      batches: sink.stats.batches, buffered: sink.buffered, rss, peakRss, extra: ingestor.extra() };
  };
  const timer = setInterval(() => process.send?.(stats()), 100);
  process.on('message', async (m: { kind: string }) => {
    if (m.kind === 'flush') {
      await sink.flush();
      process.send?.({ ...stats(), kind: 'flushed' });
    } else if (m.kind === 'stop') {
      clearInterval(timer);
      await ingestor.stop();
      await sink.close();
      await registry.stop();
      await pool.end();
      process.send?.({ ...stats(), kind: 'stopped' }, () => process.exit(0));
    }
  });
  process.send?.({ kind: 'ready', url: ingestor.url });
});
