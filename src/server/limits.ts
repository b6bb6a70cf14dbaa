// What a GraphQL operation may ask for, checked before any SQL runs (issue 7, finding 9): a query
// nested 50 levels deep (workCenters -> iotDevices -> workCenter -> ...) ran for 5 minutes at 7.9 GB.
//  - depth: at most API_MAX_QUERY_DEPTH levels of fields (graphql-depth-limit; introspection's
//    __schema/__type fields do not count);
//  - page size: `first`/`last` of every connection at most API_MAX_PAGE_SIZE; telemetry connections
//    must give one (a connection without either gets API_MAX_PAGE_SIZE rows at most, see
//    plugins/page-cap.ts);
//  - cost (graphql-query-complexity): the rows the operation could return at most. A connection
//    costs its page size (first/last, or API_MAX_PAGE_SIZE without) times 1 + what each row asks
//    for, so nested connections multiply; each root field costs 1 more (one SQL statement each).
//    Above API_MAX_QUERY_COST the operation is refused.
// Errors carry errcode IOT11 and name the limit and what to change. The rules run in
// PostGraphile's per-request validation, after the specification's rules passed (so fragment
// cycles are refused before these rules walk the document), on HTTP and on WebSockets alike.
import depthLimit from 'graphql-depth-limit';
import { createComplexityRule, type ComplexityEstimator } from 'graphql-query-complexity';
import { ASTNode, getNamedType, GraphQLError, GraphQLField, isObjectType, Kind, type DocumentNode, type ValidationContext, type ValidationRule } from 'graphql';
import { apiCounters } from './api-metrics';

export interface QueryLimits {
  maxDepth: number;
  maxCost: number;
  maxPageSize: number;
}

/** A GraphQL error whose JSON carries errcode (PostGraphile's extendedErrors read `code`). */
export function codedError(message: string, nodes: readonly ASTNode[] | ASTNode | undefined, code: string): GraphQLError {
  return new GraphQLError(message, nodes, undefined, undefined, undefined, Object.assign(new Error(message), { code }));
}

const refused = new WeakSet<ValidationContext>();
function refuse(context: ValidationContext, message: string, nodes?: readonly ASTNode[] | ASTNode) {
  if (!refused.has(context)) {
    refused.add(context);
    apiCounters.queriesRefused++;
  }
  context.reportError(codedError(message, nodes, 'IOT11'));
}

/** A PostGraphile connection: paged by first/last, its type has pageInfo. */
export function isConnectionField(field: GraphQLField<unknown, unknown>): boolean {
  if (!field.args.some((a) => a.name === 'first')) return false;
  const type = getNamedType(field.type);
  return isObjectType(type) && 'pageInfo' in type.getFields();
}

/** Set on telemetry connection fields by plugins/page-cap.ts: first or last is required. */
export const TELEMETRY_EXTENSION = 'iotTelemetryConnection';

function depthRule(maxDepth: number): ValidationRule {
  return (context) => {
    let reported = false;
    // graphql-depth-limit reports one error per too-deep node, naming the operation ('' when
    // anonymous); one error that says which limit and what to do is clearer.
    const relay = new Proxy(context, {
      get(target, prop) {
        if (prop === 'reportError') {
          return (error: GraphQLError) => {
            if (reported) return;
            reported = true;
            refuse(target, `query is nested deeper than ${maxDepth} levels (API_MAX_QUERY_DEPTH): ask for fewer levels at once`, error.nodes);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    depthLimit(maxDepth)(relay);
    return {};
  };
}

function pagingAndCostRule(limits: QueryLimits, variables: Record<string, unknown> | undefined, operationName: string | undefined): ValidationRule {
  return (context) => {
    const seen = new Set<ASTNode>(); // a field in a fragment spread twice is estimated twice
    const once = (node: ASTNode, message: string) => {
      if (seen.has(node)) return;
      seen.add(node);
      refuse(context, message, node);
    };
    const max = limits.maxPageSize;
    const connection: ComplexityEstimator = ({ field, args, childComplexity, node }) => {
      if (!isConnectionField(field)) return undefined;
      const requested = (args.first ?? args.last) as number | null | undefined;
      if (requested === null || requested === undefined) {
        if (field.extensions?.[TELEMETRY_EXTENSION]) once(node, `${field.name}: telemetry is paged; pass first or last (at most ${max})`);
      } else if (requested < 0) {
        once(node, `${field.name}: first/last ${requested} is negative`);
      } else if (requested > max) {
        once(node, `${field.name}: first/last ${requested} is above the limit of ${max} (API_MAX_PAGE_SIZE)`);
      }
      const rows = Math.max(0, Math.min(requested ?? max, max));
      return rows * (1 + childComplexity);
    };
    const rootTypes = new Set([context.getSchema().getQueryType(), context.getSchema().getMutationType(), context.getSchema().getSubscriptionType()]);
    const other: ComplexityEstimator = ({ type, childComplexity }) => (rootTypes.has(type as never) ? 1 : 0) + childComplexity;
    return createComplexityRule({
      maximumComplexity: limits.maxCost,
      variables: variables ?? {},
      // Given only when the document has that operation: the library reads operation.name.value.
      operationName: operationName && hasOperation(context.getDocument(), operationName) ? operationName : undefined,
      estimators: [connection, other],
      createError: (maxCost, actual) => {
        apiCounters.queriesRefused += refused.has(context) ? 0 : 1;
        refused.add(context);
        return codedError(
          `query could return up to ${actual.toLocaleString('en')} rows, above API_MAX_QUERY_COST (${maxCost.toLocaleString('en')}): ` +
          `nested connections multiply their first/last (${max} when not given); pass smaller first/last on the inner ones`, undefined, 'IOT11');
      },
    })(context);
  };
}

function hasOperation(document: DocumentNode, name: string): boolean {
  return document.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.name?.value === name);
}

/** The per-request validation rules (PostGraphile hook `postgraphile:validationRules`). */
export function queryLimitRules(limits: QueryLimits, variables: Record<string, unknown> | undefined, operationName: string | undefined): ValidationRule[] {
  return [depthRule(limits.maxDepth), pagingAndCostRule(limits, variables, operationName)];
}
