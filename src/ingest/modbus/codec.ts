// Register contents <-> numbers. A byte order names the bytes as they travel on the wire in terms
// of the value's own bytes (A = most significant): CDAB means the wire carries C, D, A, B, i.e. the
// low word comes first. Registers in a response are 2 bytes each, first byte first (Modbus is
// big-endian per register; the order only says how a device lays a value across them).
import type { ByteOrder, ModbusAddress, RegisterType } from './address';

const LETTERS = 'ABCD';

/** The value's bytes, most significant first, from the wire bytes in `order`. */
function toValueBytes(wire: Buffer, order: ByteOrder): Buffer {
  const value = Buffer.alloc(order.length);
  for (let i = 0; i < order.length; i++) value[LETTERS.indexOf(order[i])] = wire[i];
  return value;
}

function toWireBytes(value: Buffer, order: ByteOrder): Buffer {
  const wire = Buffer.alloc(order.length);
  for (let i = 0; i < order.length; i++) wire[i] = value[LETTERS.indexOf(order[i])];
  return wire;
}

function readBigEndian(bytes: Buffer, type: RegisterType): number {
  switch (type) {
    case 'int16': return bytes.readInt16BE(0);
    case 'uint16': return bytes.readUInt16BE(0);
    case 'int32': return bytes.readInt32BE(0);
    case 'uint32': return bytes.readUInt32BE(0);
    case 'float32': return bytes.readFloatBE(0);
  }
}

/**
 * The raw value (before scale and offset) of a register address, read from `registers` (the
 * response's bytes) where the response starts at register `start`.
 */
export function decodeRegisters(registers: Buffer, start: number, address: ModbusAddress): number {
  const from = (address.offset - start) * 2;
  const wire = registers.subarray(from, from + address.width * 2);
  if (wire.length !== address.width * 2) throw new Error(`response too short for register ${address.offset}`);
  return readBigEndian(toValueBytes(wire, address.order!), address.type!);
}

/** A bit (coil or discrete input) from jsmodbus's array of booleans/0|1 for a response starting at `start`. */
export function decodeBit(bits: ArrayLike<boolean | number>, start: number, address: ModbusAddress): number {
  const bit = bits[address.offset - start];
  if (bit === undefined) throw new Error(`response too short for bit ${address.offset}`);
  return bit ? 1 : 0;
}

/** The wire bytes of `value` (a raw value: integers are rounded and clamped to the type's range). */
export function encodeRegisters(value: number, type: RegisterType, order: ByteOrder): Buffer {
  const bytes = Buffer.alloc(type.endsWith('16') ? 2 : 4);
  const clamp = (lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(Number.isFinite(value) ? value : 0)));
  switch (type) {
    case 'int16': bytes.writeInt16BE(clamp(-32768, 32767), 0); break;
    case 'uint16': bytes.writeUInt16BE(clamp(0, 65535), 0); break;
    case 'int32': bytes.writeInt32BE(clamp(-2147483648, 2147483647), 0); break;
    case 'uint32': bytes.writeUInt32BE(clamp(0, 4294967295), 0); break;
    case 'float32': bytes.writeFloatBE(value, 0); break;
  }
  return toWireBytes(bytes, order);
}

/**
 * Stored value = raw * scale + offset (iot.device_channels.scale and value_offset), rounded to 12
 * significant digits when scaled, so raw 715 at scale 0.1 is 71.5, not 71.50000000000001.
 */
export const scaled = (raw: number, scale: number, offset: number) =>
  scale === 1 && offset === 0 ? raw : Number((raw * scale + offset).toPrecision(12));
/** The raw value a device must hold for a stored value (the simulator writes these). */
export const unscaled = (value: number, scale: number, offset: number) => (value - offset) / scale;
