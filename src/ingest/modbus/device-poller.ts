// One Modbus TCP device: its own connection, its own timer and its own timeout, so a slow or dead
// device never delays another. Each poll reads the planned requests one after the other (many
// devices answer one request at a time), stamps each answer with the time it arrived (ms) and hands
// the readings to the poller. A request that got no answer stores nothing. After a timeout the
// connection is dropped and made again at the next poll: a late answer on the old connection could
// otherwise be taken for the answer to the next request.
import { Socket } from 'node:net';
import { client as modbusClient } from 'jsmodbus';
import { logger } from '../../lib/log';
import type { ChannelInfo } from '../registry';
import type { DeadLetter, Reading } from '../reading';
import { formatModbusAddress, isBitTable } from './address';
import { decodeBit, decodeRegisters, scaled } from './codec';
import type { ModbusDeviceConfig } from './config';
import { PollOutcome, RequestFailure } from './faults';
import type { ReadBlock } from './plan';

const log = logger('ingest-modbus');

type TcpClient = InstanceType<typeof modbusClient.TCP>;

export interface DeviceSpec {
  deviceId: string;
  deviceCode: string;
  tenantId: string;
  workCenterId: string;
  config: ModbusDeviceConfig;
  blocks: ReadBlock<ChannelInfo>[];
}

export interface DeviceHooks {
  /** Called at the start of every poll: the poller re-reads the registry here. */
  beforePoll(): void;
  /** Readings of one poll; resolves when the sink can take more. */
  deliver(readings: Reading[], deadLetters: DeadLetter[]): Promise<void>;
  /** The outcome of every poll that had requests to make. */
  outcome(spec: DeviceSpec, outcome: PollOutcome): void;
}

export interface DevicePollStats {
  polls: number;
  answeredRequests: number;
  failedRequests: number;
  readings: number;
  connects: number;
  connected: boolean;
}

export const describeBlock = (b: ReadBlock<unknown>) => `${b.table}:${b.start} x${b.count}`;

export class DevicePoller {
  private socket: Socket | undefined;
  private client: TcpClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private nextAt = 0;
  /** The latest answer time of the previous poll (ms). */
  private lastAnswerAt = 0;
  private stopped = false;
  readonly stats: DevicePollStats = { polls: 0, answeredRequests: 0, failedRequests: 0, readings: 0, connects: 0, connected: false };

  constructor(private spec: DeviceSpec, private readonly hooks: DeviceHooks) {}

  get current(): DeviceSpec {
    return this.spec;
  }

  /** New channels or settings: used from the next poll on; a new host, port or unit id reconnects. */
  update(spec: DeviceSpec): void {
    const a = this.spec.config;
    const b = spec.config;
    const reconnect = a.host !== b.host || a.port !== b.port || a.unitId !== b.unitId || a.timeoutMs !== b.timeoutMs;
    this.spec = spec;
    if (reconnect) this.disconnect();
  }

  start(): void {
    this.nextAt = Date.now();
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.cycle(), Math.max(0, delayMs));
  }

  private async cycle(): Promise<void> {
    this.running = this.pollOnce().catch((error) => log.error('poll failed unexpectedly; polling goes on', { device: this.spec.deviceCode, error }));
    await this.running;
    this.running = undefined;
    // Fixed rate: the next poll is one interval after this one started; polls missed while this
    // one took longer than the interval are skipped, not made up in a burst.
    const now = Date.now();
    this.nextAt += this.spec.config.pollIntervalMs;
    if (this.nextAt < now) this.nextAt = now;
    this.schedule(this.nextAt - now);
  }

  private async pollOnce(): Promise<void> {
    this.hooks.beforePoll();
    const spec = this.spec;
    if (!spec.blocks.length || this.stopped) return;
    this.stats.polls++;
    const readings: Reading[] = [];
    const deadLetters: DeadLetter[] = [];
    const outcome: PollOutcome = { answered: 0, failures: [] };
    let client: TcpClient | undefined;
    try {
      client = await this.connect(spec.config);
    } catch (error) {
      for (const b of spec.blocks) outcome.failures.push({ kind: 'CONNECTION', request: describeBlock(b), message: (error as Error).message });
    }
    const previous = this.lastAnswerAt;
    for (let i = 0; client && i < spec.blocks.length; i++) {
      const block = spec.blocks[i];
      try {
        const response = await read(client, block);
        const time = this.answerTime(previous);
        outcome.answered++;
        this.toReadings(spec, block, response, time, readings, deadLetters);
      } catch (error) {
        const failure = classify(error, block, spec.config.timeoutMs);
        outcome.failures.push(failure);
        if (failure.kind !== 'EXCEPTION') {
          // No answer: the device (or the link) is gone for now; do not wait out every other request too.
          this.disconnect();
          for (const rest of spec.blocks.slice(i + 1)) outcome.failures.push({ ...failure, request: describeBlock(rest) });
          break;
        }
      }
    }
    this.stats.answeredRequests += outcome.answered;
    this.stats.failedRequests += outcome.failures.length;
    this.stats.readings += readings.length;
    this.hooks.outcome(spec, outcome);
    if (readings.length || deadLetters.length) await this.hooks.deliver(readings, deadLetters);
  }

  private toReadings(spec: DeviceSpec, block: ReadBlock<ChannelInfo>, response: Response, time: Date, out: Reading[], letters: DeadLetter[]): void {
    for (const { address, item: channel } of block.points) {
      const raw = isBitTable(block.table)
        ? decodeBit(response.bits!, block.start, address)
        : decodeRegisters(response.registers!, block.start, address);
      const value = scaled(raw, channel.scale, channel.valueOffset);
      if (!Number.isFinite(value)) {
        letters.push({
          source: 'MODBUS', topic: `modbus/${spec.deviceCode}/${formatModbusAddress(address)}`, tenantId: spec.tenantId,
          sourceKey: `modbus/${spec.deviceCode}`, reasonClass: 'value',
          payload: JSON.stringify({ deviceId: spec.deviceCode, sensorType: channel.sensorType, raw: String(raw), time: time.toISOString() }),
          reason: `device ${spec.deviceCode} ${channel.sensorType} at ${formatModbusAddress(address)}: value ${raw} is not a finite number (a PLC's NaN often means a sensor fault)`,
        });
        continue;
      }
      out.push({
        time, tenantId: spec.tenantId, deviceId: spec.deviceId, sensorType: channel.sensorType.toUpperCase(),
        value, unit: channel.unit, quality: 'GOOD', metadata: null,
      });
    }
  }

  /**
   * The answer's arrival, to the millisecond, and later than every answer of the previous poll: two
   * polls answered within one millisecond (a late poll followed at once by the next) would otherwise
   * share a timestamp, and the database keeps one reading per (device, sensor type, time).
   * A clock stepped back by more than a second is followed rather than waited out.
   */
  private answerTime(previous: number): Date {
    let now = Date.now();
    if (now <= previous && previous - now < 1000) now = previous + 1;
    if (now > this.lastAnswerAt) this.lastAnswerAt = now;
    return new Date(now);
  }

  /** The connected client, connecting first when needed (within the request timeout). */
  private async connect(config: ModbusDeviceConfig): Promise<TcpClient> {
    if (this.client && this.socket && !this.socket.destroyed && this.stats.connected) return this.client;
    this.disconnect();
    const socket = new Socket();
    // The client listens for 'connect' itself, so it must exist before the socket connects.
    const client = new modbusClient.TCP(socket, config.unitId, config.timeoutMs);
    this.socket = socket;
    this.client = client;
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // reported through the failed request or connect below
    socket.on('close', () => {
      if (this.socket === socket) {
        if (this.stats.connected) log.info('connection to device closed; reconnecting at the next poll', { device: this.spec.deviceCode });
        this.stats.connected = false;
      }
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no connection to ${config.host}:${config.port} within ${config.timeoutMs} ms`)), config.timeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`${config.host}:${config.port}: ${error.message}`));
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', fail);
        resolve();
      });
      socket.connect({ host: config.host, port: config.port });
    });
    this.stats.connects++;
    this.stats.connected = true;
    if (this.stats.connects === 1) log.info('connected to device', { device: this.spec.deviceCode, host: config.host, port: config.port, unitId: config.unitId });
    else log.debug('reconnected to device', { device: this.spec.deviceCode });
    return client;
  }

  private disconnect(): void {
    const socket = this.socket;
    this.socket = undefined;
    this.client = undefined;
    this.stats.connected = false;
    socket?.destroy();
  }

  /** Stops polling; a poll under way finishes (within its timeouts) and hands its readings over first. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    this.disconnect();
  }
}

interface Response {
  registers?: Buffer;
  bits?: ArrayLike<boolean | number>;
}

async function read(client: TcpClient, block: ReadBlock<unknown>): Promise<Response> {
  switch (block.table) {
    case 'holding': return { registers: (await client.readHoldingRegisters(block.start, block.count)).response.body.valuesAsBuffer as Buffer };
    case 'input': return { registers: (await client.readInputRegisters(block.start, block.count)).response.body.valuesAsBuffer as Buffer };
    case 'coil': return { bits: (await client.readCoils(block.start, block.count)).response.body.valuesAsArray };
    case 'discrete': return { bits: (await client.readDiscreteInputs(block.start, block.count)).response.body.valuesAsArray };
  }
}

function classify(error: unknown, block: ReadBlock<unknown>, timeoutMs: number): RequestFailure {
  const e = error as { err?: string; message?: string; response?: { body?: { code?: number } } };
  const request = describeBlock(block);
  if (e?.err === 'ModbusException') {
    return { kind: 'EXCEPTION', exceptionCode: e.response?.body?.code, request, message: String(e.message) };
  }
  if (e?.err === 'Timeout') return { kind: 'TIMEOUT', request, message: `no answer within ${timeoutMs} ms` };
  if (e?.err === 'Offline') return { kind: 'CONNECTION', request, message: 'connection closed by the device' };
  // OutOfSync, Protocol, a response too short for its registers...: the link cannot be trusted.
  return { kind: 'TIMEOUT', request, message: `${e?.err ?? 'error'}: ${e?.message ?? String(error)}` };
}
