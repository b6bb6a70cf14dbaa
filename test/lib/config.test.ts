import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, loadConfig } from '../../src/lib/config';

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
  for (const args of [['start'], ['migrate'], ['worker'], ['ingest', 'mqtt'], ['simulate'], ['token'], ['config']]) {
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

test.run();
