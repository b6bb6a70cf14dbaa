// Secrets generated on first start and kept in DATA_DIR (mode 0600) so they stay the same across
// restarts: the JWT secret (unless JWT_SECRET is set) and the demo analyst's database password.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';

/** A random secret kept in DATA_DIR/<file>: made once, then read back. */
export function keptSecret(dataDir: string, file: string, bytes = 32): string {
  const path = join(dataDir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(bytes).toString('hex'); // hex: safe in a connection URL, YAML and a shell
  try {
    writeFileSync(path, secret + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return readFileSync(path, 'utf8').trim(); // another process made it first
  }
  return secret;
}

/** Shortest JWT secret accepted (HS256 wants a key at least as long as its 256-bit hash). */
export const MIN_JWT_SECRET_BYTES = 32;

export function jwtSecret(configured: string | undefined, dataDir: string): string {
  const secret = configured || keptSecret(dataDir, 'jwt-secret');
  // JWT_SECRET itself is checked with the configuration (src/lib/config.ts); a kept file edited by hand is checked here.
  if (Buffer.byteLength(secret, 'utf8') < MIN_JWT_SECRET_BYTES) {
    throw new Error(`the JWT secret in ${join(dataDir, 'jwt-secret')} is shorter than ${MIN_JWT_SECRET_BYTES} bytes: delete the file to have a new one made, or set JWT_SECRET`);
  }
  return secret;
}

/** Password of the demo analyst login that `iot start` creates (DATA_DIR/analyst-password). */
export function demoAnalystPassword(dataDir: string): string {
  return keptSecret(dataDir, 'analyst-password', 18);
}

/** A fresh random password (for `iot analyst-login` without --password). */
export function randomPassword(): string {
  return randomBytes(18).toString('hex');
}

export interface TokenClaims {
  role: 'iot_operator' | 'iot_analyst';
  tenantId: string;
  subject: string;
  expiresIn?: string;
}

export function signToken(secret: string, claims: TokenClaims): string {
  return jwt.sign(
    { role: claims.role, tenant_id: claims.tenantId, sub: claims.subject },
    secret,
    { algorithm: 'HS256', audience: 'postgraphile', expiresIn: (claims.expiresIn ?? '12h') as jwt.SignOptions['expiresIn'] },
  );
}
