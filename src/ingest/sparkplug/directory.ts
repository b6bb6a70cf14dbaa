// Which registry device a Sparkplug edge node or device is: an active device with connection_type
// MQTT whose connection_config holds sparkplug: { groupId, edgeNodeId, deviceId? } (no deviceId:
// the edge node's own metrics). Its channels are found by protocol_address = the metric name.
// Rebuilt from the registry snapshot whenever the registry reloads (cheap: a version check per message).
import type { ChannelInfo, RegistryCache } from '../registry';
import { deviceKey } from './topic';

export interface SparkplugIdentity {
  groupId: string;
  edgeNodeId: string;
  deviceId?: string;
}

export interface MappedDevice {
  tenantId: string;
  deviceId: string;
  deviceCode: string;
  workCenterId: string;
  identity: SparkplugIdentity;
  /** By metric name (the channel's protocol_address). */
  channels: Map<string, ChannelInfo>;
}

/** The sparkplug key of a connection_config, or undefined when it has none (a plain MQTT device). */
export function sparkplugIdentity(config: Record<string, unknown> | null | undefined): SparkplugIdentity | undefined {
  const s = config?.sparkplug as Record<string, unknown> | undefined;
  if (!s || typeof s !== 'object' || typeof s.groupId !== 'string' || typeof s.edgeNodeId !== 'string') return undefined;
  return { groupId: s.groupId, edgeNodeId: s.edgeNodeId, ...(typeof s.deviceId === 'string' ? { deviceId: s.deviceId } : {}) };
}

export class SparkplugDirectory {
  private version = -1;
  private byKey = new Map<string, MappedDevice>();
  private byNode = new Map<string, MappedDevice[]>();

  constructor(private readonly registry: RegistryCache) {}

  private refresh(): void {
    if (this.version === this.registry.version) return;
    this.version = this.registry.version;
    const byKey = new Map<string, MappedDevice>();
    const byNode = new Map<string, MappedDevice[]>();
    for (const c of this.registry.channelsByConnection('MQTT')) {
      const identity = sparkplugIdentity(c.connectionConfig);
      if (!identity || !c.protocolAddress) continue;
      const key = deviceKey(identity.groupId, identity.edgeNodeId, identity.deviceId);
      let d = byKey.get(key);
      if (!d) {
        d = { tenantId: c.tenantId, deviceId: c.deviceId, deviceCode: c.deviceCode, workCenterId: c.workCenterId, identity, channels: new Map() };
        byKey.set(key, d);
        const nodeKey = `${identity.groupId}/${identity.edgeNodeId}`;
        byNode.set(nodeKey, [...(byNode.get(nodeKey) ?? []), d]);
      }
      if (d.deviceId === c.deviceId) d.channels.set(c.protocolAddress, c);
    }
    this.byKey = byKey;
    this.byNode = byNode;
  }

  get devices(): number {
    this.refresh();
    return this.byKey.size;
  }

  device(groupId: string, edgeNodeId: string, deviceId?: string): MappedDevice | undefined {
    this.refresh();
    return this.byKey.get(deviceKey(groupId, edgeNodeId, deviceId));
  }

  /** The node-level device and every device under the edge node. */
  devicesOfNode(groupId: string, edgeNodeId: string): MappedDevice[] {
    this.refresh();
    return this.byNode.get(`${groupId}/${edgeNodeId}`) ?? [];
  }
}

/** Whether the registry has any Sparkplug device (for `iot start`: run the Sparkplug ingestor only then). */
export function hasSparkplugDevices(registry: RegistryCache): boolean {
  return registry.channelsByConnection('MQTT').some((c) => c.protocolAddress && sparkplugIdentity(c.connectionConfig));
}
