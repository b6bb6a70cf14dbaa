// The seed's GraphQL names keep their spelling (OEETrend, currentOEE, targetOEEPercentage): the
// default inflectors camel-case every name, which would turn them into OeeTrend and currentOee.
// A smart tag `@exactName X` on a type or column gives X verbatim.
import { makeAddInflectorsPlugin } from 'postgraphile';

interface Tagged {
  tags: Record<string, unknown>;
  /** A composite type's class: `comment on type` tags its pg_type, not its pg_class. */
  type?: Tagged;
}

const exact = (thing: Tagged) => (typeof thing.tags.exactName === 'string' ? thing.tags.exactName : undefined);

export const ExactNamesPlugin = makeAddInflectorsPlugin(
  (inflection) => {
    const { column, tableType } = inflection;
    return {
      column(this: unknown, attr: Tagged) {
        return exact(attr) ?? column.call(this, attr);
      },
      tableType(this: unknown, table: Tagged) {
        return exact(table) ?? (table.type && exact(table.type)) ?? tableType.call(this, table);
      },
    };
  },
  true,
);
