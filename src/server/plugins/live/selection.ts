// A live event is served from its NOTIFY payload, without SQL: fields that need SQL (relations such
// as workCenter, computed columns, connections) cannot be answered. They are refused when the
// client subscribes, naming the field, rather than silently sent as null.
import { getNamedType, GraphQLError, isObjectType, type GraphQLObjectType, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';

/** Per GraphQL type name: the fields a payload can serve, or undefined when every field can be. */
export type Servable = (typeName: string) => ReadonlySet<string> | undefined;

export function refuseUnservableFields(info: GraphQLResolveInfo, servable: Servable): void {
  const root = getNamedType(info.returnType);
  if (!isObjectType(root)) return;
  for (const node of info.fieldNodes) if (node.selectionSet) walk(info, node.selectionSet, root, servable, new Set());
}

function walk(info: GraphQLResolveInfo, set: SelectionSetNode, type: GraphQLObjectType, servable: Servable, seen: Set<string>) {
  const allowed = servable(type.name);
  for (const sel of set.selections) {
    if (sel.kind === 'InlineFragment') {
      walk(info, sel.selectionSet, type, servable, seen);
      continue;
    }
    if (sel.kind === 'FragmentSpread') {
      const fragment = info.fragments[sel.name.value];
      if (fragment && !seen.has(fragment.name.value)) walk(info, fragment.selectionSet, type, servable, new Set([...seen, fragment.name.value]));
      continue;
    }
    const name = sel.name.value;
    if (name === '__typename') continue;
    if (allowed && !allowed.has(name)) {
      throw new GraphQLError(
        `field ${name} is not available in subscription payloads; query it by id (${type.name}.${name} is read with SQL, which a live event does not run)`,
        sel,
      );
    }
    const child = getNamedType(type.getFields()[name]?.type);
    if (sel.selectionSet && child && isObjectType(child)) walk(info, sel.selectionSet, child, servable, seen);
  }
}
