// The bench plant's values, as a plant's: each sensor type around its normal level with noise
// (TEMPERATURE 60-75, VIBRATION 0-2.5, PRESSURE 80-120 are the bench plant's ranges), and one
// channel in 100 drifting out of range for a while (a fault), so event detection has excursions
// to find without every reading being one. Shared by bench:ingest's and bench:realtime's publishers.
const LEVEL: Record<string, [level: number, noise: number]> = { TEMPERATURE: [67.5, 1], VIBRATION: [1.2, 0.15], PRESSURE: [100, 3] };

export function plantValues(channels: readonly { topic: string }[], seed = 12345) {
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const levels = channels.map((ch) => LEVEL[ch.topic.slice(ch.topic.lastIndexOf('/') + 1)] ?? [50, 1]);
  /** The value of channel `c` in round `round` (a fault window lasts 50 rounds of every channel). */
  return (c: number, round: number): number => {
    const [level, noise] = levels[c];
    const faulty = (c + Math.floor(round / 50)) % 100 === 0;
    return level * (faulty ? 1.5 : 1) + (rand() - 0.5) * 2 * noise;
  };
}
