// The real API for a suite: startApi on a free loopback port over the suite's database, a token
// signer, a POST helper and the generated schema by introspection (as a client would see it).
import { getIntrospectionQuery, IntrospectionField, IntrospectionQuery, IntrospectionType, IntrospectionTypeRef } from 'graphql';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiOptions, ApiServer, startApi } from '../../src/server/app';

export interface GqlResult {
  data?: any;
  errors?: { message: string; errcode?: string }[];
}

export interface TestApi {
  url: string;
  /** ws://host:port/graphql */
  wsUrl: string;
  /** The running server (realtime counts, the http.Server). */
  api: ApiServer;
  token(role: 'iot_operator' | 'iot_analyst', tenantId: string, subject?: string): string;
  gql(query: string, variables?: Record<string, unknown>, bearer?: string | null): Promise<GqlResult>;
  introspect(bearer?: string | null): Promise<IntrospectionQuery>;
  close(): Promise<void>;
}

/** options: any of startApi's (realtime limits, timers...); poolName names the pool's sessions (application_name). */
export async function startTestApi(databaseUrl: string, secret = 'test-secret-for-contract-suite',
  options: Partial<ApiOptions> & { poolName?: string } = {}): Promise<TestApi> {
  const { poolName = 'test-api', ...apiOptions } = options;
  const pool: ClosablePool = createPool(databaseUrl, 4, poolName);
  let api: ApiServer;
  try {
    api = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: secret, graphiql: false, websockets: true,
      graphqlPath: '/graphql', maxPageSize: 100, ...apiOptions });
  } catch (error) {
    await pool.close();
    throw error;
  }
  const gql = async (query: string, variables: Record<string, unknown> = {}, bearer: string | null = null): Promise<GqlResult> => {
    const res = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return (await res.json()) as GqlResult;
  };
  return {
    url: api.url,
    wsUrl: api.url.replace(/^http/, 'ws') + (apiOptions.wsPath ?? apiOptions.graphqlPath ?? '/graphql'),
    api,
    token: (role, tenantId, subject = 'contract-test') => signToken(secret, { role, tenantId, subject }),
    gql,
    async introspect(bearer = null) {
      const r = await gql(getIntrospectionQuery(), {}, bearer);
      if (r.errors?.length || !r.data) throw new Error(`introspection failed: ${JSON.stringify(r.errors)}`);
      return r.data as IntrospectionQuery;
    },
    async close() {
      await api.close();
      await pool.close();
    },
  };
}

/** The named type under NON_NULL / LIST wrappers, and how it is wrapped (e.g. "[Foo!]!"). */
export function unwrap(ref: IntrospectionTypeRef): { name: string; kind: string; shown: string } {
  let r: any = ref;
  const wrap: string[] = [];
  while (r.kind === 'NON_NULL' || r.kind === 'LIST') {
    wrap.push(r.kind);
    r = r.ofType;
  }
  let shown = r.name as string;
  for (const w of wrap.reverse()) shown = w === 'LIST' ? `[${shown}]` : `${shown}!`;
  return { name: r.name, kind: r.kind, shown };
}

export function typeMap(schema: IntrospectionQuery): Map<string, IntrospectionType> {
  return new Map(schema.__schema.types.map((t) => [t.name, t]));
}

export function fieldsOf(type: IntrospectionType | undefined): IntrospectionField[] {
  return type && 'fields' in type && type.fields ? [...type.fields] : [];
}

export function rootFields(schema: IntrospectionQuery, root: 'query' | 'mutation' | 'subscription'): IntrospectionField[] {
  const name = { query: schema.__schema.queryType, mutation: schema.__schema.mutationType, subscription: schema.__schema.subscriptionType }[root]?.name;
  return name ? fieldsOf(typeMap(schema).get(name)) : [];
}

/** The row type a root field returns: the named type itself, or the node type of a PostGraphile connection (`nodes`). */
export function rowTypeOf(schema: IntrospectionQuery, field: IntrospectionField): string {
  const types = typeMap(schema);
  const named = unwrap(field.type).name;
  const nodes = fieldsOf(types.get(named)).find((f) => f.name === 'nodes');
  return nodes ? unwrap(nodes.type).name : named;
}

// Realtime helpers ------------------------------------------------------------------------------

/** The subscription that carries a new equipment event of a work center: the seed's name when the schema has it. */
export async function equipmentEventSubscription(api: TestApi, bearer: string, workCenterId: string):
  Promise<{ query: string; variables: Record<string, unknown>; field: string }> {
  const fields = rootFields(await api.introspect(bearer), 'subscription');
  const seed = fields.find((f) => f.name === 'equipmentEventTriggered');
  if (seed) {
    const arg = seed.args.find((a) => a.name === 'workCenterId');
    return { field: seed.name, variables: { w: workCenterId },
      query: `subscription($w: ${arg ? unwrap(arg.type).shown : 'ID!'}) { equipmentEventTriggered(workCenterId: $w) { id eventDescription workCenterId } }` };
  }
  return { field: 'equipmentEventRaised', variables: {}, query: 'subscription { equipmentEventRaised { id eventDescription workCenterId } }' };
}

/** Records an equipment event through the API (the write a subscriber should hear of). */
export async function recordEvent(api: TestApi, bearer: string, workCenterId: string, description: string): Promise<string> {
  const r = await api.gql(`mutation($w: UUID!, $d: String!) { recordEquipmentEvent(input: { workCenterId: $w, eventType: "MAINTENANCE_REQUIRED",
    eventDescription: $d, severity: "WARNING" }) { equipmentEvent { id } } }`, { w: workCenterId, d: description }, bearer);
  if (r.errors?.length) throw new Error(`recordEquipmentEvent failed: ${JSON.stringify(r.errors)}`);
  return r.data.recordEquipmentEvent.equipmentEvent.id;
}

export interface SseReader {
  status: number;
  headers: Headers;
  /** Frames received so far: { event, data } (comments as event ':'). */
  frames: { event: string; data: any }[];
  ended: Promise<void>;
  body?: any;
  close(): void;
}

/** Opens an SSE stream with fetch and parses its frames as they come. */
export async function readSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const reader: SseReader = { status: res.status, headers: res.headers, frames: [], ended: Promise.resolve(), close: () => abort.abort() };
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    reader.body = await res.json().catch(() => undefined);
    return reader;
  }
  reader.ended = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) reader.frames.push({ event: ':', data: line.slice(1).trim() });
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) reader.frames.push({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch (error) {
      if ((error as Error).name !== 'AbortError') throw error;
    }
  })();
  return reader;
}
