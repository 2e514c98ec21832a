// Medians of rounds with their spread, percentiles of sorted samples, and rounding for reports.
export interface Figure {
  median: number;
  min: number;
  max: number;
  rounds: number[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function figure(rounds: number[], digits = 2): Figure {
  const ok = rounds.filter((x) => Number.isFinite(x));
  const f = 10 ** digits;
  const r = (x: number) => Math.round(x * f) / f;
  return { median: r(median(ok)), min: r(Math.min(...ok)), max: r(Math.max(...ok)), rounds: rounds.map(r) };
}

/** The p-th percentile of an ascending array (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** a / b rounded to two decimals; null when either side is missing. */
export function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return Math.round((a / b) * 100) / 100;
}

export const round2 = (x: number) => Math.round(x * 100) / 100;

/** The percentiles every latency curve is drawn at. */
export const CURVE_PERCENTILES = [50, 75, 90, 95, 99, 99.9, 99.99];
