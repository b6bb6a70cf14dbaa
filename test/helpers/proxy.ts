// A TCP proxy in front of PostgreSQL that a test can take down and bring back, to show what the
// ingest path does while the database is unreachable (without stopping the shared server).
import { createServer, Server, Socket, connect } from 'node:net';
import { Transform } from 'node:stream';
import { Pool, PoolConfig } from 'pg';

export class FlakyProxy {
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  private cutMarker: { marker: Buffer; forward: boolean; thenDown: boolean } | undefined;
  port = 0;

  constructor(private readonly targetHost: string, private readonly targetPort: number) {}

  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      this.sockets.add(client).add(upstream);
      // The connection that sends the armed marker is cut: before the message reaches the server, or after (its answer dropped).
      let losing: { thenDown: boolean } | undefined;
      const toServer = new Transform({
        transform: (chunk: Buffer, _encoding, done) => {
          const cut = this.cutMarker;
          if (!cut || !chunk.includes(cut.marker)) return done(null, chunk);
          this.cutMarker = undefined;
          if (cut.forward) {
            losing = cut;
            return done(null, chunk);
          }
          done();
          close();
          if (cut.thenDown) void this.down();
        },
      });
      const toClient = new Transform({
        transform: (chunk: Buffer, _encoding, done) => {
          if (!losing) return done(null, chunk);
          done();
          close();
          if (losing.thenDown) void this.down();
        },
      });
      client.pipe(toServer).pipe(upstream).pipe(toClient).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
    const a = this.server.address();
    if (typeof a === 'object' && a) this.port = a.port;
  }

  /**
   * Cuts the connection that next sends a message containing `marker`: with `forward` the server
   * gets the message and its answer is dropped (a COMMIT carried out, its client left in doubt);
   * without, the message never arrives. With `thenDown` the proxy goes down at that moment too.
   */
  cutAt(marker: string | Buffer, forward: boolean, thenDown = false): void {
    this.cutMarker = { marker: Buffer.from(marker), forward, thenDown };
  }

  /** Cuts every connection and refuses new ones. */
  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }
}

export function urlThrough(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

/** The bytes of PostgreSQL's simple Query message for `sql` (a marker for FlakyProxy.cutAt that no data can imitate by chance). */
export function simpleQueryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const length = Buffer.alloc(4);
  length.writeInt32BE(text.length + 4);
  return Buffer.concat([Buffer.from('Q'), length, text]);
}

/** A FlakyProxy in front of the database at `url`, up, and a pool through it (its idle clients' errors ignored). */
export async function poolThroughProxy(url: string, options: Omit<PoolConfig, 'connectionString'> = {}): Promise<{ proxy: FlakyProxy; pool: Pool }> {
  const target = new URL(url);
  const proxy = new FlakyProxy(target.hostname, Number(target.port || 5432));
  await proxy.up();
  const pool = new Pool({ ...options, connectionString: urlThrough(url, proxy.port) });
  pool.on('error', () => undefined);
  return { proxy, pool };
}
