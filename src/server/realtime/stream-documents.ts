// The fixed GraphQL subscriptions behind the SSE stream of one work center. They run through
// graphql's subscribe() against the API's own schema, so the SSE stream has the WebSocket's
// resolvers, tenancy and argument checks exactly. A subscription is used when the schema has it
// (the seed's names, issue 8 part 1), with the fallback of this API's older equipmentEventRaised
// until then; facility-wide subscriptions are filtered to the work center by their workCenterId.
import {
  getNamedType, type GraphQLField, type GraphQLObjectType, type GraphQLSchema, isLeafType, isNonNullType, isObjectType, parse, type DocumentNode,
} from 'graphql';

export interface StreamSpec {
  /** The SSE event name. */
  event: string;
  field: string;
  /** The argument naming what to follow: the work center itself, its facility, or the caller's tenant. */
  arg?: StreamArg;
  /** Used only when the schema lacks this field. */
  fallbackFor?: string;
}

export type StreamArg = 'workCenterId' | 'facilityId' | 'tenantId';

export const STREAM_SPECS: readonly StreamSpec[] = [
  { event: 'health-score', field: 'equipmentHealthScoreUpdated', arg: 'workCenterId' },
  { event: 'status-change', field: 'equipmentHealthStatusChanged', arg: 'facilityId' },
  { event: 'equipment-event', field: 'equipmentEventTriggered', arg: 'workCenterId' },
  { event: 'anomaly', field: 'equipmentAnomalyDetected', arg: 'facilityId' },
  { event: 'alert', field: 'predictiveMaintenanceAlertCreated', arg: 'facilityId' },
  { event: 'critical-alert', field: 'criticalAlertTriggered', arg: 'tenantId' },
  { event: 'alert-change', field: 'predictiveMaintenanceAlertChanged', arg: 'facilityId' },
  { event: 'equipment-event', field: 'equipmentEventRaised', fallbackFor: 'equipmentEventTriggered' },
];

export interface StreamDocument {
  spec: StreamSpec;
  document: DocumentNode;
  /** The payload fields asked for. */
  leaves: string[];
  /** The same subscription without one field (the resolvers refused it: it needs SQL). */
  without(field: string): StreamDocument | undefined;
  /** The variable's name, when the subscription takes one. */
  variable?: StreamArg;
  /** Events of other work centers are dropped (facility-wide or tenant-wide subscriptions). */
  filterByWorkCenter: boolean;
}

const plainField = (f: GraphQLField<unknown, unknown>) => !f.args.some((a) => isNonNullType(a.type));

/**
 * Every scalar and enum field without required arguments: the payload as the contract names it;
 * and one level into object fields (an alert change carries its alert), as `name { leaves }`.
 */
function leafSelection(type: GraphQLObjectType, nested = true): string[] {
  const out: string[] = [];
  for (const f of Object.values(type.getFields())) {
    if (!plainField(f)) continue;
    const t = getNamedType(f.type);
    if (isLeafType(t)) out.push(f.name);
    else if (nested && isObjectType(t) && !('pageInfo' in t.getFields())) {
      const inner = leafSelection(t, false);
      if (inner.length) out.push(`${f.name} { ${inner.join(' ')} }`);
    }
  }
  return out;
}

/** The work center an event is about: its own workCenterId, or that of the object it carries. */
export function workCenterOf(payload: Record<string, unknown>): string | undefined {
  if (typeof payload.workCenterId === 'string') return payload.workCenterId;
  for (const v of Object.values(payload)) {
    if (v && typeof v === 'object' && typeof (v as Record<string, unknown>).workCenterId === 'string') return (v as Record<string, string>).workCenterId;
  }
  return undefined;
}

function documentFor(spec: StreamSpec, field: GraphQLField<unknown, unknown>, only?: string[]): StreamDocument | undefined {
  const type = getNamedType(field.type);
  if (!isObjectType(type)) return undefined;
  const leaves = only ?? leafSelection(type);
  const arg = spec.arg ? field.args.find((a) => a.name === spec.arg) : undefined;
  if (spec.arg && !arg) return undefined;
  if (field.args.some((a) => isNonNullType(a.type) && a !== arg)) return undefined; // needs what we cannot give
  const scopedToWorkCenter = spec.arg === 'workCenterId';
  if (!scopedToWorkCenter && !leaves.some((l) => l === 'workCenterId' || / workCenterId /.test(l))) return undefined; // could not filter it
  const header = arg ? `($${arg.name}: ${String(arg.type)})` : '';
  const call = arg ? `(${arg.name}: $${arg.name})` : '';
  if (!leaves.length) return undefined;
  return {
    spec,
    leaves,
    // A refused field is a leaf here or inside one nested selection: drop either.
    without: (name) => documentFor(spec, field, leaves
      .filter((l) => l !== name && !l.startsWith(`${name} {`))
      .map((l) => l.replace(new RegExp(`(\\{| )${name}(?= )`), '$1').replace(/\s+/g, ' '))
      .filter((l) => !/\{\s*\}$/.test(l))),
    document: parse(`subscription Stream${header} { ${field.name}${call} { ${leaves.join(' ')} } }`),
    variable: arg ? spec.arg : undefined,
    filterByWorkCenter: !scopedToWorkCenter,
  };
}

const cache = new WeakMap<GraphQLSchema, StreamDocument[]>();

/** The field a subscribe error refuses as not servable from a live payload (plugins/live/selection.ts), if that is the error. */
export function refusedField(message: string): string | undefined {
  return /^field (\w+) is not available in subscription payloads/.exec(message)?.[1];
}

/** The stream's documents for this schema (built once per schema; sse.ts narrows them when a field is refused). */
export function streamDocuments(schema: GraphQLSchema): StreamDocument[] {
  let docs = cache.get(schema);
  if (docs) return docs;
  const fields = schema.getSubscriptionType()?.getFields() ?? {};
  docs = [];
  for (const spec of STREAM_SPECS) {
    if (spec.fallbackFor && fields[spec.fallbackFor] && docs.some((d) => d.spec.field === spec.fallbackFor)) continue;
    const field = fields[spec.field];
    const doc = field && documentFor(spec, field);
    if (doc) docs.push(doc);
  }
  cache.set(schema, docs);
  return docs;
}
