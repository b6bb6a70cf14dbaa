// Sparkplug B topics (spBv1.0): spBv1.0/<group>/<message type>/<edge node>[/<device>], and the
// primary host's spBv1.0/STATE/<host id>. Device-level messages (DBIRTH, DDATA, DDEATH, DCMD)
// name a device; node-level ones do not.

export const NAMESPACE = 'spBv1.0';

export type NodeMessageType = 'NBIRTH' | 'NDATA' | 'NDEATH' | 'NCMD';
export type DeviceMessageType = 'DBIRTH' | 'DDATA' | 'DDEATH' | 'DCMD';
export type MessageType = NodeMessageType | DeviceMessageType | 'STATE';

const NODE_TYPES = new Set<string>(['NBIRTH', 'NDATA', 'NDEATH', 'NCMD']);
const DEVICE_TYPES = new Set<string>(['DBIRTH', 'DDATA', 'DDEATH', 'DCMD']);

export interface SparkplugTopic {
  messageType: NodeMessageType | DeviceMessageType;
  groupId: string;
  edgeNodeId: string;
  /** Absent on node-level messages. */
  deviceId?: string;
}

export type ParsedTopic = SparkplugTopic | { messageType: 'STATE'; hostId: string } | { problem: string };

// Sparkplug ids are MQTT topic levels: no '/', '+' or '#', not empty.
const validId = (s: string | undefined): s is string => !!s && !/[+#]/.test(s);

export function parseSparkplugTopic(topic: string): ParsedTopic {
  const parts = topic.split('/');
  if (parts[0] !== NAMESPACE) return { problem: `topic ${JSON.stringify(topic)} is not in the ${NAMESPACE} namespace` };
  if (parts[1] === 'STATE') {
    if (parts.length === 3 && validId(parts[2])) return { messageType: 'STATE', hostId: parts[2] };
    return { problem: `topic ${JSON.stringify(topic)}: a STATE topic is ${NAMESPACE}/STATE/<host id>` };
  }
  const [, groupId, type, edgeNodeId, deviceId] = parts;
  if (NODE_TYPES.has(type)) {
    if (parts.length !== 4 || !validId(groupId) || !validId(edgeNodeId)) {
      return { problem: `topic ${JSON.stringify(topic)}: a ${type} topic is ${NAMESPACE}/<group>/${type}/<edge node>` };
    }
    return { messageType: type as NodeMessageType, groupId, edgeNodeId };
  }
  if (DEVICE_TYPES.has(type)) {
    if (parts.length !== 5 || !validId(groupId) || !validId(edgeNodeId) || !validId(deviceId)) {
      return { problem: `topic ${JSON.stringify(topic)}: a ${type} topic is ${NAMESPACE}/<group>/${type}/<edge node>/<device>` };
    }
    return { messageType: type as DeviceMessageType, groupId, edgeNodeId, deviceId };
  }
  return { problem: `topic ${JSON.stringify(topic)}: ${JSON.stringify(type ?? '')} is not a Sparkplug message type ` +
    '(NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH, NCMD, DCMD, STATE)' };
}

export function sparkplugTopic(t: SparkplugTopic): string {
  return [NAMESPACE, t.groupId, t.messageType, t.edgeNodeId, ...(t.deviceId === undefined ? [] : [t.deviceId])].join('/');
}

/** The key of one edge node (group/node) and of one of its devices or the node itself (group/node/device or group/node/). */
export const nodeKey = (groupId: string, edgeNodeId: string) => `${groupId}/${edgeNodeId}`;
export const deviceKey = (groupId: string, edgeNodeId: string, deviceId?: string) => `${groupId}/${edgeNodeId}/${deviceId ?? ''}`;

/** How a group/node/device is named in logs and dead letters. */
export const describe = (t: { groupId: string; edgeNodeId: string; deviceId?: string }) =>
  `group ${JSON.stringify(t.groupId)} edge node ${JSON.stringify(t.edgeNodeId)}` +
  (t.deviceId === undefined ? '' : ` device ${JSON.stringify(t.deviceId)}`);
