// An OPC UA server (node-opcua) serving the demo plant's machines: one Double variable per channel,
// NodeId ns=1;s=<deviceCode>.<SENSOR_TYPE> (e.g. ns=1;s=CHI-PRES-01-SENS.TEMPERATURE), updated every
// `intervalMs` from the same PlantSimulator the MQTT publisher uses, each value with its source
// timestamp. Faults can be injected per node (drift, spikes, stuck values, a Bad or Uncertain
// status) and for the whole server (disconnect: stop and start again on the same port).
// Every value set is kept in `produced`, with whether a monitored item was watching its node at
// that instant (what the server could hand over), so tests count exactly what had to arrive.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';
// node-opcua-server exports the server alone; the data model comes from the client package (the same builds).
import { DataType, DataValue, MessageSecurityMode, SecurityPolicy, StatusCode, StatusCodes } from 'node-opcua-client';
import type { UAVariable } from 'node-opcua-address-space';
import { OPCUAServer } from 'node-opcua-server';
import { DEMO_FACILITIES, DemoFacility } from './demo-plant';
import { PlantSimulator } from './plant-simulator';

export type NodeFault =
  | { kind: 'stuck' }                          // the value stops changing (timestamps still advance)
  | { kind: 'drift'; perTick: number }         // adds perTick more at each tick
  | { kind: 'spike'; every: number; size: number } // adds `size` on every `every`-th tick
  | { kind: 'status'; status: 'Bad' | 'Uncertain' | 'BadSensorFailure' | 'UncertainLastUsableValue' | 'BadCommunicationError' };

export interface OpcuaSimOptions {
  port: number;
  facilities?: DemoFacility[];
  /** How many of the plant's devices to serve (all when unset); a bench can ask for many more by repeating them. */
  devices?: number;
  /** Copies of each device (device codes suffixed -2, -3...), for benches with many items. */
  copies?: number;
  intervalMs?: number;
  /**
   * The server's PKI folder. Given: None plus Sign / SignAndEncrypt with Basic256Sha256 and
   * Aes128_Sha256_RsaOaep. Not given: None only, with a throwaway folder (removed at stop) so
   * nothing lands in the user's ~/.config.
   */
  pkiDir?: string;
  users?: Record<string, string>;
  allowAnonymous?: boolean;
  /** Start ticking at once (default true). */
  autoStart?: boolean;
}

export interface ProducedValue {
  nodeId: string;
  deviceCode: string;
  sensorType: string;
  value: number;
  status: string;
  sourceTimestamp: Date;
  /** A monitored item was watching this node when the value was set. */
  watched: boolean;
}

interface SimNode {
  nodeId: string;
  deviceCode: string;
  sensorType: string;
  variable?: UAVariable;
  last?: DataValue;
  fault?: NodeFault;
  ticks: number;
  drift: number;
  stuckValue?: number;
}

export const simNodeId = (deviceCode: string, sensorType: string) => `ns=1;s=${deviceCode}.${sensorType.toUpperCase()}`;

export class OpcuaSimServer {
  server: OPCUAServer | undefined;
  readonly produced: ProducedValue[] = [];
  readonly nodes = new Map<string, SimNode>();
  private readonly sim: PlantSimulator;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  readonly certificateManager: OPCUACertificateManager;
  private readonly userCertificateManager: OPCUACertificateManager;
  private readonly secure: boolean;
  private readonly throwawayPki: string | undefined;

  constructor(private readonly options: OpcuaSimOptions) {
    const facilities = options.facilities ?? DEMO_FACILITIES;
    this.sim = new PlantSimulator(facilities, { faultRate: 0 });
    let devices = facilities.flatMap((f) => f.workCenters.flatMap((w) => w.devices));
    if (options.devices !== undefined) devices = devices.slice(0, options.devices);
    for (let copy = 1; copy <= (options.copies ?? 1); copy++) {
      for (const d of devices) for (const c of d.channels) {
        const code = copy === 1 ? d.deviceCode : `${d.deviceCode}-${copy}`;
        const nodeId = simNodeId(code, c.sensorType);
        this.nodes.set(nodeId, { nodeId, deviceCode: code, sensorType: c.sensorType, ticks: 0, drift: 0 });
      }
    }
    this.secure = !!options.pkiDir;
    if (!options.pkiDir) this.throwawayPki = mkdtempSync(join(tmpdir(), 'opcua-sim-pki-'));
    const root = options.pkiDir ?? this.throwawayPki!;
    this.certificateManager = new OPCUACertificateManager({ rootFolder: join(root, 'server'), automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
    this.userCertificateManager = new OPCUACertificateManager({ rootFolder: join(root, 'users'), automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true });
  }

  get endpointUrl(): string {
    return `opc.tcp://127.0.0.1:${this.options.port}/plant`;
  }

  /** Starts serving (and ticking, unless autoStart or `tick` is false). The nodes keep the values they had before a restart. */
  async start(options: { tick?: boolean } = {}): Promise<void> {
    const o = this.options;
    const secure = this.secure;
    const server = new OPCUAServer({
      port: o.port,
      resourcePath: '/plant',
      hostname: '127.0.0.1',
      alternateHostname: ['127.0.0.1'],
      buildInfo: { productName: 'plant-telemetry OPC UA simulator' },
      serverCertificateManager: this.certificateManager,
      userCertificateManager: this.userCertificateManager,
      securityModes: secure ? [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt] : [MessageSecurityMode.None],
      securityPolicies: secure ? [SecurityPolicy.None, SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep] : [SecurityPolicy.None],
      allowAnonymous: o.allowAnonymous ?? !o.users,
      userManager: o.users ? { isValidUser: (user: string, password: string) => o.users![user] === password } : undefined,
      // 0: a monitored item asking for 0 gets every change (exception-based), not one per 100 ms window.
      serverCapabilities: { minSupportedSampleRate: 0, maxSessions: 2000, maxSubscriptions: 10_000, maxMonitoredItems: 100_000 },
      maxConnectionsPerEndpoint: 2000,
      isAuditing: false,
    });
    await server.initialize();
    // The server's own namespace is index 1, so NodeIds read ns=1;s=... as simNodeId gives them.
    const ns = server.engine.addressSpace!.getOwnNamespace();
    const plant = ns.addFolder(server.engine.addressSpace!.rootFolder.objects, { browseName: 'Plant' });
    const folders = new Map<string, ReturnType<typeof ns.addFolder>>();
    for (const n of this.nodes.values()) {
      let folder = folders.get(n.deviceCode);
      if (!folder) folders.set(n.deviceCode, (folder = ns.addFolder(plant, { browseName: n.deviceCode })));
      n.variable = ns.addVariable({
        componentOf: folder, browseName: n.sensorType, nodeId: n.nodeId,
        dataType: 'Double', minimumSamplingInterval: 0,
      });
      // A restarted server serves the values it had, with their source timestamps (retained values).
      n.variable.setValueFromSource({ dataType: DataType.Double, value: n.last?.value.value ?? 0 }, n.last?.statusCode ?? StatusCodes.Good,
        n.last?.sourceTimestamp ?? new Date(0));
    }
    await server.start();
    this.server = server;
    if (options.tick ?? o.autoStart !== false) this.resume();
  }

  /** Whether a monitored item watches the node (an exception-based item listens for its value changes). */
  watched(n: SimNode): boolean {
    return !!n.variable && n.variable.listenerCount('value_changed') > 0;
  }

  watchedCount(): number {
    let k = 0;
    for (const n of this.nodes.values()) if (this.watched(n)) k++;
    return k;
  }

  resume(): void {
    if (this.timer) return;
    const interval = this.options.intervalMs ?? 1000;
    this.timer = setInterval(() => this.tick(), interval);
    this.tick();
  }

  pause(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  inject(nodeId: string, fault: NodeFault | undefined): void {
    const n = this.nodes.get(nodeId);
    if (!n) throw new Error(`no such node ${nodeId}`);
    n.fault = fault;
    n.stuckValue = undefined;
  }

  /** One tick: every node gets a new value with a source timestamp strictly after its last. */
  tick(): void {
    if (!this.server) return;
    let now = Date.now();
    if (now <= this.lastTick) now = this.lastTick + 1;
    this.lastTick = now;
    const at = new Date(now);
    const values = new Map<string, number>();
    for (const r of this.sim.tick(at, (this.options.intervalMs ?? 1000) / 1000)) {
      values.set(`${r.payload.deviceId}.${r.payload.sensorType}`, r.payload.value);
    }
    for (const n of this.nodes.values()) {
      const base = n.deviceCode.replace(/-\d+$/, '');
      let value = values.get(`${n.deviceCode}.${n.sensorType}`) ?? values.get(`${base}.${n.sensorType}`) ?? 0;
      n.ticks++;
      let status: StatusCode = StatusCodes.Good;
      const f = n.fault;
      if (f?.kind === 'stuck') value = n.stuckValue ??= (n.last?.value.value as number | undefined) ?? value;
      if (f?.kind === 'drift') value += (n.drift += f.perTick);
      if (f?.kind === 'spike' && n.ticks % f.every === 0) value += f.size;
      if (f?.kind === 'status') status = (StatusCodes as unknown as Record<string, StatusCode>)[f.status] ?? StatusCodes.Bad;
      const dv = new DataValue({ value: { dataType: DataType.Double, value }, statusCode: status, sourceTimestamp: at, serverTimestamp: at });
      const watched = this.watched(n);
      n.last = dv;
      n.variable!.setValueFromSource(dv.value, status, at);
      this.produced.push({ nodeId: n.nodeId, deviceCode: n.deviceCode, sensorType: n.sensorType, value, status: status.name,
        sourceTimestamp: at, watched });
    }
  }

  /** Stops serving; ticking stops too (a stopped PLC produces nothing). start() serves again. */
  async stop(): Promise<void> {
    this.pause();
    const server = this.server;
    this.server = undefined;
    if (server) await server.shutdown(0);
  }

  /** stop(), and the throwaway PKI folder goes. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.throwawayPki) rmSync(this.throwawayPki, { recursive: true, force: true });
  }

  /** The disconnect fault: the server goes away for `downMs` and comes back on the same port with its values. */
  async restart(downMs = 1000): Promise<void> {
    await this.stop();
    await new Promise((r) => setTimeout(r, downMs));
    await this.start();
  }

  /** The server's certificate (DER), for a client to trust (the server makes it, self-signed, at its first start). */
  certificate(): Buffer {
    if (!this.server) throw new Error('the simulator is not running');
    if (!this.secure) throw new Error('the simulator serves None only (no pkiDir)');
    return this.server.getCertificate();
  }
}

export async function startOpcuaSimServer(options: OpcuaSimOptions): Promise<OpcuaSimServer> {
  const s = new OpcuaSimServer(options);
  await s.start();
  return s;
}
