// The JWT secret: JWT_SECRET, or one generated on first start and kept in DATA_DIR/jwt-secret
// so tokens stay valid across restarts.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';

export function jwtSecret(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = join(dataDir, 'jwt-secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, secret + '\n', { mode: 0o600 });
  return secret;
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
