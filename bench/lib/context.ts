// What run.ts (or a scenario's own CLI) hands every scenario.
import type { Machine } from './machine.ts';
import { ratio } from './stats.ts';
import type { Target } from './report.ts';

export interface ScenarioContext {
  /** Seconds per measured run of one contender. */
  duration: number;
  rounds: number;
  smoke: boolean;
  /** Pin single-process contenders (and load generators where it helps) with taskset. */
  pin: boolean;
  /** Scratch folder for this scenario's config files. */
  dir: string;
  machine?: Machine;
  command: string;
  /** When set, shoal's own processes run under node --cpu-prof and write their profiles here. */
  profileDir?: string;
  log(msg: string): void;
}

/** Node flags for a shoal process: --cpu-prof into ctx.profileDir/<name> when profiling. */
export function profileArgs(ctx: ScenarioContext, name: string): string[] {
  return ctx.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.profileDir}/${name}`] : [];
}

/** The CPU single-process contenders are pinned to, when pinning (the last core). */
export function proxyCpu(ctx: ScenarioContext): string | undefined {
  return ctx.pin && ctx.machine && ctx.machine.cores >= 2 ? String(ctx.machine.cores - 1) : undefined;
}

/** The CPUs a load client is pinned to when the contender is (every core but proxyCpu's). */
export function clientCpus(ctx: ScenarioContext): string | undefined {
  const cpu = proxyCpu(ctx);
  return cpu === undefined ? undefined : Number(cpu) === 1 ? '0' : `0-${Number(cpu) - 1}`;
}

/**
 * The share of failed requests over which a contender counts as not run: 1% in a real run; in a
 * smoke run (a starved CI machine, every scenario at once) only when every request failed, since a
 * starved sidecar rightly answers 504 connect-timeout after 250 ms.
 */
export function errorShare(ctx: ScenarioContext): number {
  return ctx.smoke ? 1 : 0.01;
}

/**
 * Runs `fn` for each key in an order rotated every round, so drift on a shared machine hits all
 * alike. `together` (smoke runs only: figures do not matter there) runs a round's keys at once.
 */
export async function interleave<K extends string>(
  keys: K[],
  rounds: number,
  fn: (key: K, round: number) => Promise<void>,
  together = false,
): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    if (together) await Promise.all(keys.map((k) => fn(k, r)));
    else for (let i = 0; i < keys.length; i++) await fn(keys[(i + r) % keys.length], r);
  }
}

/** A target "at least goal× a peer". */
export function atLeast(name: string, goal: number, measured: number | null, what: string): Target {
  if (measured === null) return { name, goal: `≥ ${goal}× ${what}`, measured: null, met: null, margin: 'not measured' };
  const pct = Math.round((measured / goal - 1) * 100);
  return {
    name,
    goal: `≥ ${goal}× ${what}`,
    measured,
    met: measured >= goal,
    margin: `${measured.toFixed(2)}× is ${Math.abs(pct)}% ${pct >= 0 ? 'above' : 'below'} the goal`,
  };
}

/** A target "at most limit unit". */
export function atMost(name: string, limit: number, measured: number | null, unit: string): Target {
  if (measured === null || !Number.isFinite(measured))
    return { name, goal: `≤ ${limit} ${unit}`, measured: null, met: null, margin: 'not measured' };
  const d = measured - limit;
  return {
    name,
    goal: `≤ ${limit} ${unit}`,
    measured,
    met: measured <= limit,
    margin:
      d <= 0 ? `${(-d).toFixed(2)} ${unit} under the limit` : `${d.toFixed(2)} ${unit} over the limit (${Math.round((d / limit) * 100)}%)`,
  };
}

export const below = (name: string, limit: number, measured: number | null, unit: string): Target => {
  const t = atMost(name, limit, measured, unit);
  t.goal = `< ${limit} ${unit}`;
  if (measured !== null && Number.isFinite(measured)) t.met = measured < limit;
  return t;
};

export { ratio };
