// An in-process aedes broker in its own process for benchmarks; sends its URL to the parent.
import { startEmbeddedBroker } from '../src/lib/embedded/broker';

void startEmbeddedBroker(0).then((b) => {
  process.send?.(b.url);
  process.on('SIGTERM', () => void b.stop().then(() => process.exit(0)));
});
