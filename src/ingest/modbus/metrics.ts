// The Modbus poller on /metrics (src/lib/metrics.ts). Rates are PromQL's job:
// rate(iot_ingest_modbus_failed_requests_total[5m]).
import { addSource, pulled } from '../../lib/metrics';
import type { ModbusPoller } from './poller';

const modbusMetrics = [
  pulled<ModbusPoller>('gauge', { name: 'iot_ingest_modbus_devices', help: 'Modbus devices being polled' }, (p) => p.stats.devices),
  pulled<ModbusPoller>('gauge', { name: 'iot_ingest_modbus_connected_devices', help: 'Modbus devices with an open connection' }, (p) => p.stats.connectedDevices),
  pulled<ModbusPoller>('counter', { name: 'iot_ingest_modbus_polls_total', help: 'Modbus polls made' }, (p) => p.stats.polls),
  pulled<ModbusPoller>('counter', { name: 'iot_ingest_modbus_answered_requests_total', help: 'Modbus read requests answered' }, (p) => p.stats.answeredRequests),
  pulled<ModbusPoller>('counter', { name: 'iot_ingest_modbus_failed_requests_total', help: 'Modbus read requests that timed out, were refused (exception) or had no connection' }, (p) => p.stats.failedRequests),
  pulled<ModbusPoller>('counter', { name: 'iot_ingest_modbus_readings_total', help: 'Readings the Modbus poller handed to the sink' }, (p) => p.stats.readings),
  pulled<ModbusPoller>('counter', { name: 'iot_ingest_modbus_events_total', help: 'Equipment events raised by the Modbus poller (faults and recoveries)' }, (p) => p.stats.eventsRaised),
];

/** Shows this poller's counters on /metrics; returns the removal. */
export function registerModbusMetrics(poller: ModbusPoller): () => void {
  return addSource(modbusMetrics, poller);
}
