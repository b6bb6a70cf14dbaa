// A hard cap on page sizes for telemetry: connections over readings and rollups must say how
// many rows they want (first or last), and never more than API_MAX_PAGE_SIZE.
import { makeWrapResolversPlugin } from 'postgraphile';

const TELEMETRY = new Set(['sensor_readings', 'device_readings', 'sensor_history', 'ingest_dead_letters']);

export const pageCapPlugin = (max: number) =>
  makeWrapResolversPlugin(
    (context) => {
      const scope = context.scope as { isPgFieldConnection?: boolean; isPgFieldSimpleCollection?: boolean; pgFieldIntrospection?: { name?: string } };
      const name = scope.pgFieldIntrospection?.name;
      if ((scope.isPgFieldConnection || scope.isPgFieldSimpleCollection) && name && TELEMETRY.has(name)) return { name };
      return null;
    },
    () => async (resolve, source, args, context, info) => {
      const n = (args.first ?? args.last) as number | undefined;
      if (n === undefined || n === null) {
        throw new Error(`${info.fieldName}: telemetry is paged; pass first or last (at most ${max})`);
      }
      if (n > max) throw new Error(`${info.fieldName}: first/last ${n} is above the limit of ${max}`);
      return resolve(source, args, context, info);
    },
  );
