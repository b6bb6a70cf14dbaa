// Rebirth requests: NCMD spBv1.0/<group>/NCMD/<edge node> with the Boolean metric
// "Node Control/Rebirth" = true, the edge node answers with NBIRTH and its DBIRTHs. Asked when the
// ingestor cannot read a DATA message (an alias, a device or the node it has no birth for) or sees
// a sequence gap; at most once per edge node per interval, so a node sending a burst of unreadable
// messages gets one request, not a storm.
import { get as sparkplugPayload } from 'sparkplug-payload';
import { NAMESPACE } from './topic';

const codec = sparkplugPayload('spBv1.0')!;

export function rebirthRequestPayload(now = Date.now()): Uint8Array {
  return codec.encodePayload({ timestamp: now, metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }] });
}

export class RebirthRequester {
  private readonly last = new Map<string, number>();
  sent = 0;
  suppressed = 0;

  constructor(private readonly publish: (topic: string, payload: Uint8Array) => void, private readonly minIntervalMs: number) {}

  /** True when a request was published now; false when one went to this node within the interval. */
  request(groupId: string, edgeNodeId: string, now = Date.now()): boolean {
    const key = `${groupId}/${edgeNodeId}`;
    const previous = this.last.get(key);
    if (previous !== undefined && now - previous < this.minIntervalMs) {
      this.suppressed++;
      return false;
    }
    this.last.set(key, now);
    this.sent++;
    this.publish(`${NAMESPACE}/${groupId}/NCMD/${edgeNodeId}`, rebirthRequestPayload(now));
    return true;
  }
}
