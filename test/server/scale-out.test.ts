// Scale-out without Redis (issue 8, part 8): two API instances on one database, subscribers on
// each (graphql-ws clients, two tenants). One write; every subscriber of the writing tenant, on
// either instance, receives it exactly once; the other tenant's subscribers receive nothing; and
// each instance holds one LISTEN connection however many subscribers it serves.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';
import { equipmentEventSubscription, recordEvent, startTestApi, TestApi } from '../helpers/graphql';
import { sleep, waitFor } from '../helpers/wait';

const test = suite('scale-out: two API instances on one database');
const SECRET = 'test-secret-for-the-scale-out-suite-0123';
const PER_INSTANCE = 4;
let db: TestDatabase;
let instances: TestApi[] = [];
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;

test.before(async () => {
  db = await createTestDatabase('scale_out');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  instances = [await startTestApi(db.url, SECRET, { poolName: 'scale-out-a' }), await startTestApi(db.url, SECRET, { poolName: 'scale-out-b' })];
});
test.after(async () => {
  for (const a of instances) await a.close();
  await db?.drop();
});

test('one write is delivered once to every subscriber of its tenant on both instances, to none of the other tenant', async () => {
  const [a] = instances;
  const own = a.token('iot_operator', plant.tenantId, 'alice');
  const other = a.token('iot_operator', rival.tenantId, 'rita');
  const ownSub = await equipmentEventSubscription(a, own, plant.workCenterId);
  const otherSub = await equipmentEventSubscription(a, other, rival.workCenterId);
  const received: { instance: number; subscriber: number; tenant: 'own' | 'other'; data: any }[] = [];
  const clients: Client[] = [];
  for (const [i, instance] of instances.entries()) {
    for (let s = 0; s < PER_INSTANCE; s++) {
      const tenant = s === PER_INSTANCE - 1 ? 'other' : 'own'; // the last one on each instance is the other tenant's
      const c = createClient({ url: instance.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0,
        connectionParams: { authToken: tenant === 'own' ? own : other } });
      clients.push(c);
      const sub = tenant === 'own' ? ownSub : otherSub;
      c.subscribe({ query: sub.query, variables: sub.variables }, {
        next: (v) => received.push({ instance: i, subscriber: s, tenant, data: v.data?.[sub.field] ?? v }),
        error: (e) => received.push({ instance: i, subscriber: s, tenant, data: { error: String((e as Error)?.message ?? JSON.stringify(e)) } }),
        complete: () => undefined,
      });
    }
  }
  try {
    await waitFor(async () => (await db.pool.query(`select count(distinct application_name)::int as n from pg_stat_activity
      where application_name like 'scale-out-%' and query ilike 'listen %'`)).rows[0].n === 2, 5000, 'both instances LISTENing');
    const sent = Date.now();
    const id = await recordEvent(a, own, plant.workCenterId, 'one write, two instances');
    const expected = instances.length * (PER_INSTANCE - 1);
    await waitFor(() => received.length >= expected, 5000, `${expected} deliveries`);
    const lastAt = Date.now();
    await sleep(500); // duplicates would arrive now
    assert.is(received.length, expected, JSON.stringify(received));
    assert.ok(received.every((r) => r.tenant === 'own' && r.data.id === id), JSON.stringify(received));
    const who = received.map((r) => `${r.instance}/${r.subscriber}`).sort();
    assert.equal(who, ['0/0', '0/1', '0/2', '1/0', '1/1', '1/2'], 'each subscriber once');
    console.log(`  [scale-out] write to the last of ${expected} subscribers on 2 instances: ${lastAt - sent} ms (waitFor polls every 50 ms)`);
    // One LISTEN connection per instance, not per subscriber: an event costs each instance one notification.
    const sessions = await db.pool.query(`select application_name, count(*)::int as n from pg_stat_activity
      where application_name like 'scale-out-%' and query ilike 'listen %' group by 1 order by 1`);
    assert.equal(sessions.rows, [{ application_name: 'scale-out-a', n: 1 }, { application_name: 'scale-out-b', n: 1 }]);
  } finally {
    for (const c of clients) await c.dispose();
  }
});

test.run();
