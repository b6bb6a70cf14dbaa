// Live events carry rows as to_jsonb() of an iot.* relation (snake_case column names). The GraphQL
// types of those relations are PostGraphile's, whose column fields read data[fieldName]; so a row is
// re-keyed by the field name PostGraphile's inflection gives each column (at schema build time, so
// smart-tag renames such as @exactName are followed). __identifiers makes nodeId work.
import type { Build } from 'graphile-build';

export interface RowShape {
  /** iot.<relation> */
  relation: string;
  /** column name -> GraphQL field name */
  fieldOf: Map<string, string>;
  /** Primary key columns, in order (nodeId). */
  primaryKey: string[];
  /** The fields a payload can serve: the columns' fields, nodeId and __typename. */
  servable: Set<string>;
}

interface PgAttribute {
  name: string;
}
interface PgClass {
  name: string;
  namespaceName: string;
  attributes: PgAttribute[];
  primaryKeyConstraint?: { keyAttributes: PgAttribute[] };
}

export function rowShape(build: Build, relation: string): RowShape {
  const classes = (build as unknown as { pgIntrospectionResultsByKind: { class: PgClass[] } }).pgIntrospectionResultsByKind.class;
  const klass = classes.find((c) => c.namespaceName === 'iot' && c.name === relation);
  if (!klass) throw new Error(`subscriptions: relation iot.${relation} is not in the PostGraphile introspection`);
  const inflection = build.inflection as unknown as { column(attr: PgAttribute): string };
  const fieldOf = new Map(klass.attributes.map((a) => [a.name, inflection.column(a)]));
  const nodeId = (build as unknown as { nodeIdFieldName?: string }).nodeIdFieldName ?? 'nodeId';
  return {
    relation: `iot.${relation}`,
    fieldOf,
    primaryKey: klass.primaryKeyConstraint?.keyAttributes.map((a) => a.name) ?? [],
    servable: new Set([...fieldOf.values(), nodeId, '__typename']),
  };
}

/** A to_jsonb() row as the object PostGraphile's resolvers of that relation's type read. */
export function graphqlRow(shape: RowShape, row: unknown): Record<string, unknown> {
  if (!row || typeof row !== 'object') throw new Error(`a live event has no ${shape.relation} row`);
  const source = row as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [column, field] of shape.fieldOf) out[field] = source[column] ?? null;
  if (shape.primaryKey.length && shape.primaryKey.every((c) => source[c] != null)) {
    out.__identifiers = shape.primaryKey.map((c) => source[c]);
  }
  return out;
}

/** A number from JSON (numeric columns may arrive as numbers or numeric strings). */
export function num(value: unknown): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

export function str(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}
