// In-process MQTT broker (aedes) for the embedded defaults. MQTT 3.1.1, sessions in memory:
// for production use mosquitto (deploy/mosquitto), see the README.
import { createServer, Server } from 'node:net';
import { logger } from '../log';

const log = logger('embedded-mqtt');

export interface EmbeddedBroker {
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedBroker(port: number, host = '127.0.0.1'): Promise<EmbeddedBroker> {
  const { Aedes } = await import('aedes'); // ESM-only package
  const broker = await Aedes.createBroker();
  const server: Server = createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`in-process MQTT broker cannot listen on ${host}:${port}: ${error.message}`)));
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  log.info('in-process MQTT broker listening', { url: `mqtt://${host}:${actualPort}` });
  return {
    url: `mqtt://${host}:${actualPort}`,
    async stop() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
