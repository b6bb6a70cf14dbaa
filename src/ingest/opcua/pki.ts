// The ingestor's OPC UA identity and trust list: node-opcua's OPCUACertificateManager in
// DATA_DIR/opcua-pki (folders own/, trusted/, rejected/, issuers/).
//  - own/certs/client_certificate.pem: a self-signed application certificate (RSA 2048, 10 years)
//    made on the first start, with the application URI the ingestor presents to servers.
//  - A server certificate is trusted by an explicit step: `trustCertificate` (what `iot opcua trust
//    <file>` calls), or by moving it from rejected/ (where an unknown server's certificate lands at
//    the first attempt) to trusted/certs/. OPCUA_ACCEPT_UNKNOWN_CERTIFICATES=true trusts any server
//    on first sight (a lab shortcut; never on a plant network).
//  - The server must trust ours as well: give it own/certs/client_certificate.pem.
import { existsSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';
import { makeApplicationUrn } from 'node-opcua-client';
import { readCertificate } from 'node-opcua-crypto';
import { logger } from '../../lib/log';

const log = logger('opcua-pki');

export const APPLICATION_NAME = 'plant-telemetry-ingest';
export const applicationUri = () => makeApplicationUrn(hostname(), APPLICATION_NAME);

export interface OpcuaPki {
  manager: OPCUACertificateManager;
  certificateFile: string;
  privateKeyFile: string;
  dir: string;
}

export async function openPki(dir: string, acceptUnknown = false): Promise<OpcuaPki> {
  const manager = new OPCUACertificateManager({ rootFolder: dir, automaticallyAcceptUnknownCertificate: acceptUnknown, keySize: 2048 });
  await manager.initialize();
  const certificateFile = join(manager.rootDir, 'own', 'certs', 'client_certificate.pem');
  const privateKeyFile = join(manager.rootDir, 'own', 'private', 'private_key.pem');
  if (!existsSync(certificateFile)) {
    await manager.createSelfSignedCertificate({
      applicationUri: applicationUri(), dns: [hostname()], outputFile: certificateFile,
      subject: `/CN=${APPLICATION_NAME}/O=plant-telemetry`, startDate: new Date(), validity: 3650,
    });
    log.info('made the ingestor\'s OPC UA application certificate; servers must trust it before Sign or SignAndEncrypt work',
      { certificate: certificateFile });
  }
  if (acceptUnknown) log.warn('OPCUA_ACCEPT_UNKNOWN_CERTIFICATES is on: any OPC UA server certificate is trusted on first sight', { dir });
  return { manager, certificateFile, privateKeyFile, dir: manager.rootDir };
}

/** The ingestor's certificate (DER), to hand to a server's trust list. */
export const ownCertificate = (pki: OpcuaPki): Buffer => readCertificate(pki.certificateFile);

/** The explicit trust step: a server certificate (DER or PEM file, or its bytes) goes to trusted/. */
export async function trustCertificate(pki: OpcuaPki, certificate: string | Buffer): Promise<void> {
  const der = typeof certificate === 'string' ? readCertificate(certificate) : certificate;
  await pki.manager.trustCertificate(der);
  log.info('OPC UA server certificate trusted', { dir: pki.dir });
}

/** Certificates of servers that were refused (waiting for the trust step). */
export function rejectedCertificates(pki: OpcuaPki): string[] {
  const dir = join(pki.dir, 'rejected');
  return existsSync(dir) ? readdirSync(dir).filter((f) => /\.(der|pem)$/.test(f)).map((f) => join(dir, f)) : [];
}
