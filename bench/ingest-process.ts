// bench:ingest's ingest process (a child): registry, ReadingSink and MqttIngestor as `iot ingest
// mqtt` runs them, reporting its sink's counts and RSS to the parent every 100 ms. Two of these
// with one MQTT_SHARED_GROUP share the subscription (MQTT 5 $share).
import { Pool } from 'pg';
import { MqttIngestor } from '../src/ingest/mqtt';
import { RegistryCache } from '../src/ingest/registry';
import { ReadingSink } from '../src/ingest/sink';
import { setLogLevel } from '../src/lib/log';

interface Job { dbUrl: string; brokerUrl: string; clientId: string; sharedGroup?: string; batchSize: number; maxWaitMs: number; writers: number }

process.once('message', async (job: Job) => {
  setLogLevel('error');
  const pool = new Pool({ connectionString: job.dbUrl, max: job.writers + 2 });
  const registry = new RegistryCache(pool);
  await registry.start();
  const sink = new ReadingSink(pool, { batchSize: job.batchSize, maxWaitMs: job.maxWaitMs, bufferMax: 200_000, writers: job.writers });
  const ingestor = new MqttIngestor({ brokerUrl: job.brokerUrl, topics: ['facility/+/workcenter/+/sensor/+'], qos: 1,
    clientId: job.clientId, sharedGroup: job.sharedGroup, maxFutureSeconds: 300 }, registry, sink);
  await ingestor.start();
  let peakRss = 0;
  const report = () => {
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    process.send?.({ kind: 'stats', stored: sink.stats.stored, duplicates: sink.stats.duplicates, deadLetters: sink.stats.deadLetters,
      batches: sink.stats.batches, buffered: sink.buffered, messages: ingestor.stats.messages, rss, peakRss });
  };
  const timer = setInterval(report, 100);
  process.on('message', async (m: { kind: string }) => {
    if (m.kind !== 'stop') return;
    clearInterval(timer);
    await ingestor.stop();
    await sink.close();
    await registry.stop();
    await pool.end();
    report();
    process.send?.({ kind: 'stopped' }, () => process.exit(0));
  });
  // Give the subscription a moment to be granted before the parent starts publishing.
  setTimeout(() => process.send?.({ kind: 'ready' }), 300);
});
