import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, configMarkdown, configNotices, loadConfig, specs } from '../../src/lib/config';

const test = suite('config and CLI');
const root = join(__dirname, '../..');

function cli(args: string[], env: Record<string, string> = {}) {
  return promisify(execFile)(process.execPath, ['-r', 'tsx/cjs', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root, env: { PATH: process.env.PATH, ...env },
  }).then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
}

test('defaults apply and the seed deployment names are honoured', () => {
  const c = loadConfig({ MQTT_BROKER_URL: 'mqtt://broker:1883', MQTT_TOPICS: 'facility/#', GRAPHQL_WS_ENABLED: 'false',
    GRAPHQL_WS_PATH: '/ws', SENSOR_TEMPERATURE_MIN: '55', SENSOR_TEMPERATURE_MAX: '80', SENSOR_VIBRATION_MAX: '3', SENSOR_PRESSURE_MIN: '70', SENSOR_PRESSURE_MAX: '130' });
  assert.is(c.PORT, 5000);
  assert.is(c.DATABASE_URL, undefined);
  assert.is(c.MQTT_BROKER_URL, 'mqtt://broker:1883');
  assert.is(c.GRAPHQL_WS_ENABLED, false);
  assert.is(c.GRAPHQL_WS_PATH, '/ws');
  assert.equal([c.SENSOR_TEMPERATURE_MIN, c.SENSOR_TEMPERATURE_MAX, c.SENSOR_VIBRATION_MAX, c.SENSOR_PRESSURE_MIN, c.SENSOR_PRESSURE_MAX], [55, 80, 3, 70, 130]);
});

test('a bad value names the variable, the value and what is expected', () => {
  for (const [name, value, expected] of [
    ['PORT', 'eighty', 'an integer from 1 to 65535'],
    ['DATABASE_URL', 'mysql://x', 'a URL starting postgres:// or postgresql://'],
    ['MQTT_BROKER_URL', 'localhost:1883', 'a URL starting mqtt://'],
    ['GRAPHQL_WS_ENABLED', 'maybe', 'true or false'],
    ['SENSOR_VIBRATION_MAX', 'NaN', 'a number'],
    ['TIMESCALE_TIER', '4', 'one of auto, 1, 2, 3'],
  ]) {
    try {
      loadConfig({ [name]: value });
      assert.unreachable(`${name}=${value} accepted`);
    } catch (error) {
      assert.instance(error, ConfigError);
      assert.match((error as Error).message, `${name}="${value}" is invalid: expected ${expected}`);
    }
  }
  assert.throws(() => loadConfig({ SENSOR_PRESSURE_MIN: '150' }), /SENSOR_PRESSURE_MIN="150" is invalid: expected a number below SENSOR_PRESSURE_MAX/);
});

test('the CLI exits with status 2 and one line on bad configuration', async () => {
  const r = await cli(['config'], { PORT: '99999' });
  assert.is(r.code, 2);
  assert.equal(r.stderr.trim().split('\n'), ['iot: configuration error: PORT="99999" is invalid: expected an integer from 1 to 65535']);
});

test('every command has --help', async () => {
  for (const args of [['start'], ['migrate'], ['worker'], ['ingest', 'mqtt'], ['simulate'], ['token'], ['analyst-login'], ['config']]) {
    const r = await cli([...args, '--help']);
    assert.is(r.code, 0, `${args.join(' ')} --help`);
    assert.match(r.stdout, `Usage: iot ${args.join(' ')}`);
  }
});

test('`iot config` hides secrets', async () => {
  const r = await cli(['config'], { MQTT_PASSWORD: 'hunter2', DATABASE_URL: 'postgres://u:p@h/db' });
  assert.is(r.code, 0);
  assert.not.match(r.stdout, 'hunter2');
  assert.match(r.stdout, 'MQTT_PASSWORD=***');
});

const contractFile = join(root, '../shared/contract/seed-contract.json');
if (!existsSync(contractFile)) console.log(`  [config] skipped: ${contractFile} not found (the contract sits in shared/ beside the repository)`);
(existsSync(contractFile) ? test : test.skip)("every variable of the seed contract's env is known", () => {
  const contract = JSON.parse(readFileSync(contractFile, 'utf8')) as { env: string[] };
  assert.ok(contract.env.length > 0);
  assert.equal(contract.env.filter((name) => !(name in specs)), [], 'unknown to `iot config`');
});

test('REDIS_PUBSUB_URL is accepted, and a line says why it is not needed', async () => {
  const c = loadConfig({ REDIS_PUBSUB_URL: 'redis://redis:6379/0' });
  assert.is(c.REDIS_PUBSUB_URL, 'redis://redis:6379/0');
  assert.equal(configNotices(loadConfig({})), []);
  const [notice] = configNotices(c);
  assert.match(notice.message, /REDIS_PUBSUB_URL .*not needed.*LISTEN\/NOTIFY/);
  assert.throws(() => loadConfig({ REDIS_PUBSUB_URL: 'localhost:6379' }), /REDIS_PUBSUB_URL="localhost:6379" is invalid: expected a URL starting redis:\/\/ or rediss:\/\//);

  const r = await cli(['config'], { REDIS_PUBSUB_URL: 'redis://:secret@redis:6379' });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /INFO .*REDIS_PUBSUB_URL is set but not needed: GraphQL subscriptions use PostgreSQL LISTEN\/NOTIFY/);
  assert.match(r.stdout, 'REDIS_PUBSUB_URL=redis://:***@redis:6379');
  assert.not.match(r.stdout, 'secret');
});

test('OPCUA_ENDPOINT_URL and OPCUA_NODE_IDS are checked; no "not read yet" line any more', () => {
  const c = loadConfig({ OPCUA_ENDPOINT_URL: 'opc.tcp://plc-1.plant:4840/UA/Press',
    OPCUA_NODE_IDS: 'ns=2;s=Press1.Temperature, ns=2;i=1001,i=2258,ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63,nsu=urn:press;b=M/RbKBsRVkePCePcx24oRA==' });
  assert.is(c.OPCUA_ENDPOINT_URL, 'opc.tcp://plc-1.plant:4840/UA/Press');
  assert.equal(c.OPCUA_NODE_IDS, ['ns=2;s=Press1.Temperature', 'ns=2;i=1001', 'i=2258',
    'ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63', 'nsu=urn:press;b=M/RbKBsRVkePCePcx24oRA==']);
  assert.not.match(configNotices(c).map((n) => n.message).join('\n'), /OPC UA/);
  for (const [name, value, expected] of [
    ['OPCUA_ENDPOINT_URL', 'http://plc:4840', 'a URL starting opc.tcp://'],
    ['OPCUA_ENDPOINT_URL', 'plc:4840', 'a URL starting opc.tcp://'],
    ['OPCUA_NODE_IDS', 'ns=2;x=1', 'comma-separated OPC UA NodeIds'],
    ['OPCUA_NODE_IDS', 'ns=2;i=12a', 'comma-separated OPC UA NodeIds'],
    ['OPCUA_NODE_IDS', 'Press1.Temperature', 'comma-separated OPC UA NodeIds'],
    ['OPCUA_NODE_IDS', ',', 'comma-separated OPC UA NodeIds'],
  ]) {
    assert.throws(() => loadConfig({ [name]: value }), (e: Error) => e instanceof ConfigError && e.message.startsWith(`${name}=${JSON.stringify(value)} is invalid: expected ${expected}`), `${name}=${value}`);
  }
  assert.match(configNotices(loadConfig({ OPCUA_NODE_IDS: 'i=85' })).map((n) => n.message).join('\n'), 'OPCUA_NODE_IDS is set without OPCUA_ENDPOINT_URL');
});

test('the README configuration table is the one `iot config --markdown` prints', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(configMarkdown() + '\n'), 'README.md is out of date: run `npm run iot -- config --markdown` and paste the table');
});

test.run();
