// The real API for a suite: startApi on a free loopback port over the suite's database, a token
// signer, a POST helper and the generated schema by introspection (as a client would see it).
import { getIntrospectionQuery, IntrospectionField, IntrospectionQuery, IntrospectionType, IntrospectionTypeRef } from 'graphql';
import { ClosablePool, createPool } from '../../src/lib/db/pool';
import { signToken } from '../../src/lib/secrets';
import { ApiServer, startApi } from '../../src/server/app';

export interface GqlResult {
  data?: any;
  errors?: { message: string; errcode?: string }[];
}

export interface TestApi {
  url: string;
  token(role: 'iot_operator' | 'iot_analyst', tenantId: string, subject?: string): string;
  gql(query: string, variables?: Record<string, unknown>, bearer?: string | null): Promise<GqlResult>;
  introspect(bearer?: string | null): Promise<IntrospectionQuery>;
  close(): Promise<void>;
}

export async function startTestApi(databaseUrl: string, secret = 'test-secret-for-contract-suite'): Promise<TestApi> {
  const pool: ClosablePool = createPool(databaseUrl, 4, 'test-api');
  let api: ApiServer;
  try {
    api = await startApi({ pool, host: '127.0.0.1', port: 0, jwtSecret: secret, graphiql: false, websockets: true,
      graphqlPath: '/graphql', maxPageSize: 100 });
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
