// graphile-worker runner with the project's tasks (workers/*.ts) and schedule.
import { Logger, run, Runner, TaskList } from 'graphile-worker';
import createPartitions from '../../workers/telemetry__create_partitions';
import refreshRollups from '../../workers/rollups__refresh';
import applyRetention from '../../workers/telemetry__apply_retention';
import compressTelemetry from '../../workers/telemetry__compress';
import archiveTelemetry from '../../workers/telemetry__archive';
import checkHeartbeats from '../../workers/devices__check_heartbeats';
import evaluateSpc from '../../workers/spc__evaluate';
import calculateHealth from '../../workers/health__calculate_scores';
import pruneDeadLetters from '../../workers/dead_letters__prune';
import deliverAlert from '../../workers/alerts__deliver';
import sweepAlerts from '../../workers/alerts__sweep';
import rollupPerformance from '../../workers/performance__rollup_hourly';
import prunePerformance from '../../workers/performance__prune_logs';
import pruneLiveEvents from '../../workers/live_events__prune';
import flushLiveReadings from '../../workers/live_events__flush';
import catchUpEvents from '../../workers/events__catch_up';
import { loadConfig } from './config';
import { logger } from './log';

export const taskList: TaskList = {
  telemetry__create_partitions: createPartitions,
  rollups__refresh: refreshRollups,
  telemetry__apply_retention: applyRetention,
  telemetry__compress: compressTelemetry,
  telemetry__archive: archiveTelemetry,
  devices__check_heartbeats: checkHeartbeats,
  spc__evaluate: evaluateSpc,
  health__calculate_scores: calculateHealth,
  dead_letters__prune: pruneDeadLetters,
  alerts__deliver: deliverAlert,
  alerts__sweep: sweepAlerts,
  performance__rollup_hourly: rollupPerformance,
  performance__prune_logs: prunePerformance,
  live_events__prune: pruneLiveEvents,
  live_events__flush: flushLiveReadings,
  events__catch_up: catchUpEvents,
};

// Times are UTC. `?max=1`: a failed run is not retried; the next tick runs it again anyway.
export const crontab = (retentionDays: number, healthIntervalMinutes = 15, deadLetterRetentionDays = 30) => [
  `*/${healthIntervalMinutes} * * * * health__calculate_scores ?max=1 ${JSON.stringify({ intervalMinutes: healthIntervalMinutes })}`,
  '* * * * * rollups__refresh ?max=1',
  '* * * * * devices__check_heartbeats ?max=1',
  '* * * * * spc__evaluate ?max=1',
  '* * * * * alerts__sweep ?max=1',
  '* * * * * live_events__flush ?max=1',
  '* * * * * events__catch_up ?max=1',
  '47 * * * * live_events__prune ?max=1',
  '7 * * * * telemetry__create_partitions ?max=3',
  '37 * * * * telemetry__compress ?max=1',
  `45 2 * * * telemetry__archive ?max=1 ${JSON.stringify({ days: retentionDays })}`,
  `15 3 * * * telemetry__apply_retention ?max=1 ${JSON.stringify({ days: retentionDays })}`,
  '5 * * * * performance__rollup_hourly ?max=1 {"hours":3}',
  '41 * * * * performance__prune_logs ?max=1 {"days":14,"cacheDays":400}',
  `23 * * * * dead_letters__prune ?max=1 ${JSON.stringify({ days: deadLetterRetentionDays })}`,
].join('\n');

const workerLogger = new Logger((scope) => {
  const log = logger(scope.taskIdentifier ? `worker:${scope.taskIdentifier}` : 'worker');
  return (level, message) => {
    if (level === 'error') log.error(message);
    else if (level === 'warning') log.warn(message);
    else if (level === 'info') log.info(message);
    else log.debug(message);
  };
});

// deadLetterRetentionDays: INGEST_DEAD_LETTER_RETENTION_DAYS, read here when the caller does not pass it.
export function startWorker(connectionString: string, concurrency: number, retentionDays: number, healthIntervalMinutes = 15,
  deadLetterRetentionDays = loadConfig().INGEST_DEAD_LETTER_RETENTION_DAYS): Promise<Runner> {
  return run({
    connectionString, concurrency, noHandleSignals: true, pollInterval: 1000, taskList,
    crontab: crontab(retentionDays, healthIntervalMinutes, deadLetterRetentionDays), logger: workerLogger,
  });
}
