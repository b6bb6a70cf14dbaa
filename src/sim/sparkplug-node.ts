// Sparkplug B edge nodes (mqtt.js) carrying the demo plant's values: one edge node per work center
// (group = facility code, edge node = work center code), one Sparkplug device per demo device
// (device id = device code), one metric per channel named Process/<Sensor type> (Process/Temperature).
// Each node connects with its NDEATH as the will (bdSeq counting its sessions), publishes NBIRTH
// and DBIRTHs, then DDATA with aliases only and no datatype (as Sparkplug says DATA should), and
// answers rebirth requests (NCMD Node Control/Rebirth). Injectable faults: a sequence gap, dropping
// off without DDEATH/NDEATH (the broker publishes the will), a metric added without a rebirth
// (its alias is unknown to the host), value faults (stuck, drift, spikes).
// Every metric value published is kept in `produced`, with whether the broker took it (QoS 1 ack),
// so tests count exactly what had to arrive.
import mqtt, { MqttClient } from 'mqtt';
import { get as sparkplugPayload } from 'sparkplug-payload';
import type { TypeStr, UMetric } from 'sparkplug-payload/lib/sparkplugbpayload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';
import { DEMO_FACILITIES, DEMO_TENANT, DemoFacility } from './demo-plant';
import { PlantSimulator } from './plant-simulator';

const codec = sparkplugPayload('spBv1.0')!;
const ProtoPayload = org.eclipse.tahu.protobuf.Payload;

export type ValueFault =
  | { kind: 'stuck' }                               // the value stops changing (timestamps still advance)
  | { kind: 'drift'; perTick: number }              // adds perTick more at each publish
  | { kind: 'spike'; every: number; size: number }; // adds `size` on every `every`-th publish

export interface SimMetricSpec {
  name: string;
  type: 'Double' | 'Float' | 'Int64' | 'Int32' | 'Boolean';
}

export interface SimDeviceSpec {
  deviceId: string;
  metrics: SimMetricSpec[];
}

export interface ProducedMetric {
  groupId: string;
  edgeNodeId: string;
  /** Undefined for node-level metrics. */
  deviceId?: string;
  metric: string;
  value: number;
  time: Date;
  messageType: 'NBIRTH' | 'NDATA' | 'DBIRTH' | 'DDATA';
  /** The broker acknowledged the message (QoS 1), or it was written to the socket (QoS 0). */
  sent: boolean;
}

export interface EdgeNodeOptions {
  brokerUrl: string;
  groupId: string;
  edgeNodeId: string;
  devices: SimDeviceSpec[];
  /** The edge node's own metrics (NBIRTH/NDATA), none by default. */
  nodeMetrics?: SimMetricSpec[];
  /** QoS of births and data (Sparkplug: 0; 1 for a host that must lose nothing across its restarts). */
  dataQos?: 0 | 1;
  /** Give DATA metrics their datatype too (default false, as Sparkplug recommends). */
  datatypeInData?: boolean;
  clientId?: string;
}

interface LiveMetric extends SimMetricSpec {
  alias: number;
  /** Birthed in the current birth certificate (a metric added by the unknown-alias fault is not, until a rebirth). */
  born: boolean;
  last?: number;
  fault?: ValueFault;
  ticks: number;
  drift: number;
}

const NODE = ''; // the key of the node-level metrics

export class SparkplugEdgeNode {
  readonly produced: ProducedMetric[] = [];
  rebirthsAnswered = 0;
  private client: MqttClient | undefined;
  private bdSeq = -1;
  private seq = 0;
  private skip = 0;
  private nextAlias = 1;
  private readonly metrics = new Map<string, Map<string, LiveMetric>>(); // device id (NODE for the node) -> name -> metric
  private readonly deadDevices = new Set<string>();

  constructor(readonly options: EdgeNodeOptions) {
    this.metrics.set(NODE, new Map());
    for (const m of options.nodeMetrics ?? []) this.addLive(NODE, m, true);
    for (const d of options.devices) {
      this.metrics.set(d.deviceId, new Map());
      for (const m of d.metrics) this.addLive(d.deviceId, m, true);
    }
  }

  get groupId(): string {
    return this.options.groupId;
  }

  get edgeNodeId(): string {
    return this.options.edgeNodeId;
  }

  get connected(): boolean {
    return !!this.client?.connected;
  }

  get currentBdSeq(): number {
    return this.bdSeq;
  }

  private addLive(device: string, spec: SimMetricSpec, born: boolean): LiveMetric {
    const m: LiveMetric = { ...spec, alias: this.nextAlias++, born, ticks: 0, drift: 0 };
    this.metrics.get(device)!.set(spec.name, m);
    return m;
  }

  private topic(type: string, deviceId?: string): string {
    return ['spBv1.0', this.groupId, type, this.edgeNodeId, ...(deviceId ? [deviceId] : [])].join('/');
  }

  private nextSeq(): number {
    const s = (this.seq + this.skip) % 256;
    this.skip = 0;
    this.seq = (s + 1) % 256;
    return s;
  }

  /** A new MQTT session: a new bdSeq in the will and the NBIRTH, then the births. */
  async connect(): Promise<void> {
    this.bdSeq = (this.bdSeq + 1) % 256;
    const will = codec.encodePayload({ timestamp: Date.now(), metrics: [{ name: 'bdSeq', type: 'UInt64', value: this.bdSeq }] });
    const client = mqtt.connect(this.options.brokerUrl, {
      clientId: this.options.clientId ?? `sim-sparkplug-${this.groupId}-${this.edgeNodeId}`,
      clean: true, reconnectPeriod: 0, connectTimeout: 5000,
      will: { topic: this.topic('NDEATH'), payload: Buffer.from(will), qos: 1, retain: false },
    });
    this.client = client;
    client.on('error', () => undefined);
    client.on('message', (topic, payload) => this.command(topic, payload));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync([this.topic('NCMD'), `spBv1.0/${this.groupId}/DCMD/${this.edgeNodeId}/+`], { qos: 1 });
    this.deadDevices.clear();
    await this.births();
  }

  private command(topic: string, payload: Buffer): void {
    let decoded;
    try {
      decoded = codec.decodePayload(payload);
    } catch {
      return;
    }
    const rebirth = decoded.metrics?.find((m) => m.name === 'Node Control/Rebirth');
    if (topic === this.topic('NCMD') && rebirth && rebirth.value === true) {
      this.rebirthsAnswered++;
      void this.births().catch(() => undefined);
    }
  }

  /** NBIRTH (seq 0, the session's bdSeq) and a DBIRTH per live device, with every metric's current value. */
  async births(): Promise<void> {
    const now = Date.now();
    this.seq = 0;
    this.skip = 0;
    for (const m of this.metrics.get(NODE)!.values()) m.born = true;
    const nodeMetrics: UMetric[] = [
      { name: 'bdSeq', type: 'UInt64', value: this.bdSeq },
      { name: 'Node Control/Rebirth', type: 'Boolean', value: false },
      ...this.birthMetrics(NODE, now),
    ];
    await this.send('NBIRTH', undefined, codec.encodePayload({ timestamp: now, seq: this.nextSeq(), metrics: nodeMetrics }), NODE, now);
    for (const d of this.options.devices) {
      if (this.deadDevices.has(d.deviceId)) continue;
      for (const m of this.metrics.get(d.deviceId)!.values()) m.born = true;
      await this.send('DBIRTH', d.deviceId, codec.encodePayload({ timestamp: now, seq: this.nextSeq(), metrics: this.birthMetrics(d.deviceId, now) }), d.deviceId, now);
    }
  }

  private birthMetrics(device: string, now: number): UMetric[] {
    return [...this.metrics.get(device)!.values()].map((m) => ({
      name: m.name, alias: m.alias, type: m.type as TypeStr, timestamp: now, value: m.last ?? null, // null: is_null, no value yet
    }));
  }

  private async send(type: ProducedMetric['messageType'], deviceId: string | undefined, payload: Uint8Array, device: string, now: number): Promise<void> {
    const client = this.client;
    if (!client) throw new Error(`edge node ${this.edgeNodeId} is not connected`);
    const entries = [...this.metrics.get(device)!.values()].filter((m) => m.last !== undefined).map((m) => ({
      groupId: this.groupId, edgeNodeId: this.edgeNodeId, deviceId, metric: m.name, value: m.last ?? 0, time: new Date(now), messageType: type, sent: false,
    }));
    this.produced.push(...entries);
    const qos = this.options.dataQos ?? 0;
    await new Promise<void>((resolve) => {
      client.publish(this.topic(type, deviceId), Buffer.from(payload), { qos }, (error) => {
        if (!error) for (const e of entries) e.sent = true;
        resolve();
      });
    });
  }

  /** One DDATA for a device (or NDATA for NODE = undefined) with these metric values, all at `time`. */
  async publishData(deviceId: string | undefined, values: Record<string, number>, time = new Date()): Promise<void> {
    const device = deviceId ?? NODE;
    const live = this.metrics.get(device);
    if (!live) throw new Error(`unknown device ${deviceId}`);
    if (deviceId && this.deadDevices.has(deviceId)) return;
    const now = time.getTime();
    const metrics: org.eclipse.tahu.protobuf.Payload.IMetric[] = [];
    const included: LiveMetric[] = [];
    for (const [name, raw] of Object.entries(values)) {
      const m = live.get(name);
      if (!m) continue;
      m.last = this.applyFault(m, raw);
      metrics.push(this.dataMetric(m, now));
      included.push(m);
    }
    if (!metrics.length) return;
    const payload = ProtoPayload.encode({ timestamp: now, seq: this.nextSeq(), metrics }).finish();
    const client = this.client;
    if (!client) throw new Error(`edge node ${this.edgeNodeId} is not connected`);
    const entries = included.map((m) => ({
      groupId: this.groupId, edgeNodeId: this.edgeNodeId, deviceId, metric: m.name, value: m.last!, time: new Date(now),
      messageType: (deviceId ? 'DDATA' : 'NDATA') as ProducedMetric['messageType'], sent: false,
    }));
    this.produced.push(...entries);
    await new Promise<void>((resolve) => {
      client.publish(this.topic(deviceId ? 'DDATA' : 'NDATA', deviceId), Buffer.from(payload), { qos: this.options.dataQos ?? 0 }, (error) => {
        if (!error) for (const e of entries) e.sent = true;
        resolve();
      });
    });
  }

  private applyFault(m: LiveMetric, raw: number): number {
    m.ticks++;
    let v = raw;
    const f = m.fault;
    if (f?.kind === 'stuck' && m.last !== undefined) return m.last;
    if (f?.kind === 'drift') v += (m.drift += f.perTick);
    if (f?.kind === 'spike' && m.ticks % f.every === 0) v += f.size;
    if (m.type === 'Float') return Math.fround(v);
    if (m.type === 'Int64' || m.type === 'Int32') return Math.round(v);
    if (m.type === 'Boolean') return v ? 1 : 0;
    return v;
  }

  /** A DATA metric: alias only (its name and datatype are in the birth), the value in its protobuf field. */
  private dataMetric(m: LiveMetric, now: number): org.eclipse.tahu.protobuf.Payload.IMetric {
    const out: org.eclipse.tahu.protobuf.Payload.IMetric = { alias: m.alias, timestamp: now };
    if (this.options.datatypeInData) out.datatype = { Double: 10, Float: 9, Int64: 4, Int32: 3, Boolean: 11 }[m.type];
    const v = m.last!;
    if (m.type === 'Double') out.doubleValue = v;
    else if (m.type === 'Float') out.floatValue = v;
    else if (m.type === 'Int64') out.longValue = v;
    else if (m.type === 'Int32') out.intValue = v >>> 0;
    else out.booleanValue = v !== 0;
    return out;
  }

  // --- faults ---------------------------------------------------------------------------------

  /** The next message's seq skips `n` numbers (as if n messages were lost). */
  skipSeq(n = 1): void {
    this.skip += n;
  }

  /** A metric added at run time without a rebirth: its alias is in no birth the host has seen, until the next rebirth. */
  addMetric(deviceId: string | undefined, spec: SimMetricSpec): number {
    return this.addLive(deviceId ?? NODE, spec, false).alias;
  }

  setValueFault(deviceId: string | undefined, metric: string, fault: ValueFault | undefined): void {
    const m = this.metrics.get(deviceId ?? NODE)?.get(metric);
    if (!m) throw new Error(`unknown metric ${metric}`);
    m.fault = fault;
    m.drift = 0;
  }

  /** The connection drops without DDEATH or NDEATH (power cut, cable pulled): the broker publishes the will. */
  dropOff(): void {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    client.options.reconnectPeriod = 0;
    client.stream?.destroy();
    client.end(true);
  }

  /** An orderly DDEATH for one device (it is disconnected from the edge node); it is born again by the next births(). */
  async deviceDeath(deviceId: string): Promise<void> {
    this.deadDevices.add(deviceId);
    const payload = codec.encodePayload({ timestamp: Date.now(), seq: this.nextSeq(), metrics: [] });
    await this.client?.publishAsync(this.topic('DDEATH', deviceId), Buffer.from(payload), { qos: this.options.dataQos ?? 0 });
  }

  /** The device is back: its DBIRTH. */
  async deviceRebirth(deviceId: string): Promise<void> {
    this.deadDevices.delete(deviceId);
    const now = Date.now();
    for (const m of this.metrics.get(deviceId)!.values()) m.born = true;
    await this.send('DBIRTH', deviceId, codec.encodePayload({ timestamp: now, seq: this.nextSeq(), metrics: this.birthMetrics(deviceId, now) }), deviceId, now);
  }

  /** An orderly shutdown: NDEATH published by the node itself, then DISCONNECT (the will is not sent). */
  async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    const death = codec.encodePayload({ timestamp: Date.now(), metrics: [{ name: 'bdSeq', type: 'UInt64', value: this.bdSeq }] });
    await client.publishAsync(this.topic('NDEATH'), Buffer.from(death), { qos: 1 }).catch(() => undefined);
    await client.endAsync();
  }
}

/** The Sparkplug metric name of a channel's sensor type: TEMPERATURE -> Process/Temperature. */
export const sparkplugMetricName = (sensorType: string) =>
  `Process/${sensorType.charAt(0).toUpperCase()}${sensorType.slice(1).toLowerCase()}`;

const METRIC_TYPE: Record<string, SimMetricSpec['type']> = { COUNT: 'Int64', SPEED: 'Float' };

export interface SparkplugPlantOptions {
  brokerUrl: string;
  facilities?: DemoFacility[];
  /** How many work centers (edge nodes) of the plant to run (all when unset). */
  nodes?: number;
  /** Copies of each edge node (edge node ids suffixed -2, -3...), for benches. */
  copies?: number;
  intervalMs?: number;
  dataQos?: 0 | 1;
}

/** The demo plant as Sparkplug edge nodes, all ticking from one PlantSimulator. */
export class SparkplugPlant {
  readonly nodes: SparkplugEdgeNode[] = [];
  private readonly simulator: PlantSimulator;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private readonly routes = new Map<string, { node: SparkplugEdgeNode; deviceId: string }[]>(); // demo device code -> copies

  constructor(readonly options: SparkplugPlantOptions) {
    const facilities = options.facilities ?? DEMO_FACILITIES;
    this.simulator = new PlantSimulator(facilities, { faultRate: 0 });
    const workCenters = facilities.flatMap((f) => f.workCenters.map((w) => ({ f, w }))).slice(0, options.nodes ?? Infinity);
    for (let copy = 1; copy <= (options.copies ?? 1); copy++) {
      for (const { f, w } of workCenters) {
        const suffix = copy === 1 ? '' : `-${copy}`;
        const node = new SparkplugEdgeNode({
          brokerUrl: options.brokerUrl, groupId: f.code, edgeNodeId: `${w.code}${suffix}`, dataQos: options.dataQos,
          devices: w.devices.map((d) => ({
            deviceId: `${d.deviceCode}${suffix}`,
            metrics: d.channels.map((c) => ({ name: sparkplugMetricName(c.sensorType), type: METRIC_TYPE[c.sensorType] ?? 'Double' })),
          })),
        });
        this.nodes.push(node);
        for (const d of w.devices) {
          this.routes.set(d.deviceCode, [...(this.routes.get(d.deviceCode) ?? []), { node, deviceId: `${d.deviceCode}${suffix}` }]);
        }
      }
    }
  }

  node(groupId: string, edgeNodeId: string): SparkplugEdgeNode {
    const n = this.nodes.find((x) => x.groupId === groupId && x.edgeNodeId === edgeNodeId);
    if (!n) throw new Error(`no simulated edge node ${groupId}/${edgeNodeId}`);
    return n;
  }

  get produced(): ProducedMetric[] {
    return this.nodes.flatMap((n) => n.produced);
  }

  async start(options: { tick?: boolean } = {}): Promise<void> {
    for (const n of this.nodes) await n.connect();
    if (options.tick !== false) this.resume();
  }

  /** One DDATA per device of every connected node, with the simulator's values at `now`. */
  async tick(now = new Date()): Promise<void> {
    const byDevice = new Map<string, Record<string, number>>();
    for (const r of this.simulator.tick(now, (this.options.intervalMs ?? 1000) / 1000)) {
      const values = byDevice.get(r.payload.deviceId) ?? {};
      values[sparkplugMetricName(r.payload.sensorType)] = r.payload.value;
      byDevice.set(r.payload.deviceId, values);
    }
    const sends: Promise<void>[] = [];
    for (const [code, values] of byDevice) {
      for (const { node, deviceId } of this.routes.get(code) ?? []) if (node.connected) sends.push(node.publishData(deviceId, values, now));
    }
    await Promise.all(sends);
  }

  pause(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.ticking;
  }

  resume(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick()).catch(() => undefined);
    }, this.options.intervalMs ?? 1000);
  }

  async stop(): Promise<void> {
    await this.pause();
    for (const n of this.nodes) await n.disconnect();
  }
}

/**
 * Makes the demo plant's devices (seedDemoPlant) Sparkplug devices of these simulated edge nodes:
 * connection_config.sparkplug = { groupId: facility, edgeNodeId: work center, deviceId: device code }
 * and each channel's protocol_address its metric name. Idempotent. The devices stay MQTT devices,
 * so run either this simulator or the JSON publisher for them, not both.
 */
export async function registerSparkplugDemoPlant(pool: import('pg').Pool, facilities: DemoFacility[] = DEMO_FACILITIES,
                                                tenantCode = DEMO_TENANT.code): Promise<number> {
  let n = 0;
  for (const f of facilities) for (const w of f.workCenters) for (const d of w.devices) {
    const r = await pool.query(
      `update iot.iot_devices set connection_config = connection_config || jsonb_build_object('sparkplug', $2::jsonb)
        where device_code = $1 and connection_type = 'MQTT' and tenant_id = (select t.id from iot.tenants t where t.tenant_code = $3)
        returning id`,
      [d.deviceCode, { groupId: f.code, edgeNodeId: w.code, deviceId: d.deviceCode }, tenantCode]);
    for (const c of d.channels) {
      await pool.query(`update iot.device_channels set protocol_address = $3 where device_id = any($1::uuid[]) and sensor_type = $2`,
        [r.rows.map((x) => x.id), c.sensorType, sparkplugMetricName(c.sensorType)]);
    }
    n += r.rowCount ?? 0;
  }
  return n;
}
