// What the ingestor knows of each edge node from its birth certificates: the metrics the node and
// each of its devices declared (name, alias, datatype), the node's bdSeq (which NDEATH belongs to
// which session) and the message sequence number (0..255, one counter per edge node across all of
// its messages but NDEATH), and which registry devices are offline after a DEATH.
import type { SparkplugMetric } from './payload';

export interface MetricDefinition {
  name: string;
  alias?: number;
  datatype?: number;
}

/** The metrics of one NBIRTH or DBIRTH, by name and by alias. */
export class BirthCertificate {
  readonly byName = new Map<string, MetricDefinition>();
  readonly byAlias = new Map<number, MetricDefinition>();

  constructor(definitions: MetricDefinition[]) {
    for (const d of definitions) {
      this.byName.set(d.name, d);
      if (d.alias !== undefined) this.byAlias.set(d.alias, d);
    }
  }

  static fromMetrics(metrics: SparkplugMetric[]): BirthCertificate {
    return new BirthCertificate(metrics.filter((m) => m.name !== undefined)
      .map((m) => ({ name: m.name!, alias: m.alias, datatype: m.datatype })));
  }

  /** A DATA metric's definition: by name when it has one, else by alias. */
  resolve(m: SparkplugMetric): MetricDefinition | undefined {
    if (m.name !== undefined) return this.byName.get(m.name) ?? { name: m.name, alias: m.alias, datatype: m.datatype };
    return m.alias === undefined ? undefined : this.byAlias.get(m.alias);
  }

  toJSON(): MetricDefinition[] {
    return [...this.byName.values()];
  }
}

/**
 * A sequence number checked against the ones before it: in order, ahead of a missing one (held
 * until the reorder timeout: the broker may deliver a queued message after a live one), or late
 * (a message already passed: a redelivery, or one that came after the timeout).
 */
export type SeqCheck = 'in-order' | 'ahead' | 'late';

export interface SeqGap {
  /** The first missing sequence number. */
  expected: number;
  /** The numbers that arrived beyond it. */
  received: number[];
}

export class EdgeNodeState {
  /** From the NBIRTH's bdSeq metric; an NDEATH with another bdSeq is from an older session. */
  bdSeq: number | undefined;
  online = false;
  /** The lowest sequence number not seen yet; undefined after a restart or a death, when the next message sets it. */
  private expected: number | undefined;
  private readonly ahead = new Set<number>();
  private aheadSince = 0;
  node: BirthCertificate | undefined;
  readonly devices = new Map<string, BirthCertificate>();
  /** Registry device ids the ingestor recorded a DEATH event for and has not seen born again. */
  readonly offline = new Set<string>();

  constructor(readonly groupId: string, readonly edgeNodeId: string) {}

  /** Notes a message's seq (0..255, wrapping). Distances of 128 and more behind count as late. */
  checkSeq(seq: number | undefined, now = Date.now()): SeqCheck {
    if (seq === undefined) return 'in-order';
    if (this.expected === undefined) {
      this.expected = (seq + 1) % 256;
      return 'in-order';
    }
    const distance = (seq - this.expected + 256) % 256;
    if (distance === 0) {
      this.expected = (seq + 1) % 256;
      while (this.ahead.delete(this.expected)) this.expected = (this.expected + 1) % 256;
      if (this.ahead.size === 0) this.aheadSince = 0;
      return 'in-order';
    }
    if (distance < 128) {
      if (this.ahead.size === 0) this.aheadSince = now;
      this.ahead.add(seq);
      return 'ahead';
    }
    return 'late';
  }

  /** A gap the reorder timeout has run out on (then the sequence goes on after what arrived), else undefined. */
  overdueGap(now: number, reorderTimeoutMs: number): SeqGap | undefined {
    if (this.ahead.size === 0 || now - this.aheadSince < reorderTimeoutMs || this.expected === undefined) return undefined;
    const from = this.expected;
    const received = [...this.ahead].sort((a, b) => ((a - from + 256) % 256) - ((b - from + 256) % 256));
    this.expected = (received[received.length - 1] + 1) % 256;
    this.ahead.clear();
    this.aheadSince = 0;
    return { expected: from, received };
  }

  private resetSeq(seq: number | undefined): void {
    this.expected = seq === undefined ? undefined : (seq + 1) % 256;
    this.ahead.clear();
    this.aheadSince = 0;
  }

  nodeBirth(certificate: BirthCertificate, bdSeq: number | undefined, seq: number | undefined): void {
    this.node = certificate;
    this.bdSeq = bdSeq;
    this.online = true;
    this.resetSeq(seq);
    // A new NBIRTH voids the devices' births: the node sends its DBIRTHs after it.
    this.devices.clear();
  }

  nodeDeath(): void {
    this.online = false;
    this.resetSeq(undefined);
    this.devices.clear();
  }
}

interface SavedNode {
  groupId: string;
  edgeNodeId: string;
  bdSeq?: number;
  online: boolean;
  node?: MetricDefinition[];
  devices: [string, MetricDefinition[]][];
  offline: string[];
}

export class EdgeNodeStates {
  private readonly nodes = new Map<string, EdgeNodeState>();

  get size(): number {
    return this.nodes.size;
  }

  all(): IterableIterator<EdgeNodeState> {
    return this.nodes.values();
  }

  get(groupId: string, edgeNodeId: string): EdgeNodeState {
    const key = `${groupId}/${edgeNodeId}`;
    let s = this.nodes.get(key);
    if (!s) {
      s = new EdgeNodeState(groupId, edgeNodeId);
      this.nodes.set(key, s);
    }
    return s;
  }

  /** Birth certificates survive a restart (the messages queued meanwhile may be alias-only DATA); seq numbers resynchronise. */
  toJSON(): SavedNode[] {
    return [...this.nodes.values()].map((s) => ({
      groupId: s.groupId, edgeNodeId: s.edgeNodeId, bdSeq: s.bdSeq, online: s.online, node: s.node?.toJSON(),
      devices: [...s.devices].map(([id, c]) => [id, c.toJSON()]), offline: [...s.offline],
    }));
  }

  static fromJSON(saved: SavedNode[]): EdgeNodeStates {
    const states = new EdgeNodeStates();
    for (const n of saved) {
      const s = states.get(n.groupId, n.edgeNodeId);
      s.bdSeq = n.bdSeq;
      s.online = n.online;
      if (n.node) s.node = new BirthCertificate(n.node);
      for (const [id, defs] of n.devices) s.devices.set(id, new BirthCertificate(defs));
      for (const id of n.offline) s.offline.add(id);
    }
    return states;
  }
}
