// Prometheus text exposition of whatever the running components report. No dependency needed
// for a handful of gauges and counters.
type Sample = { name: string; help: string; type: 'gauge' | 'counter'; value: number };
type Collector = () => Sample[];

const collectors: Collector[] = [];

export function registerMetrics(collector: Collector): () => void {
  collectors.push(collector);
  return () => {
    const i = collectors.indexOf(collector);
    if (i >= 0) collectors.splice(i, 1);
  };
}

export function renderMetrics(): string {
  const lines: string[] = [];
  for (const collect of collectors) {
    for (const s of collect()) {
      lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`, `${s.name} ${s.value}`);
    }
  }
  return lines.join('\n') + '\n';
}
