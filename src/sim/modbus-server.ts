// Modbus TCP simulator: one jsmodbus ModbusTCPServer per simulated PLC, serving holding and input
// registers, coils and discrete inputs from buffers, behind a gate that counts every request and
// injects faults: stop answering (timeouts), answer late (a slow device), exception responses,
// dropped connections and restarts. Reads beyond the served range get exception 02 (jsmodbus alone
// would answer them short). ModbusPlant serves the demo plant's machines (plant-simulator.ts) this
// way, with value faults (drift, spikes, stuck values) on top.
import { EventEmitter } from 'node:events';
import { createServer, Server, Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { server as modbusServer } from 'jsmodbus';
import type { Pool } from 'pg';
import { ModbusAddress, ModbusTable, parseModbusAddress } from '../ingest/modbus/address';
import { encodeRegisters, unscaled } from '../ingest/modbus/codec';
import { DEMO_FACILITIES, DemoDevice, DemoFacility } from './demo-plant';
import { PlantSimulator } from './plant-simulator';

export interface ModbusSimFaults {
  /** Read requests and never answer them (the poller times out). */
  silent?: boolean;
  /** Answer every request this late (a slow device or link). */
  delayMs?: number;
  /** Answer every read (of this table, or all) with this exception code (2 illegal data address, 4 device failure...). */
  exception?: { code: number; table?: ModbusTable };
}

export interface ModbusRequestCounts {
  total: number;
  holding: number;
  input: number;
  coil: number;
  discrete: number;
  exceptions: number;
  unanswered: number;
}

const FC_TABLE: Record<number, ModbusTable> = { 1: 'coil', 2: 'discrete', 3: 'holding', 4: 'input' };

/** The socket jsmodbus sees: requests the gate lets through go in, its answers go out to the real socket. */
class GatedSocket extends Duplex {
  constructor(private readonly real: Socket) {
    super();
  }
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (!this.real.destroyed) this.real.write(chunk);
    done();
  }
}

export class ModbusSimServer {
  readonly holding: Buffer;
  readonly input: Buffer;
  readonly coils: Buffer;
  readonly discrete: Buffer;
  faults: ModbusSimFaults = {};
  readonly requests: ModbusRequestCounts = { total: 0, holding: 0, input: 0, coil: 0, discrete: 0, exceptions: 0, unanswered: 0 };
  private readonly connections = new EventEmitter();
  private readonly sockets = new Set<Socket>();
  private net: Server | undefined;
  port: number;
  readonly host: string;

  constructor(options: { host?: string; port?: number; registers?: number; bits?: number } = {}) {
    const registers = options.registers ?? 10_000;
    const bits = options.bits ?? 10_000;
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 0;
    this.holding = Buffer.alloc(registers * 2);
    this.input = Buffer.alloc(registers * 2);
    this.coils = Buffer.alloc(Math.ceil(bits / 8));
    this.discrete = Buffer.alloc(Math.ceil(bits / 8));
    // jsmodbus listens for 'connection' on what it is given: our emitter, fed with gated sockets.
    new modbusServer.TCP(this.connections as unknown as Server, { holding: this.holding, input: this.input, coils: this.coils, discrete: this.discrete });
  }

  /** Listens (on the same port again after a stop); resolves with the port. */
  async start(): Promise<number> {
    const net = createServer((socket) => this.accept(socket));
    this.net = net;
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen(this.port, this.host, () => {
        net.removeListener('error', reject);
        resolve();
      });
    });
    const address = net.address();
    this.port = typeof address === 'object' && address ? address.port : this.port;
    return this.port;
  }

  /** Stops listening and cuts every connection (what a PLC restart looks like to a client). */
  async stop(): Promise<void> {
    this.dropConnections();
    const net = this.net;
    this.net = undefined;
    if (net) await new Promise<void>((resolve) => net.close(() => resolve()));
  }

  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs) await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
    const gated = new GatedSocket(socket);
    this.connections.emit('connection', gated);
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, data]) : data;
      while (pending.length >= 7) {
        const total = 6 + pending.readUInt16BE(4);
        if (pending.length < total) break;
        const frame = pending.subarray(0, total);
        pending = pending.subarray(total);
        this.onFrame(socket, gated, Buffer.from(frame));
      }
    });
  }

  private onFrame(socket: Socket, gated: GatedSocket, frame: Buffer): void {
    this.requests.total++;
    const fc = frame[7];
    const table = FC_TABLE[fc];
    if (table) this.requests[table]++;
    const f = this.faults;
    if (f.silent) {
      this.requests.unanswered++;
      return;
    }
    let exception: number | undefined;
    if (table && f.exception && (!f.exception.table || f.exception.table === table)) exception = f.exception.code;
    else if (table && frame.length >= 12) exception = this.rangeProblem(table, frame.readUInt16BE(8), frame.readUInt16BE(10));
    const answer = () => {
      if (socket.destroyed) return;
      if (exception !== undefined) {
        this.requests.exceptions++;
        const out = Buffer.alloc(9);
        frame.copy(out, 0, 0, 4); // transaction and protocol id
        out.writeUInt16BE(3, 4);
        out[6] = frame[6];
        out[7] = fc | 0x80;
        out[8] = exception;
        socket.write(out);
      } else {
        gated.push(frame);
      }
    };
    if (f.delayMs) setTimeout(answer, f.delayMs);
    else answer();
  }

  /** Exception 03 for a count the protocol does not allow, 02 for addresses beyond what is served. */
  private rangeProblem(table: ModbusTable, start: number, count: number): number | undefined {
    const bits = table === 'coil' || table === 'discrete';
    if (count < 1 || count > (bits ? 2000 : 125)) return 3;
    const size = bits ? this.coils.length * 8 : this.holding.length / 2;
    return start + count > size ? 2 : undefined;
  }

  /** Writes a raw value at an address (`holding:2:float32`, or parsed). */
  set(address: string | ModbusAddress, raw: number): void {
    const a = typeof address === 'string' ? parseModbusAddress(address) : address;
    if (typeof a === 'string') throw new Error(a);
    if (a.table === 'coil' || a.table === 'discrete') {
      const buf = a.table === 'coil' ? this.coils : this.discrete;
      const byte = a.offset >> 3;
      const mask = 1 << (a.offset & 7);
      buf[byte] = raw ? buf[byte] | mask : buf[byte] & ~mask;
      return;
    }
    encodeRegisters(raw, a.type!, a.order!).copy(a.table === 'holding' ? this.holding : this.input, a.offset * 2);
  }
}

// The demo plant over Modbus -----------------------------------------------------------------------

/** Where each demo sensor type sits in a simulated PLC, as a PLC programmer might lay it out. */
export const DEMO_MODBUS_LAYOUT: Record<string, { address: string; scale: number }> = {
  TEMPERATURE: { address: 'holding:0:int16', scale: 0.1 },        // °F x 10
  VIBRATION: { address: 'holding:1:uint16', scale: 0.01 },        // mm/s x 100
  PRESSURE: { address: 'holding:2:float32:ABCD', scale: 1 },
  SPEED: { address: 'input:0:float32:CDAB', scale: 1 },           // word-swapped float, common on PLCs
  COUNT: { address: 'input:2:uint32:ABCD', scale: 1 },
};
/** Also served: coil 0 = machine running, discrete input 0 = a fault is active (no demo channel reads them). */
export const DEMO_RUNNING_COIL = 'coil:0';
export const DEMO_FAULT_INPUT = 'discrete:0';

export type ValueFault =
  | { kind: 'stuck' }
  | { kind: 'drift'; perSecond: number }
  | { kind: 'spike'; probability: number; magnitude: number };

interface PlantDevice {
  facility: string;
  workCenter: string;
  device: DemoDevice;
  server: ModbusSimServer;
  fault?: ValueFault;
  faultSince?: number;
  /** Units made: the speed integrated over time (the plant simulator rounds per tick, which stays 0 at high rates). */
  counted: number;
}

export interface ModbusPlantOptions {
  facilities?: DemoFacility[];
  /** Serve at most this many devices (default: all of the demo plant's). */
  maxDevices?: number;
  /** Value updates per second (default 1). */
  rate?: number;
  host?: string;
  /** Device i listens on basePort + i (default: any free port each). */
  basePort?: number;
  random?: () => number;
}

/** Every device of the demo plant as its own simulated PLC on its own port. */
export class ModbusPlant {
  readonly devices: PlantDevice[] = [];
  private readonly sim: PlantSimulator;
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;

  constructor(private readonly options: ModbusPlantOptions = {}) {
    const facilities = options.facilities ?? DEMO_FACILITIES;
    this.random = options.random ?? Math.random;
    this.sim = new PlantSimulator(facilities, { random: this.random });
    for (const f of facilities) for (const w of f.workCenters) for (const d of w.devices) {
      if (options.maxDevices !== undefined && this.devices.length >= options.maxDevices) break;
      this.devices.push({ facility: f.code, workCenter: w.code, device: d, server: new ModbusSimServer({ host: options.host, registers: 100, bits: 16,
        port: options.basePort === undefined ? 0 : options.basePort + this.devices.length }), counted: 0 });
    }
  }

  async start(): Promise<void> {
    for (const d of this.devices) await d.server.start();
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000 / (this.options.rate ?? 1));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const d of this.devices) await d.server.stop();
  }

  device(deviceCode: string): PlantDevice {
    const d = this.devices.find((x) => x.device.deviceCode === deviceCode);
    if (!d) throw new Error(`no simulated Modbus device ${deviceCode}`);
    return d;
  }

  /** Value faults on one device's registers; undefined clears it. */
  inject(deviceCode: string, fault: ValueFault | undefined): void {
    const d = this.device(deviceCode);
    d.fault = fault;
    d.faultSince = Date.now();
  }

  /** One update of every register from the plant simulator. */
  tick(now = new Date()): void {
    const values = new Map<string, number>();
    const seconds = 1 / (this.options.rate ?? 1);
    for (const r of this.sim.tick(now, seconds)) values.set(`${r.payload.deviceId}/${r.payload.sensorType}`, r.payload.value);
    for (const d of this.devices) {
      if (d.fault?.kind === 'stuck') continue;
      let running = true;
      const speed = values.get(`${d.device.deviceCode}/SPEED`);
      if (speed !== undefined) {
        d.counted += (speed * seconds) / 3600;
        values.set(`${d.device.deviceCode}/COUNT`, Math.floor(d.counted));
      }
      for (const c of d.device.channels) {
        const layout = DEMO_MODBUS_LAYOUT[c.sensorType];
        let value = values.get(`${d.device.deviceCode}/${c.sensorType}`);
        if (!layout || value === undefined) continue;
        if (d.fault?.kind === 'drift') value += d.fault.perSecond * (Date.now() - d.faultSince!) / 1000;
        if (d.fault?.kind === 'spike' && this.random() < d.fault.probability) value += d.fault.magnitude;
        if (c.sensorType === 'SPEED' && value === 0) running = false;
        d.server.set(layout.address, unscaled(value, layout.scale, 0));
      }
      d.server.set(DEMO_RUNNING_COIL, running ? 1 : 0);
      d.server.set(DEMO_FAULT_INPUT, d.fault ? 1 : 0);
    }
  }
}

/**
 * Points the demo plant's registered devices at a ModbusPlant: connection_type MODBUS, host, port
 * and poll interval in connection_config, each channel's protocol_address and scale from
 * DEMO_MODBUS_LAYOUT. Returns the devices changed.
 */
export async function registerModbusPlant(pool: Pool, tenantId: string, plant: ModbusPlant, pollIntervalMs = 1000): Promise<number> {
  let changed = 0;
  for (const d of plant.devices) {
    const config = { host: d.server.host, port: d.server.port, unitId: 1, pollIntervalMs };
    const r = await pool.query<{ id: string }>(
      `update iot.iot_devices set connection_type = 'MODBUS', connection_config = $3 where tenant_id = $1 and device_code = $2 returning id`,
      [tenantId, d.device.deviceCode, JSON.stringify(config)]);
    if (!r.rows[0]) continue;
    changed++;
    for (const c of d.device.channels) {
      const layout = DEMO_MODBUS_LAYOUT[c.sensorType];
      if (!layout) continue;
      await pool.query(`update iot.device_channels set protocol_address = $3, scale = $4, value_offset = 0
                         where device_id = $1 and upper(sensor_type) = $2`, [r.rows[0].id, c.sensorType, layout.address, layout.scale]);
    }
  }
  return changed;
}
