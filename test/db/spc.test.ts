import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ReadingSink } from '../../src/ingest/sink';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiServer, startApi } from '../../src/server/app';
import { rejects } from '../helpers/assert';
import { createTestDatabase, seedSmallPlant, TestDatabase } from '../helpers/db';

const test = suite('db: SPC control limits and Western Electric rules');
let db: TestDatabase;
let plant: Awaited<ReturnType<typeof seedSmallPlant>>;
let rival: Awaited<ReturnType<typeof seedSmallPlant>>;

// Everything happens in the past, at 1 s steps: a 600-reading baseline from T0, test patterns after it.
const T0 = Math.floor((Date.now() - 6 * 3600_000) / 1000) * 1000;
const BASELINE = 600;
const at = (i: number) => new Date(T0 + i * 1000);

/** Seeded PRNG (mulberry32) and standard normal deviates (Box-Muller): the same numbers every run. */
function normals(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/**
 * Reference implementation of Western Electric rules 1-4 with the run de-duplication of
 * sql/520_spc.sql: returns [index, rule] for every point at or after `from` where a violating run starts.
 */
function referenceRunStarts(z: number[], from: number): [number, number][] {
  const out: [number, number][] = [];
  let previous = [false, false, false, false];
  const count = (w: number[], f: (x: number) => boolean) => w.filter(f).length;
  for (let i = 0; i < z.length; i++) {
    const last = (n: number) => (i + 1 >= n ? z.slice(i + 1 - n, i + 1) : null);
    const w3 = last(3);
    const w5 = last(5);
    const w8 = last(8);
    const matched = [
      Math.abs(z[i]) > 3,
      !!w3 && (count(w3, (x) => x > 2) >= 2 || count(w3, (x) => x < -2) >= 2),
      !!w5 && (count(w5, (x) => x > 1) >= 4 || count(w5, (x) => x < -1) >= 4),
      !!w8 && (count(w8, (x) => x > 0) === 8 || count(w8, (x) => x < 0) === 8),
    ];
    matched.forEach((hit, r) => {
      if (i >= from && hit && !previous[r]) out.push([i, r + 1]);
    });
    previous = matched;
  }
  return out;
}

interface Limits {
  id: string;
  center_line: number;
  sigma: number;
  sample_count: number;
  is_active: boolean;
  upper_control_limit: number;
  lower_control_limit: number;
}

/** A device with one temperature channel, and every value ever stored on it (index i is at time at(i)). */
interface Channel {
  deviceId: string;
  channelId: string;
  values: number[];
  limits?: Limits;
}

let deviceCount = 0;
async function newChannel(): Promise<Channel> {
  deviceCount += 1;
  const d = await db.pool.query<{ id: string }>(
    `insert into iot.iot_devices (tenant_id, work_center_id, device_code) values ($1, $2, $3) returning id`,
    [plant.tenantId, plant.workCenterId, `SPC-${deviceCount}`]);
  const c = await db.pool.query<{ id: string }>(
    `insert into iot.device_channels (tenant_id, device_id, sensor_type, unit) values ($1, $2, 'TEMPERATURE', '°F') returning id`,
    [plant.tenantId, d.rows[0].id]);
  return { deviceId: d.rows[0].id, channelId: c.rows[0].id, values: [] };
}

/** Stores values after the channel's last one, 1 s apart, through the ReadingSink. Returns their indexes. */
async function store(ch: Channel, values: number[], quality: (i: number) => 'GOOD' | 'BAD' = () => 'GOOD'): Promise<number[]> {
  const first = ch.values.length;
  const sink = new ReadingSink(db.pool, { batchSize: 5000, maxWaitMs: 5, bufferMax: 100_000 });
  sink.add(values.map((value, k) => ({
    time: at(first + k), tenantId: plant.tenantId, deviceId: ch.deviceId, sensorType: 'TEMPERATURE', value, unit: '°F',
    quality: quality(k),
  })));
  await sink.close();
  ch.values.push(...values);
  return values.map((_, k) => first + k);
}

/** Calls iot.compute_spc_control_limits as the API does (tenant claim in the transaction) and commits. */
async function compute(ch: Channel, from: Date, to: Date, tenantId = plant.tenantId): Promise<Limits> {
  const client = await db.pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('jwt.claims.tenant_id', $1, true)`, [tenantId]);
    const { rows } = await client.query<Limits>(`select * from iot.compute_spc_control_limits($1, $2, $3)`, [ch.channelId, from, to]);
    await client.query('commit');
    ch.limits = rows[0];
    return rows[0];
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

/** A channel with a baseline of normal noise (mean 70, sd 2) and limits computed from it. */
async function channelWithLimits(seed: number): Promise<Channel> {
  const ch = await newChannel();
  const noise = normals(seed);
  await store(ch, Array.from({ length: BASELINE }, () => 70 + 2 * noise()));
  await compute(ch, at(0), at(BASELINE - 1));
  return ch;
}

/** Values at the given multiples of sigma from the channel's center line (0 = exactly on it). */
const sigmas = (ch: Channel, ...k: number[]) => k.map((x) => (x === 0 ? ch.limits!.center_line : ch.limits!.center_line + x * ch.limits!.sigma));
const onCenter = (ch: Channel, n: number) => sigmas(ch, ...Array<number>(n).fill(0));

const evaluate = async () => (await db.pool.query<{ raised: number }>('select iot_private.evaluate_spc() as raised')).rows[0].raised;

interface Alert {
  rule: number;
  severity: string;
  detected_at: Date;
  value: number;
  work_center_id: string;
  tenant_id: string;
  control_limit_id: string;
  details: { zone: string; side: string; values: number[]; windowStart: string; rule: number };
}
const alerts = async (ch: Channel) => (await db.pool.query<Alert>(
  `select * from iot.spc_alerts where channel_id = $1 order by created_at, detected_at, rule`, [ch.channelId])).rows;
const acknowledgeAll = (ch: Channel) => db.pool.query(
  `update iot.spc_alerts set acknowledged_at = now(), acknowledged_by = 'test' where channel_id = $1 and acknowledged_at is null`, [ch.channelId]);
const zOf = (ch: Channel) => ch.values.map((v) => (v - ch.limits!.center_line) / ch.limits!.sigma);

let main: Channel;

test.before(async () => {
  db = await createTestDatabase('spc');
  plant = await seedSmallPlant(db.pool);
  rival = await seedSmallPlant(db.pool, 'rival', 'RIVAL');
  console.log(`  [spc] storage tier ${db.tier}`);
});
test.after(async () => db.drop());

test('control limits: center line and sigma are the mean and sample standard deviation of the baseline', async () => {
  main = await newChannel();
  const noise = normals(42);
  const baseline = Array.from({ length: BASELINE }, () => 70 + 2 * noise());
  await store(main, baseline);
  // Only the readings inside the window [baseline_from, baseline_to] count.
  const limits = await compute(main, at(10), at(BASELINE - 1));
  const used = baseline.slice(10);
  const mean = used.reduce((s, v) => s + v, 0) / used.length;
  const sd = Math.sqrt(used.reduce((s, v) => s + (v - mean) ** 2, 0) / (used.length - 1));
  assert.is(limits.sample_count, BASELINE - 10);
  assert.ok(Math.abs(limits.center_line - mean) < 1e-9, `center line ${limits.center_line} vs ${mean}`);
  assert.ok(Math.abs(limits.sigma - sd) < 1e-9, `sigma ${limits.sigma} vs ${sd}`);
  assert.ok(Math.abs(limits.upper_control_limit - (mean + 3 * sd)) < 1e-9);
  assert.ok(Math.abs(limits.lower_control_limit - (mean - 3 * sd)) < 1e-9);
  assert.ok(limits.is_active);

  // Recomputing over the whole baseline deactivates the previous limits: one active row per channel.
  const again = await compute(main, at(0), at(BASELINE - 1));
  const rows = (await db.pool.query(`select id, is_active from iot.spc_control_limits where channel_id = $1 order by created_at, is_active`,
    [main.channelId])).rows;
  assert.equal(rows.map((r) => [r.id, r.is_active]), [[limits.id, false], [again.id, true]]);
  const full = baseline.reduce((s, v) => s + v, 0) / baseline.length;
  assert.ok(Math.abs(again.center_line - full) < 1e-9);
});

test('BAD readings are left out of the baseline', async () => {
  const ch = await newChannel();
  const noise = normals(7);
  const values = Array.from({ length: 60 }, (_, i) => (i % 2 ? 1000 : 70 + noise()));
  await store(ch, values, (i) => (i % 2 ? 'BAD' : 'GOOD'));
  const limits = await compute(ch, at(0), at(59));
  assert.is(limits.sample_count, 30);
  assert.ok(limits.center_line < 75, `the BAD 1000s were ignored: ${limits.center_line}`);
});

test('normal noise raises nothing', async () => {
  // In-control noise still matches some Western Electric rule about once in 90 points; this seed's
  // 150 points match none (the reference implementation checks that, so the test means what it says).
  const noise = normals(47);
  const from = main.values.length;
  const segment = Array.from({ length: 150 }, () => main.limits!.center_line + main.limits!.sigma * noise());
  const z = [...zOf(main), ...segment.map((v) => (v - main.limits!.center_line) / main.limits!.sigma)];
  assert.equal(referenceRunStarts(z, from), [], 'the chosen noise is clean');
  assert.ok(Math.max(...segment.map((v) => Math.abs(v - main.limits!.center_line) / main.limits!.sigma)) > 2.5, 'it does reach beyond 2.5 sigma');
  await store(main, segment);
  assert.is(await evaluate(), 0);
  assert.equal(await alerts(main), []);
  const state = await db.pool.query(`select evaluated_through from iot_private.spc_evaluation_state where control_limit_id = $1`, [main.limits!.id]);
  assert.is(state.rows[0].evaluated_through.getTime(), at(main.values.length - 1).getTime(), 'progress kept per limit');
});

test('rule 1: a single point beyond 3 sigma raises a HIGH alert at that point', async () => {
  await store(main, onCenter(main, 8));
  const [spike] = await store(main, sigmas(main, 3.5));
  await store(main, onCenter(main, 3));
  assert.is(await evaluate(), 1);
  const [a] = await alerts(main);
  assert.is(a.rule, 1);
  assert.is(a.severity, 'HIGH');
  assert.is(a.detected_at.getTime(), at(spike).getTime());
  assert.is(a.value, main.values[spike]);
  assert.is(a.work_center_id, plant.workCenterId);
  assert.is(a.tenant_id, plant.tenantId);
  assert.is(a.control_limit_id, main.limits!.id);
  assert.equal([a.details.zone, a.details.side, a.details.values], ['beyond A', 'UPPER', [main.values[spike]]]);
});

test('rule 2: two of three points beyond 2 sigma raise a HIGH alert when the second arrives, across evaluations', async () => {
  await store(main, onCenter(main, 8));
  const [first] = await store(main, sigmas(main, -2.5, 0));
  assert.is(await evaluate(), 0, 'one point beyond 2 sigma is no pattern yet');
  const [second] = await store(main, sigmas(main, -2.5));
  await store(main, onCenter(main, 3));
  assert.is(await evaluate(), 1, 'the window of three straddles the previous evaluation');
  const a = (await alerts(main)).at(-1)!;
  assert.equal([a.rule, a.severity, a.detected_at.getTime(), a.value], [2, 'HIGH', at(second).getTime(), main.values[second]]);
  assert.equal([a.details.zone, a.details.side], ['A', 'LOWER']);
  assert.equal(a.details.values, main.values.slice(first, second + 1));
  assert.is(Date.parse(a.details.windowStart), at(first).getTime());
});

test('rule 3: four of five points beyond 1 sigma raise a LOW alert at the fifth', async () => {
  await store(main, onCenter(main, 8));
  const [first] = await store(main, sigmas(main, 1.5, 1.5, 0.5, 1.5));
  assert.is(await evaluate(), 0);
  const [fifth] = await store(main, sigmas(main, 1.5));
  await store(main, onCenter(main, 3));
  assert.is(await evaluate(), 1);
  const a = (await alerts(main)).at(-1)!;
  assert.equal([a.rule, a.severity, a.detected_at.getTime()], [3, 'LOW', at(fifth).getTime()]);
  assert.equal([a.details.zone, a.details.side, a.details.values], ['B', 'UPPER', main.values.slice(first, fifth + 1)]);
});

test('rule 4: eight points in a row on one side raise a LOW alert at the eighth', async () => {
  await store(main, onCenter(main, 8));
  const [first] = await store(main, sigmas(main, 0.5, 0.5, 0.5, 0.5, 0.5));
  assert.is(await evaluate(), 0);
  await store(main, sigmas(main, 0.5, 0.5));
  assert.is(await evaluate(), 0, 'seven are not enough');
  const [eighth] = await store(main, sigmas(main, 0.5));
  await store(main, onCenter(main, 3));
  assert.is(await evaluate(), 1);
  const a = (await alerts(main)).at(-1)!;
  assert.equal([a.rule, a.severity, a.detected_at.getTime()], [4, 'LOW', at(eighth).getTime()]);
  assert.equal([a.details.zone, a.details.values.length], ['C', 8]);
  assert.is(Date.parse(a.details.windowStart), at(first).getTime());
  assert.equal((await alerts(main)).map((x) => x.rule), [1, 2, 3, 4], 'each pattern raised exactly its own rule');
});

test('evaluating again raises nothing new; a concurrent evaluation returns at once, raising nothing', async () => {
  assert.is(await evaluate(), 0);
  assert.is(await evaluate(), 0);
  assert.is((await alerts(main)).length, 4);
  const holder = await db.pool.connect();
  try {
    await holder.query('begin');
    await holder.query('select iot_private.evaluate_spc()');
    // The first run holds its lock until it commits; a second one returns at once instead of waiting
    // (were it to wait, this test would hang: the holder commits only afterwards).
    assert.is(await evaluate(), 0);
    await holder.query('commit');
  } finally {
    holder.release();
  }
});

test('a long violating run raises one alert per rule, also when it spans evaluations', async () => {
  const ch = await channelWithLimits(99);
  await store(ch, onCenter(ch, 8));
  const [start] = await store(ch, sigmas(ch, ...Array<number>(20).fill(3.5)));
  assert.is(await evaluate(), 4);
  const raised = await alerts(ch);
  // Each rule's alert is at the point that completes its first pattern: points 1, 2, 4 and 8 of the run.
  assert.equal(raised.map((a) => [a.rule, a.severity, a.detected_at.getTime()]),
    [[1, 'HIGH', at(start).getTime()], [2, 'HIGH', at(start + 1).getTime()], [3, 'LOW', at(start + 3).getTime()], [4, 'LOW', at(start + 7).getTime()]]);
  await acknowledgeAll(ch); // so that only run tracking, not the one-hour suppression, can hold the next alerts back
  await store(ch, sigmas(ch, ...Array<number>(20).fill(3.5)));
  assert.is(await evaluate(), 0, 'the run goes on: no new alerts');

  // The process returns to normal; a new excursion is a new run.
  await store(ch, onCenter(ch, 8));
  const [spike] = await store(ch, sigmas(ch, -4));
  await store(ch, onCenter(ch, 2));
  assert.is(await evaluate(), 1);
  assert.equal((await alerts(ch)).map((a) => [a.rule, a.detected_at.getTime()]).at(-1), [1, at(spike).getTime()]);

  // Left unacknowledged, it holds back the same rule on the same channel for an hour.
  await store(ch, sigmas(ch, -4, 0, 0));
  assert.is(await evaluate(), 0, 'unacknowledged alert under an hour old: not raised again');
  await db.pool.query(`update iot.spc_alerts set created_at = now() - interval '61 minutes' where channel_id = $1 and acknowledged_at is null`, [ch.channelId]);
  const [late] = await store(ch, sigmas(ch, 4, 0));
  assert.is(await evaluate(), 1, 'an hour later it is raised again');
  assert.is((await alerts(ch)).at(-1)!.detected_at.getTime(), at(late).getTime());
  assert.is((await alerts(ch)).length, 6);
});

test('several runs in one evaluation raise one alert per channel and rule: the first', async () => {
  const ch = await channelWithLimits(5);
  await store(ch, onCenter(ch, 8));
  const [first] = await store(ch, sigmas(ch, 3.5, 0, 0, -3.5, 0, 0, 3.5));
  assert.is(await evaluate(), 1);
  assert.equal((await alerts(ch)).map((a) => [a.rule, a.detected_at.getTime()]), [[1, at(first).getTime()]]);
});

test('a channel silent for hours is caught up with, an hour per run, and its next excursion found', async () => {
  const ch = await channelWithLimits(77);
  // Two and a half hours without readings (placeholders only move the channel's clock), then a spike.
  ch.values.push(...Array<number>(9000).fill(NaN));
  await store(ch, onCenter(ch, 3));
  const [spike] = await store(ch, sigmas(ch, 5));
  await store(ch, onCenter(ch, 3));
  const raised: number[] = [];
  for (let run = 0; run < 4; run++) raised.push(await evaluate());
  assert.equal(raised, [0, 0, 1, 0], 'the empty hours are stepped over, then the spike raises');
  assert.is((await alerts(ch))[0].detected_at.getTime(), at(spike).getTime());
});

test('detection matches a reference implementation on a random stream evaluated in uneven chunks', async () => {
  const ch = await channelWithLimits(31337);
  const noise = normals(8);
  const from = ch.values.length;
  const stream: number[] = [];
  // In-control noise with shifts, drifts and spikes, so that every rule has something to find.
  const shifts = [0, 0.7, 1.6, 0, -1.3, 2.4, 0, -0.6, 0, 3.2, -2.2, 0, 1.1, 0, -3.1, 0.3];
  for (let k = 0; k < 1600; k++) {
    const shift = shifts[Math.floor(k / 100)] + (k >= 1300 && k < 1400 ? (k - 1300) / 40 : 0);
    const spike = k % 157 === 77 ? 3.8 * (k % 2 ? 1 : -1) : 0;
    stream.push(ch.limits!.center_line + ch.limits!.sigma * (noise() + shift + spike));
  }
  const chunks = [1, 7, 8, 2, 50, 3, 200, 1, 1, 9, 400, 13, 5, 300, 600];
  const seen: [number, number][] = [];
  let offset = 0;
  for (const size of chunks) {
    await store(ch, stream.slice(offset, offset + size));
    offset += size;
    const { rows } = await db.pool.query<{ time: Date; run_starts: number[] }>(
      `select time, run_starts from iot_private.spc_pending_points where channel_id = $1 and run_starts <> '{}' order by time`,
      [ch.channelId]);
    for (const r of rows) for (const rule of r.run_starts) seen.push([(r.time.getTime() - T0) / 1000, rule]);
    await evaluate();
  }
  assert.is(offset, stream.length);
  const expected = referenceRunStarts(zOf(ch), from);
  const key = (x: [number, number]) => `${x[0]}:${x[1]}`;
  assert.ok(new Set(expected.map((x) => x[1])).size === 4, 'the stream exercises all four rules');
  assert.equal(seen.map(key).sort(), expected.map(key).sort());
  // The alerts raised are among those run starts, with the documented severities.
  const raised = await alerts(ch);
  assert.ok(raised.length >= 4);
  const starts = new Set(expected.map(key));
  for (const a of raised) {
    assert.ok(starts.has(key([(a.detected_at.getTime() - T0) / 1000, a.rule])), `alert rule ${a.rule} at ${a.detected_at.toISOString()}`);
    assert.is(a.severity, a.rule <= 2 ? 'HIGH' : 'LOW');
  }
});

test('refusals: too few readings or no spread (IOT05), a bad window (IOT03), another tenant or no such channel (IOT04)', async () => {
  const few = await newChannel();
  await store(few, Array.from({ length: 20 }, (_, i) => 70 + (i % 3)));
  let e = await rejects(() => compute(few, at(0), at(100)), /has 20 readings .* at least 30/, 'IOT05');
  assert.match(e.message, few.channelId);

  const flat = await newChannel();
  await store(flat, Array<number>(40).fill(72.5));
  e = await rejects(() => compute(flat, at(0), at(100)), /do not vary/, 'IOT05');
  assert.match(e.message, flat.channelId);

  await rejects(() => compute(main, at(100), at(0)), /backwards/, 'IOT03');
  await rejects(() => compute(main, at(0), new Date(at(0).getTime() + 32 * 86400_000)), /longer than 31 days/, 'IOT03');

  const rivalChannel = (await db.pool.query(`select id from iot.device_channels where device_id = $1 limit 1`, [rival.deviceId])).rows[0].id;
  await db.asRole('iot_operator', { tenant_id: plant.tenantId }, async (c) => {
    await c.query('savepoint s');
    await rejects(() => c.query(`select iot.compute_spc_control_limits($1, $2, $3)`, [rivalChannel, at(0), at(599)]), /not found/, 'IOT04');
    await c.query('rollback to savepoint s');
    await rejects(() => c.query(`select iot.compute_spc_control_limits(gen_random_uuid(), $1, $2)`, [at(0), at(599)]), /not found/, 'IOT04');
    await c.query('rollback to savepoint s');
    // The operator's own channel works.
    const { rows } = await c.query(`select sample_count from iot.compute_spc_control_limits($1, $2, $3)`, [main.channelId, at(0), at(BASELINE - 1)]);
    assert.is(rows[0].sample_count, BASELINE);
  });
  await db.asRole('iot_analyst', { tenant_id: plant.tenantId }, async (c) => {
    await rejects(() => c.query(`select iot.compute_spc_control_limits($1, $2, $3)`, [main.channelId, at(0), at(599)]), /permission denied/, '42501');
  });
});

test('the internal variant computes limits for many channels in one statement and skips those it cannot', async () => {
  const a = await newChannel();
  const b = await newChannel();
  const noise = normals(3);
  await store(a, Array.from({ length: 40 }, () => 50 + noise()));
  await store(b, Array.from({ length: 10 }, () => 50 + noise()));
  const { rows } = await db.pool.query(`select channel_id from iot_private.compute_spc_control_limits($1, $2, $3)`,
    [[a.channelId, b.channelId], at(0), at(100)]);
  assert.equal(rows.map((r) => r.channel_id), [a.channelId]);
});

test('GraphQL: the computeSpcControlLimits mutation, documented, with error codes', async () => {
  const SECRET = 'test-secret-for-spc-suite';
  const pool: ClosablePool = createPool(db.url, 2, 'test-spc');
  const api: ApiServer = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: SECRET, graphiql: false, websockets: false,
    graphqlPath: '/graphql', maxPageSize: 100 });
  try {
    const token = signToken(SECRET, { role: 'iot_operator', tenantId: plant.tenantId, subject: 'alice' });
    const gql = async (query: string, variables: Record<string, unknown> = {}) => {
      const res = await fetch(`${api.url}/graphql`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as { data?: any; errors?: { message: string; errcode?: string }[] };
    };
    const m = `mutation($c: UUID!, $f: Datetime!, $t: Datetime!) {
      computeSpcControlLimits(input: { channelId: $c, baselineFrom: $f, baselineTo: $t }) {
        spcControlLimit { centerLine sigma sampleCount isActive channel { sensorType } }
      }
    }`;
    const ch = await newChannel();
    const noise = normals(11);
    await store(ch, Array.from({ length: BASELINE }, () => 70 + 2 * noise()));
    const ok = await gql(m, { c: ch.channelId, f: at(0).toISOString(), t: at(BASELINE - 1).toISOString() });
    assert.not.ok(ok.errors, JSON.stringify(ok.errors));
    const l = ok.data.computeSpcControlLimits.spcControlLimit;
    assert.equal([l.sampleCount, l.isActive, l.channel.sensorType], [BASELINE, true, 'TEMPERATURE']);
    const bad = await gql(m, { c: ch.channelId, f: at(0).toISOString(), t: at(5).toISOString() });
    assert.is(bad.errors![0].errcode, 'IOT05');
    const doc = await gql(`{ __type(name: "Mutation") { fields { name description } } }`);
    const field = doc.data.__type.fields.find((f: { name: string }) => f.name === 'computeSpcControlLimits');
    assert.match(field.description, 'Shewhart control limits');
  } finally {
    await api.close();
    await pool.close();
  }
});

test.run();
