// loadYamlChunked: the topology file parsed a list item at a time must give exactly what parsing
// the whole text gives, or step aside (null) so the whole-text parse runs. Checked on the files
// the project ships, on hand-picked YAML corners, and over random edits that reuse the cache.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { loadYamlChunked, type ChunkCache } from '../../discover/topology/yamlChunks.ts';
import { parseStaticTopologyWith } from '../../discover/topology/staticFile.ts';
import { DEMO_TOPOLOGY } from '../../demo.ts';
import { topology as benchTopology } from '../../bench/scenarios/discoverPropagation.ts';

function whole(text: string): unknown {
  try {
    const doc = load(text);
    return doc === null || doc === undefined ? {} : doc;
  } catch {
    return 'ERROR';
  }
}

function chunked(text: string, prev?: ChunkCache): { doc: unknown; cache: ChunkCache } {
  const cache: ChunkCache = new Map();
  return { doc: loadYamlChunked(text, prev, cache), cache };
}

/** The YAML blocks of a Markdown file. */
function yamlBlocks(path: string): string[] {
  return [...readFileSync(path, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
}

t.test('the shipped topologies are cut and give what the whole-text parse gives', async (t) => {
  const texts = [
    DEMO_TOPOLOGY,
    benchTopology(0),
    benchTopology(1),
    ...yamlBlocks(new URL('../../docs/static-topology.md', import.meta.url).pathname),
  ];
  let cut = 0;
  for (const text of texts) {
    const { doc } = chunked(text);
    if (doc === null) continue;
    cut++;
    t.same(doc, whole(text));
  }
  t.ok(cut >= 3, `${cut} of ${texts.length} cut (the demo and bench topologies at least)`);
  t.not(chunked(DEMO_TOPOLOGY).doc, null, 'the demo topology is cut');
});

const CORNERS: [string, string][] = [
  ['sequence at column 0', 'services:\n- name: a\n  ports: [80]\n- name: b\napps: []\n'],
  ['block scalar inside an item', 'apps:\n  - name: a\n    note: |\n      - not an item\n      two\n  - name: b\n'],
  ['folded scalar, keep indicator', 'apps:\n  - name: a\n    note: >+\n      x\n\n  - name: b\n'],
  ['flow sequence over lines', 'services: [\n  { name: a },\n  { name: b }\n]\napps:\n  - { name: c,\n      config: {} }\n'],
  [
    'comments and blank lines everywhere',
    '# head\n\nservices:   # the services\n  # first\n  - name: a # inline\n\n  # between\n  - name: b\n# between top keys\napps:\n  - name: c\n',
  ],
  ['a mapping under a key', 'clusterDomain: example.org\nextra:\n  a: 1\n  b: [1, 2]\nservices: []\n'],
  ['empty values', 'services:\napps:\n'],
  ['CRLF line ends', 'services:\r\n  - name: a\r\n  - name: b\r\napps: []\r\n'],
  ['quoted strings with colons and dashes', 'apps:\n  - name: "a: b - c"\n    x: \'- y\'\n  - name: z\n'],
  ['items that are scalars and nested lists', 'services:\n  - a\n  -\n    - b\n    - c\n  - - d\n'],
  ['no trailing newline', 'services:\n  - name: a'],
  ['a key whose value is on its line and runs on', 'services: [a,\n  b]\napps: {x: 1,\n  y: 2}\n'],
];

t.test('YAML corners: cut or not, never different', async (t) => {
  for (const [what, text] of CORNERS) {
    const { doc } = chunked(text);
    const expected = whole(text);
    if (doc === null) t.pass(`${what}: left to the whole-text parse`);
    else t.same(doc, expected, what);
  }
  t.not(chunked(CORNERS[0][1]).doc, null, 'a sequence at column 0 is cut');
  t.not(chunked(CORNERS[1][1]).doc, null, 'a block scalar holding "- " lines is cut');
});

const STEP_ASIDE: [string, string][] = [
  ['anchors and aliases', 'services:\n  - &a { name: a }\napps:\n  - *a\n'],
  ['a tag', 'services:\n  - !!str 1\n'],
  ['a second document', 'services: []\n---\napps: []\n'],
  ['a directive', '%YAML 1.2\n---\nservices: []\n'],
  ['a tab', 'services:\n\t- a\n'],
  ['a key twice', 'services: []\nservices: []\n'],
  ['a quoted top key', '"services": []\n'],
  ['a root sequence', '- a\n- b\n'],
  ['an item less indented than the first', 'services:\n    - a\n  - b\n'],
  ['bad YAML inside an item', 'services:\n  - name: [a\n  - name: b\n'],
  ['a string running over an item boundary', 'services:\n  - name: "a\n  - b"\n'],
  ['a key twice inside an item', 'services:\n  - { name: a, name: b }\n'],
  ['a star inside a string', 'apps:\n  - name: a\n    domains: ["*.example.org"]\n'],
];

t.test('what cannot be cut safely is left to the whole-text parse', async (t) => {
  for (const [what, text] of STEP_ASIDE) t.equal(chunked(text).doc, null, what);
  // And the topology parser still gives the whole-text parse's error, with its line numbers.
  t.throws(() => parseStaticTopologyWith('services:\n  - name: [a\n  - name: b\n'), { message: /topology is not valid YAML: .*\(3:/ });
});

t.test('unchanged items come back as the same objects; 300 random edits agree with the whole-text parse', async (t) => {
  const base = benchTopology(0);
  const first = chunked(base);
  const again = chunked(base, first.cache);
  const svc0 = (first.doc as { services: unknown[] }).services[0];
  t.equal((again.doc as { services: unknown[] }).services[0], svc0, 'the same object when the text is the same');
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  let lines = base.split('\n');
  let cache = first.cache;
  let bad = 0;
  let reused = 0;
  for (let i = 0; i < 300; i++) {
    const at = 1 + rand(lines.length - 2);
    const edit = rand(6);
    if (edit === 0) lines[at] = lines[at].replace(/10\.([0-9]+)\./, `10.${rand(250)}.`);
    else if (edit === 1)
      lines.splice(at, 0, lines[at]); // a line twice (an item twice, or a key twice)
    else if (edit === 2 && lines.length > 10) lines.splice(at, 1);
    else if (edit === 3) lines.splice(at, 0, rand(2) ? '  # a comment' : '');
    else if (edit === 4)
      lines[at] = lines[at].replace('{ name', '{ name: x, name'); // a bad item
    else lines[at] = ' ' + lines[at]; // a wrong indentation
    const text = lines.join('\n');
    const before = new Set(cache.values());
    const r = chunked(text, cache);
    const expected = whole(text);
    if (r.doc === null) {
      cache = new Map();
    } else {
      if (JSON.stringify(r.doc) !== JSON.stringify(expected)) bad++;
      for (const v of r.cache.values())
        if (before.has(v)) {
          reused++;
          break;
        }
      cache = r.cache;
    }
    // Keep the file mostly sound: go back to the base now and then.
    if (rand(8) === 0) lines = base.split('\n');
  }
  t.equal(bad, 0, 'every cut parse equals the whole-text parse');
  t.ok(reused > 60, `items reused across edits (${reused} edits)`);
});
