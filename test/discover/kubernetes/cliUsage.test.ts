// Usage errors of `shoal discover` about Kubernetes flags: exit 2 with a message naming the flag.
// No cluster needed, so not in cli.test.ts (whose tests are skipped without one).
import t from 'tap';
import { execCli } from './discoverClient.ts';

t.test('usage errors: --webhook without --kubernetes, both token flags, an unreadable token file', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['discover', '--static', '/nonexistent.yaml', '--webhook'], /--webhook needs --kubernetes/],
    [['discover', '--kubernetes', '--write-token', 'a', '--write-token-file', '/etc/hostname'], /not both/],
    [['discover', '--kubernetes', '--write-token-file', '/nonexistent/token'], /cannot read --write-token-file/],
  ];
  // In parallel: each is a cold start of the CLI.
  const results = await Promise.all(cases.map(([args]) => execCli([...args])));
  cases.forEach(([args, pattern], i) => {
    const r = results[i];
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, pattern);
  });
});
