// Tenants by code and devices by code across tenants, for import rows that name a device by code
// alone: device codes are unique within a tenant, not across tenants (RegistryCache keys channels
// by tenant). Loaded once per import; an import is a one-off run against a registry that is set up.
import type { Pool } from 'pg';

export class DeviceDirectory {
  private constructor(
    readonly tenantsByCode: ReadonlyMap<string, string>,
    private readonly tenantsOfDevice: ReadonlyMap<string, string[]>,
    private readonly codes: ReadonlyMap<string, string>,
  ) {}

  static async load(pool: Pool): Promise<DeviceDirectory> {
    const tenants = await pool.query<{ id: string; tenant_code: string }>('select id::text, tenant_code from iot.tenants');
    const devices = await pool.query<{ tenant_id: string; device_code: string }>('select tenant_id::text, device_code from iot.iot_devices');
    const byDevice = new Map<string, string[]>();
    for (const d of devices.rows) byDevice.set(d.device_code, [...(byDevice.get(d.device_code) ?? []), d.tenant_id]);
    return new DeviceDirectory(new Map(tenants.rows.map((t) => [t.tenant_code, t.id])), byDevice,
      new Map(tenants.rows.map((t) => [t.id, t.tenant_code])));
  }

  tenantId(code: string): string | undefined {
    return this.tenantsByCode.get(code);
  }

  tenantCode(id: string): string | undefined {
    return this.codes.get(id);
  }

  /** The tenants that have a device with this code. */
  tenantsWithDevice(deviceCode: string): string[] {
    return this.tenantsOfDevice.get(deviceCode) ?? [];
  }
}
