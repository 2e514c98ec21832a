// Command-line flags with SHOAL_* environment twins: a flag wins over its env twin, which wins over the default.

export type FlagType = 'string' | 'int' | 'bool' | 'list';
export interface FlagSpec {
  name: string;
  type: FlagType;
  description: string;
  default?: string | number | boolean | string[];
  short?: string;
}
export type FlagValues = Record<string, string | number | boolean | string[] | undefined>;

export class UsageError extends Error {
  override name = 'UsageError';
}

export function envName(flag: string): string {
  return `SHOAL_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function convert(spec: FlagSpec, raw: string, source: string): string | number | boolean | string[] {
  switch (spec.type) {
    case 'int': {
      if (!/^[0-9]+$/.test(raw.trim())) throw new UsageError(`invalid ${source}=${JSON.stringify(raw)}: expected an integer`);
      return Number(raw);
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on', ''].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new UsageError(`invalid ${source}=${JSON.stringify(raw)}: expected true or false`);
    }
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    default:
      return raw;
  }
}

/** Parses argv against specs. Returns the values and the positional arguments. */
export function parseFlags(
  specs: FlagSpec[],
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { values: FlagValues; positional: string[] } {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(s.name, s);
    if (s.short) byName.set(s.short, s);
  }
  const values: FlagValues = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    const long = arg.startsWith('--');
    if (!long && (!arg.startsWith('-') || arg === '-')) {
      positional.push(arg);
      continue;
    }
    // --name=value, --name value, -o value, -o=value, -ovalue
    let body = arg.slice(long ? 2 : 1);
    if (!long && body.length > 1 && body[1] !== '=') body = `${body[0]}=${body.slice(1)}`;
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byName.get(name) ?? (name.startsWith('no-') ? byName.get(name.slice(3)) : undefined);
    if (!spec) throw new UsageError(`unknown flag ${long ? '--' : '-'}${name}`);
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (spec.type === 'bool') raw = name.startsWith('no-') && spec.name !== name ? 'false' : 'true';
    else {
      if (i + 1 >= argv.length) throw new UsageError(`flag --${spec.name} needs a value`);
      raw = argv[++i];
    }
    values[spec.name] = convert(spec, raw, `--${spec.name}`);
  }
  for (const s of specs) {
    if (values[s.name] !== undefined) continue;
    const fromEnv = env[envName(s.name)];
    if (fromEnv !== undefined && fromEnv !== '') values[s.name] = convert(s, fromEnv, envName(s.name));
    else values[s.name] = s.default;
  }
  return { values, positional };
}

export function helpText(usage: string, summary: string, specs: FlagSpec[]): string {
  const rows = specs.map((s) => {
    const flag = `${s.short ? `-${s.short}, ` : ''}--${s.name}${s.type === 'bool' ? '' : ` <${s.type === 'int' ? 'n' : 'value'}>`}`;
    const def =
      s.default === undefined || (Array.isArray(s.default) && s.default.length === 0)
        ? ''
        : ` (default: ${Array.isArray(s.default) ? s.default.join(',') : s.default})`;
    return [flag, `${s.description}${def}`, `env ${envName(s.name)}`];
  });
  const w0 = Math.max(...rows.map((r) => r[0].length), 10);
  const lines = rows.map((r) => `  ${r[0].padEnd(w0)}  ${r[1]}\n  ${''.padEnd(w0)}  ${r[2]}`);
  return `Usage: ${usage}\n\n${summary}\n\nFlags:\n${lines.join('\n')}\n`;
}
