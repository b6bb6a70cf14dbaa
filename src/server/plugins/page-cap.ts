// Every connection is capped at API_MAX_PAGE_SIZE rows (issue 7, finding 9: `workCenters` and
// `equipmentEvents` took any `first`). Two parts:
//  - here, in the schema: a connection asked for without first/last reads at most API_MAX_PAGE_SIZE
//    rows (pageInfo.hasNextPage says when there are more), also when nested, because the limit goes
//    into the SQL that PostGraphile builds for the whole query; and telemetry connections are
//    marked so that the validation rule requires first or last on them;
//  - in src/server/limits.ts, before any SQL runs: first/last above the cap, or missing on
//    telemetry, is refused with IOT11. (A resolver wrapper would run too late: nested connections
//    are fetched by their parent's SQL, before their own resolver is called.)
import type { Plugin } from 'graphile-build';
import { TELEMETRY_EXTENSION } from '../limits';

const TELEMETRY = new Set(['sensor_readings', 'device_readings', 'sensor_history', 'ingest_dead_letters']);

interface Scope {
  isPgFieldConnection?: boolean;
  isPgFieldSimpleCollection?: boolean;
  pgFieldIntrospection?: { kind?: string; name?: string };
}

const paged = (scope: Scope) =>
  (scope.isPgFieldConnection || scope.isPgFieldSimpleCollection) &&
  (scope.pgFieldIntrospection?.kind === 'class' || scope.pgFieldIntrospection?.kind === 'procedure');

export const pageCapPlugin = (max: number): Plugin => (builder) => {
  builder.hook('GraphQLObjectType:fields:field:args', (args, _build, context) => {
    if (!paged(context.scope as Scope)) return args;
    context.addArgDataGenerator(({ first, last }: { first?: number | null; last?: number | null }) => ({
      pgQuery: (queryBuilder: { first(n: number): void }) => {
        if ((first === null || first === undefined) && (last === null || last === undefined)) queryBuilder.first(max);
      },
    }));
    return args;
  });
  builder.hook('GraphQLObjectType:fields:field', (field, _build, context) => {
    const scope = context.scope as Scope;
    if (!paged(scope) || !TELEMETRY.has(scope.pgFieldIntrospection?.name ?? '')) return field;
    return { ...field, extensions: { ...(field.extensions ?? {}), [TELEMETRY_EXTENSION]: true } };
  });
};
