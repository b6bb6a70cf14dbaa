// Request planning: a device's addresses in one table that are adjacent (or overlap) are read in
// one request, up to the protocol's limits: 125 registers (FC 3/4) or 2000 bits (FC 1/2) per
// request. Gaps are not bridged by default: reading registers nobody asked for may hit addresses
// the device refuses (exception 02). A device may allow it (connection_config.maxGap).
import { isBitTable, ModbusAddress, ModbusTable } from './address';

export const MAX_REGISTERS_PER_REQUEST = 125;
export const MAX_BITS_PER_REQUEST = 2000;

export interface PlannedPoint<T> {
  address: ModbusAddress;
  item: T;
}

export interface ReadBlock<T> {
  table: ModbusTable;
  start: number;
  count: number;
  points: PlannedPoint<T>[];
}

const TABLE_ORDER: readonly ModbusTable[] = ['coil', 'discrete', 'holding', 'input'];

/** The requests that read every point, in table then address order. `maxGap`: unread registers/bits a request may span. */
export function planReads<T>(points: readonly PlannedPoint<T>[], maxGap = 0): ReadBlock<T>[] {
  const blocks: ReadBlock<T>[] = [];
  for (const table of TABLE_ORDER) {
    const limit = isBitTable(table) ? MAX_BITS_PER_REQUEST : MAX_REGISTERS_PER_REQUEST;
    const mine = points.filter((p) => p.address.table === table)
      .sort((a, b) => a.address.offset - b.address.offset || b.address.width - a.address.width);
    let block: ReadBlock<T> | undefined;
    for (const p of mine) {
      const end = p.address.offset + p.address.width; // exclusive
      if (block) {
        const blockEnd = block.start + block.count;
        const newCount = Math.max(blockEnd, end) - block.start;
        if (p.address.offset <= blockEnd + maxGap && newCount <= limit) {
          block.count = newCount;
          block.points.push(p);
          continue;
        }
      }
      block = { table, start: p.address.offset, count: p.address.width, points: [p] };
      blocks.push(block);
    }
  }
  return blocks;
}
