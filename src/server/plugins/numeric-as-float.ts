// NUMERIC columns (scores, percentages, hours, costs) are numbers clients compute with; PostGraphile
// would send them as BigFloat strings. Every NUMERIC here is a bounded score, fraction, duration or
// amount that an IEEE 754 double holds exactly enough, so it is a GraphQL Float.
// (After the PostGraphile 4 plugin gallery's PgNumericToFloatPlugin.)
import type { Plugin } from 'graphile-build';

export const NumericAsFloatPlugin: Plugin = (builder) => {
  builder.hook('build', (build) => {
    build.pgRegisterGqlTypeByTypeId('1700', () => build.graphql.GraphQLFloat);
    return build;
  });
};
