// The Modbus address of a channel (iot.device_channels.protocol_address):
//
//   <table>:<offset>[:<type>[:<order>]]
//
//   table   holding | input | coil | discrete          (any case)
//   offset  0-based register or bit number as sent on the wire (the PDU address), 0..65535,
//           decimal or hex (0x1F). NOT the 1-based Modicon reference: what a manual calls
//           "40001" is holding:0, "30010" is input:9.
//   type    int16 | uint16 (default) | int32 | uint32 | float32          registers only
//   order   byte order of the value, A = most significant byte:
//           16-bit: AB (default, big-endian) | BA
//           32-bit: ABCD (default, big-endian, high word first) | CDAB (word swap) |
//                   BADC (byte swap) | DCBA (little-endian)
//           BE and LE are accepted for both widths (AB/ABCD and BA/DCBA).
//   Coils and discrete inputs are single bits (0 or 1) and take no type or order.
//
// Examples: holding:0, holding:100:int32:BE, input:30010:float32:CDAB, coil:5, discrete:0x0C.
// sql/142_modbus_addresses.sql checks the same grammar when a channel is saved (error IOT01).

export type ModbusTable = 'holding' | 'input' | 'coil' | 'discrete';
export type RegisterType = 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32';
export type ByteOrder = 'AB' | 'BA' | 'ABCD' | 'CDAB' | 'BADC' | 'DCBA';

export interface ModbusAddress {
  table: ModbusTable;
  /** 0-based wire address of the first register or bit. */
  offset: number;
  /** Registers (or bits) the value spans: 1 for 16-bit types and bits, 2 for 32-bit types. */
  width: number;
  /** undefined for coils and discrete inputs. */
  type?: RegisterType;
  order?: ByteOrder;
}

export const isBitTable = (t: ModbusTable) => t === 'coil' || t === 'discrete';

const GRAMMAR = /^(holding|input|coil|discrete):(0x[0-9a-f]{1,4}|\d{1,5})(?::([a-z0-9]+)(?::([a-z]+))?)?$/i;
const TYPES: readonly RegisterType[] = ['int16', 'uint16', 'int32', 'uint32', 'float32'];
const ORDERS_16: readonly ByteOrder[] = ['AB', 'BA'];
const ORDERS_32: readonly ByteOrder[] = ['ABCD', 'CDAB', 'BADC', 'DCBA'];

export const ADDRESS_FORMAT = '<holding|input|coil|discrete>:<0-based offset>[:<int16|uint16|int32|uint32|float32>[:<byte order>]]';

/** The parsed address, or a sentence saying what is wrong with it. */
export function parseModbusAddress(text: string | null | undefined): ModbusAddress | string {
  if (text === null || text === undefined || text.trim() === '') {
    return `no Modbus address (protocol_address is empty); expected ${ADDRESS_FORMAT}, e.g. holding:0:float32`;
  }
  const m = GRAMMAR.exec(text.trim());
  if (!m) return `Modbus address ${JSON.stringify(text)} does not match ${ADDRESS_FORMAT}`;
  const table = m[1].toLowerCase() as ModbusTable;
  const offset = m[2].toLowerCase().startsWith('0x') ? parseInt(m[2], 16) : Number(m[2]);
  if (offset > 65535) return `Modbus address ${JSON.stringify(text)}: offset ${offset} is beyond 65535`;
  if (isBitTable(table)) {
    if (m[3]) return `Modbus address ${JSON.stringify(text)}: a ${table} is one bit and takes no data type or byte order`;
    return { table, offset, width: 1 };
  }
  const type = (m[3]?.toLowerCase() ?? 'uint16') as RegisterType;
  if (!TYPES.includes(type)) return `Modbus address ${JSON.stringify(text)}: data type ${JSON.stringify(m[3])} is not one of ${TYPES.join(', ')}`;
  const width = type.endsWith('16') ? 1 : 2;
  const allowed = width === 1 ? ORDERS_16 : ORDERS_32;
  let order = (m[4]?.toUpperCase() ?? allowed[0]) as string;
  if (order === 'BE') order = allowed[0];
  if (order === 'LE') order = allowed[allowed.length - 1];
  if (!allowed.includes(order as ByteOrder)) {
    return `Modbus address ${JSON.stringify(text)}: byte order ${JSON.stringify(m[4])} does not fit ${type} (use ${allowed.join(', ')}, BE or LE)`;
  }
  if (offset + width - 1 > 65535) return `Modbus address ${JSON.stringify(text)}: ${type} at ${offset} runs past register 65535`;
  return { table, offset, width, type, order: order as ByteOrder };
}

/** The canonical spelling (for logs and event descriptions). */
export function formatModbusAddress(a: ModbusAddress): string {
  return a.type ? `${a.table}:${a.offset}:${a.type}:${a.order}` : `${a.table}:${a.offset}`;
}
