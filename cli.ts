#!/usr/bin/env node
// The shoal command: one binary, one subcommand per piece. Every flag has a SHOAL_* env twin.
import { ConfigError } from './shared/meshConfig.ts';
import { createLogger } from './shared/log.ts';
import { helpText, parseFlags, UsageError, type FlagSpec, type FlagValues } from './shared/flags.ts';

/** Concatenates flag lists; a name defined twice (cluster-domain) keeps its first definition. */
function mergeFlags(...lists: FlagSpec[][]): FlagSpec[] {
  const seen = new Set<string>();
  return lists.flat().filter((f) => {
    if (seen.has(f.name)) return false;
    seen.add(f.name);
    return true;
  });
}

interface Loaded {
  flags: FlagSpec[];
  run(positional: string[], values: FlagValues): Promise<void>;
}

interface Command {
  usage: string;
  summary: string;
  // Imports only this command's modules: the sidecar (`shoal proxy`, in every pod) never loads discover's
  // fastify, Kubernetes client and YAML parsers (tens of MB of RSS: docs/performance.md).
  load(): Promise<Loaded>;
}

function onSignals(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${signal}: stopping\n`);
    close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

const help = { name: 'help', short: 'h', type: 'bool', description: 'Show this help' } as const satisfies FlagSpec;

const commands: Record<string, Command> = {
  discover: {
    usage: 'shoal discover (--static FILE.yaml | --kubernetes [--kubeconfig FILE] [--webhook]) [--port 6100]',
    summary: 'Serve every app its snapshot (listeners, routes, endpoints, DNS names) with long-poll push.',
    async load() {
      const [{ discoverFlags, discoverOptionsFromFlags, startDiscover }, { webhookFlags }, { createDiscoverLogger }] = await Promise.all([
        import('./discover/main.ts'),
        import('./discover/webhook/webhookFlags.ts'),
        import('./discover/log.ts'),
      ]);
      return {
        flags: mergeFlags(discoverFlags, webhookFlags),
        async run(_pos, v) {
          const d = await startDiscover(discoverOptionsFromFlags(v, createDiscoverLogger(String(v['log-level']))));
          onSignals(() => d.close());
        },
      };
    },
  },
  proxy: {
    usage: 'shoal proxy [--discover-url URL] [--admin-port 65533] [--dns-port 53 --dns-upstream IP]',
    summary: 'The sidecar: outbound load balancing, inbound port remap and the DNS responder, fed by discover.',
    async load() {
      const [{ proxyFlags, proxyOptions, startProxy }, { dnsFlags, dnsOptionsFromFlags }] = await Promise.all([
        import('./proxy/main.ts'),
        import('./dns/main.ts'),
      ]);
      return {
        flags: mergeFlags(
          proxyFlags,
          [{ name: 'dns', type: 'bool', default: true, description: 'Run the DNS responder in the sidecar (--no-dns turns it off)' }],
          dnsFlags.filter((f) => f.name !== 'dns-names'),
        ),
        async run(_pos, v) {
          const opts = proxyOptions(v);
          const log = createLogger('proxy', opts.logLevel ?? 'info');
          const p = await startProxy({ ...opts, log, dns: v.dns === false ? undefined : dnsOptionsFromFlags(v) });
          onSignals(() => p.close());
        },
      };
    },
  },
  dns: {
    usage: 'shoal dns [--dns-host 127.0.0.1] [--dns-port 53] [--dns-upstream IP[:PORT],...] [--dns-names name=ip,...]',
    summary: 'The DNS responder on its own: static local names, every other name forwarded upstream.',
    async load() {
      const { dnsFlags, dnsOptionsFromFlags, startDnsResponder } = await import('./dns/main.ts');
      return {
        flags: mergeFlags(dnsFlags, [
          { name: 'log-level', type: 'string', default: 'info', description: 'Log level: debug, info, warn, error' },
        ]),
        async run(_pos, v) {
          const d = await startDnsResponder({ ...dnsOptionsFromFlags(v), log: createLogger('dns', String(v['log-level'])) });
          onSignals(() => d.close());
        },
      };
    },
  },
  demo: {
    usage: 'shoal demo',
    summary: 'Run a local mesh on an embedded static topology: discover and the demo workloads on loopback.',
    async load() {
      const { demoFlags, describeDemo, startDemo } = await import('./demo.ts');
      return {
        flags: demoFlags,
        async run(_pos, v) {
          const demo = await startDemo({
            discoverPort: Number(v['discover-port']),
            adminPort: Number(v['admin-port']),
            dnsPort: Number(v['dns-port']),
            logLevel: String(v['log-level']),
          });
          process.stdout.write(describeDemo(demo));
          onSignals(() => demo.close());
        },
      };
    },
  },
  get: {
    usage: 'shoal get NAMESPACE/APP [--discover URL] [-o table|json|yaml]',
    summary: "Show what an app's sidecar receives: listeners, routes, endpoints and DNS names.",
    async load() {
      const { getCommand, getFlags } = await import('./cli/get.ts');
      return {
        flags: getFlags,
        async run(pos, v) {
          process.stdout.write(await getCommand(pos, v));
        },
      };
    },
  },
};

function topHelp(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `Usage: shoal <command> [flags]\n\nshoal: a small, fast sidecar service mesh.\n\nCommands:\n${rows.join('\n')}\n\nRun 'shoal <command> --help' for its flags. Every flag --x-y has an env twin SHOAL_X_Y.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp());
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`shoal: unknown command ${JSON.stringify(name)}\n\n${topHelp()}`);
    return 2;
  }
  try {
    const loaded = await cmd.load();
    const flags = [...loaded.flags, help];
    const { values, positional } = parseFlags(flags, rest);
    if (values.help) {
      process.stdout.write(helpText(cmd.usage, cmd.summary, flags));
      return 0;
    }
    await loaded.run(positional, values);
    return -1;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`shoal ${name}: ${err.message}\nRun 'shoal ${name} --help' for usage.\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`shoal ${name}: invalid configuration: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`shoal ${name}: ${(err as Error).message}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
// -1: a server is running and exits on a signal.
if (code >= 0) process.exitCode = code;
