// The sidecar's log writer: pino's line format, levels, child bindings, errors, and nothing lost at exit.
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { createLogger } from '../../shared/log.ts';

const root = join(import.meta.dirname, '..', '..');

function capture() {
  const lines: string[] = [];
  return { lines, sink: { write: (s: string) => lines.push(...s.split('\n').filter(Boolean)) } };
}

t.test("lines read like pino's: level, time, piece, name, fields, msg, in that order", async (t) => {
  const { lines, sink } = capture();
  const log = createLogger('proxy', 'info', sink);
  log.info({ url: 'http://x', n: 3, skip: undefined }, 'discover unreachable');
  log.warn('plain message');
  const ours = JSON.parse(lines[0]) as Record<string, unknown>;
  t.same(Object.keys(ours), ['level', 'time', 'piece', 'name', 'url', 'n', 'msg']);
  t.match(ours, { level: 30, piece: 'proxy', name: 'shoal-proxy', url: 'http://x', n: 3, msg: 'discover unreachable' });
  t.ok(Math.abs((ours.time as number) - Date.now()) < 5000, 'time in ms since the epoch');
  t.match(JSON.parse(lines[1]), { level: 40, msg: 'plain message' });
  // pino, configured as discover configures it, writes the same keys in the same order.
  const theirs: string[] = [];
  const p = pino(
    { name: 'shoal-proxy', level: 'info', base: { piece: 'proxy' } },
    new Writable({
      write(c, _e, cb) {
        theirs.push(String(c));
        cb();
      },
    }),
  );
  p.info({ url: 'http://x', n: 3, skip: undefined }, 'discover unreachable');
  await new Promise((r) => setTimeout(r, 20));
  t.same(Object.keys(JSON.parse(theirs[0]) as object), Object.keys(ours), 'same keys and order as pino');
});

t.test('levels: below the threshold nothing is written; silent writes nothing; a bad level is refused', async (t) => {
  const { lines, sink } = capture();
  const log = createLogger('dns', 'warn', sink);
  log.debug('d');
  log.info({ a: 1 }, 'i');
  log.warn('w');
  log.error('e');
  t.same(
    lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['w', 'e'],
  );
  t.equal(log.isLevelEnabled('info'), false);
  t.equal(log.isLevelEnabled('error'), true);
  log.level = 'debug';
  log.debug('now');
  t.equal((JSON.parse(lines[2]) as { msg: string }).msg, 'now', 'the level can be changed');
  const quiet = capture();
  const s = createLogger('dns', 'silent', quiet.sink);
  s.fatal('nothing');
  t.same(quiet.lines, []);
  t.equal(s.isLevelEnabled('fatal'), false);
  t.throws(
    () => createLogger('dns', 'loud', quiet.sink),
    /unknown log level "loud": expected one of trace, debug, info, warn, error, fatal, silent/,
  );
});

t.test('child bindings ride on every line; errors are serialized with type, message, stack and code', async (t) => {
  const { lines, sink } = capture();
  const log = createLogger('proxy', 'info', sink).child({ component: 'dns' }).child({ log: 'access' });
  const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  log.error({ err, quote: 'a "b"\n' }, 'failed');
  const line = JSON.parse(lines[0]) as Record<string, unknown>;
  t.match(line, { piece: 'proxy', component: 'dns', log: 'access', quote: 'a "b"\n', msg: 'failed' });
  t.match(line.err, { type: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED', stack: /^Error: connect ECONNREFUSED/ });
});

t.test('on stdout, lines batched in one turn all reach the pipe, also when the process exits at once', async (t) => {
  const script = `import { createLogger } from ${JSON.stringify(join(root, 'shared', 'log.ts'))};
const log = createLogger('proxy', 'info');
for (let i = 0; i < 1000; i++) log.info({ i }, 'line');
process.exit(3);`;
  const r = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 1 << 24 }).catch(
    (e: { code: number; stdout: string }) => e,
  );
  t.equal((r as { code: number }).code, 3);
  const got = (r as { stdout: string }).stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { i: number }).i);
  t.equal(got.length, 1000, 'all 1,000 lines written');
  t.equal(got[999], 999, 'in order');
});
