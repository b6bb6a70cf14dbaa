// Prometheus text exposition of whatever the running components report. No dependency needed
// for a handful of gauges and counters. Samples of one name (several label sets) are one family:
// its HELP and TYPE lines are printed once, before all of its samples.
export type Sample = { name: string; help: string; type: 'gauge' | 'counter'; value: number; labels?: Record<string, string> };
type Collector = () => Sample[];

const collectors: Collector[] = [];

export function registerMetrics(collector: Collector): () => void {
  collectors.push(collector);
  return () => {
    const i = collectors.indexOf(collector);
    if (i >= 0) collectors.splice(i, 1);
  };
}

// Label values: backslash, double quote and line feed escaped (exposition format 0.0.4).
const labelValue = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labelText = (labels?: Record<string, string>) => {
  const entries = Object.entries(labels ?? {});
  return entries.length ? `{${entries.map(([k, v]) => `${k}="${labelValue(v)}"`).join(',')}}` : '';
};

export function renderMetrics(): string {
  const families = new Map<string, { help: string; type: string; lines: string[] }>();
  for (const collect of collectors) {
    for (const s of collect()) {
      let f = families.get(s.name);
      if (!f) families.set(s.name, (f = { help: s.help, type: s.type, lines: [] }));
      f.lines.push(`${s.name}${labelText(s.labels)} ${s.value}`);
    }
  }
  const lines: string[] = [];
  for (const [name, f] of families) lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines);
  return lines.join('\n') + '\n';
}
