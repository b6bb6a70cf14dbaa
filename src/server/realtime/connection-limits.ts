// Open realtime connections per client address and per user, shared by WebSocket and SSE, so one
// client cannot hold thousands of sockets (2,000 were opened in 1.9 s before these limits).
// The address is the TCP peer's: behind a load balancer every client has the balancer's address,
// so set WS_MAX_SOCKETS_PER_IP to what one balancer may hold, and rely on the per-user limit.
import type { Caller } from '../auth';

export interface LimitSettings {
  maxPerIp: number;
  maxPerUser: number;
}

/** The key of the per-user limit: the token's sub (within its tenant), else its role and tenant. */
export function userKey(caller: Caller): string {
  const tenant = caller.tenantId ?? '';
  return caller.subject !== undefined && caller.subject !== '' ? `sub:${tenant}/${caller.subject}` : `role:${tenant}/${caller.role}`;
}

class Counts {
  private counts = new Map<string, number>();
  constructor(private readonly max: number) {}
  /** Takes one place for key; returns its release (callable once), or undefined when full. */
  take(key: string): (() => void) | undefined {
    const n = this.counts.get(key) ?? 0;
    if (n >= this.max) return undefined;
    this.counts.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left <= 0) this.counts.delete(key);
      else this.counts.set(key, left);
    };
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

export class ConnectionLimits {
  readonly perIp: Counts;
  readonly perUser: Counts;
  constructor(readonly settings: LimitSettings) {
    this.perIp = new Counts(settings.maxPerIp);
    this.perUser = new Counts(settings.maxPerUser);
  }
}
