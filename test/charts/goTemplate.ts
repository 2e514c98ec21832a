// A small interpreter for the subset of Go text/template that charts/shoal uses, with the Helm and
// sprig functions it calls, so the chart can be rendered and its output validated without a Helm binary.
// It follows Go's rules where the chart depends on them (trim markers, truthiness, variable scope,
// short-circuit and/or, nil-pointer errors on missing parents); it is a test aid, not a Helm replacement.
import { stringify as toYamlText } from 'yaml';

type Value = unknown;

export interface HelmFunctions {
  lookup(apiVersion: string, kind: string, namespace: string, name: string): Record<string, unknown>;
}

// ---------- lexing: text and actions ----------

interface Piece { text?: string; action?: string }

function split(src: string): Piece[] {
  const out: Piece[] = [];
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let text = src.slice(i, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open < 0) {
      out.push({ text });
      break;
    }
    let j = open + 2;
    const trimPrev = src[j] === '-' && /\s/.test(src[j + 1] ?? '');
    if (trimPrev) {
      text = text.replace(/\s+$/, '');
      j += 1;
    }
    out.push({ text });
    // Find the closing braces outside string literals.
    let k = j;
    let quote: string | null = null;
    for (; k < src.length; k++) {
      const c = src[k];
      if (quote) {
        if (c === '\\' && quote === '"') k++;
        else if (c === quote) quote = null;
      } else if (c === '"' || c === '`') quote = c;
      else if (src.startsWith('}}', k)) break;
    }
    if (k >= src.length) throw new Error(`unclosed action at offset ${open}`);
    let body = src.slice(j, k);
    trimNext = /\s-$/.test(body);
    if (trimNext) body = body.slice(0, -1);
    body = body.trim();
    if (!body.startsWith('/*')) out.push({ action: body });
    i = k + 2;
  }
  return out.filter((p) => p.action !== undefined || p.text !== '');
}

// ---------- tokens of an action ----------

type Token =
  | { t: 'str'; v: string } | { t: 'num'; v: number } | { t: 'field'; v: string[] } | { t: 'var'; name: string; path: string[] }
  | { t: 'id'; v: string } | { t: '(' } | { t: ')' } | { t: '|' } | { t: ':=' } | { t: '=' } | { t: ',' };

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '"') {
      let j = i + 1;
      while (j < s.length && s[j] !== '"') j += s[j] === '\\' ? 2 : 1;
      out.push({ t: 'str', v: JSON.parse(s.slice(i, j + 1)) as string });
      i = j + 1;
      continue;
    }
    if (c === '`') {
      const j = s.indexOf('`', i + 1);
      out.push({ t: 'str', v: s.slice(i + 1, j) });
      i = j + 1;
      continue;
    }
    if (s.startsWith(':=', i)) { out.push({ t: ':=' }); i += 2; continue; }
    if (c === '(' || c === ')' || c === '|' || c === '=' || c === ',') { out.push({ t: c }); i++; continue; }
    const m = /^(\$[A-Za-z0-9_]*|\.?[A-Za-z_][A-Za-z0-9_]*|\.|-?\d+(\.\d+)?)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)/.exec(s.slice(i));
    if (!m) throw new Error(`cannot read action at ${JSON.stringify(s.slice(i))}`);
    const [whole, head, , rest] = m;
    const path = rest ? rest.slice(1).split('.') : [];
    if (head.startsWith('$')) out.push({ t: 'var', name: head, path });
    else if (head === '.') out.push({ t: 'field', v: path });
    else if (head.startsWith('.')) out.push({ t: 'field', v: [head.slice(1), ...path] });
    else if (/^-?\d/.test(head)) out.push({ t: 'num', v: Number(head) });
    else out.push({ t: 'id', v: head });
    i += whole.length;
  }
  return out;
}

// ---------- parse tree ----------

type Operand = Token | { t: 'pipe'; p: Pipeline };
interface Command { operands: Operand[] }
interface Pipeline { decl?: { names: string[]; op: ':=' | '=' }; cmds: Command[] }
type Node =
  | { k: 'text'; v: string }
  | { k: 'action'; p: Pipeline }
  | { k: 'if'; p: Pipeline; then: Node[]; else: Node[] }
  | { k: 'with'; p: Pipeline; then: Node[]; else: Node[] }
  | { k: 'range'; p: Pipeline; then: Node[]; else: Node[] }
  | { k: 'template'; name: string; p?: Pipeline };

function parsePipeline(tokens: Token[]): Pipeline {
  let pos = 0;
  const pipeline: Pipeline = { cmds: [] };
  const declEnd = tokens.findIndex((t) => t.t === ':=' || t.t === '=');
  if (declEnd > 0 && tokens.slice(0, declEnd).every((t) => t.t === 'var' || t.t === ',')) {
    pipeline.decl = { names: tokens.slice(0, declEnd).filter((t) => t.t === 'var').map((t) => (t as { name: string }).name), op: tokens[declEnd].t as ':=' | '=' };
    pos = declEnd + 1;
  }
  const parseCmds = (): Command[] => {
    const cmds: Command[] = [{ operands: [] }];
    while (pos < tokens.length) {
      const tok = tokens[pos];
      if (tok.t === ')') break;
      pos++;
      if (tok.t === '|') { cmds.push({ operands: [] }); continue; }
      if (tok.t === '(') {
        const inner = parseCmds();
        if (tokens[pos]?.t !== ')') throw new Error('unclosed (');
        pos++;
        cmds[cmds.length - 1].operands.push({ t: 'pipe', p: { cmds: inner } });
        continue;
      }
      cmds[cmds.length - 1].operands.push(tok);
    }
    return cmds;
  };
  pipeline.cmds = parseCmds();
  if (pos !== tokens.length) throw new Error('unexpected )');
  return pipeline;
}

function parse(pieces: Piece[], defines: Map<string, Node[]>): Node[] {
  let i = 0;
  const block = (): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (i < pieces.length) {
      const p = pieces[i++];
      if (p.text !== undefined) { nodes.push({ k: 'text', v: p.text }); continue; }
      const a = p.action!;
      const word = /^[a-z]+/.exec(a)?.[0] ?? '';
      const rest = a.slice(word.length).trim();
      if (word === 'end') return { nodes, end: 'end' };
      if (word === 'else') return { nodes, end: a };
      if (word === 'if' || word === 'with' || word === 'range') nodes.push(control(word, rest));
      else if (word === 'define') {
        const name = JSON.parse(rest) as string;
        const body = block();
        if (body.end !== 'end') throw new Error(`define ${name}: else without if`);
        defines.set(name, body.nodes);
      } else if (word === 'template') {
        const toks = tokenize(rest);
        const name = (toks[0] as { v: string }).v;
        nodes.push({ k: 'template', name, p: toks.length > 1 ? parsePipeline(toks.slice(1)) : undefined });
      } else nodes.push({ k: 'action', p: parsePipeline(tokenize(a)) });
    }
    return { nodes, end: 'eof' };
  };
  const control = (k: 'if' | 'with' | 'range', rest: string): Node => {
    const p = parsePipeline(tokenize(rest));
    const body = block();
    let otherwise: Node[] = [];
    if (body.end.startsWith('else')) {
      const chained = body.end.slice(4).trim();
      if (chained.startsWith('if ') || chained.startsWith('with ')) {
        const w = chained.startsWith('if ') ? 'if' : 'with';
        otherwise = [control(w, chained.slice(w.length).trim())];
        return { k, p, then: body.nodes, else: otherwise };
      }
      const tail = block();
      if (tail.end !== 'end') throw new Error(`${k}: missing end`);
      otherwise = tail.nodes;
    } else if (body.end !== 'end') throw new Error(`${k}: missing end`);
    return { k, p, then: body.nodes, else: otherwise };
  };
  const top = block();
  if (top.end !== 'eof') throw new Error(`unexpected {{${top.end}}}`);
  return top.nodes;
}

// ---------- evaluation ----------

export class TemplateError extends Error {
  override name = 'TemplateError';
}

function truthy(v: Value): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v as object).length > 0;
  return true;
}

function walk(start: Value, path: string[], where: string): Value {
  let v = start;
  for (const key of path) {
    if (v === null || v === undefined) throw new TemplateError(`nil pointer evaluating ${where}: no ${key} on a missing value`);
    if (typeof v !== 'object') throw new TemplateError(`can't evaluate field ${key} in ${typeof v} (${where})`);
    v = (v as Record<string, Value>)[key];
  }
  return v;
}

function str(v: Value): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(str).join(' ')}]`;
  return `map[${Object.entries(v as object).map(([k, x]) => `${k}:${str(x)}`).join(' ')}]`;
}

function goPrintf(format: string, args: Value[]): string {
  let n = 0;
  return format.replace(/%([sdvq%])/g, (_, verb: string) => {
    if (verb === '%') return '%';
    const a = args[n++];
    if (verb === 'd') return String(Math.trunc(Number(a)));
    if (verb === 'q') return JSON.stringify(str(a));
    return str(a);
  });
}

/** semverCompare for single constraints such as "<1.29-0" or ">=1.32.0-0" (the "-0" admits pre-releases like v1.29.0-gke.1). */
function semverCompare(constraint: string, version: string): boolean {
  const c = /^(<=|>=|<|>|=)?\s*v?(\d+)\.(\d+)(?:\.(\d+))?(-0)?$/.exec(constraint.trim());
  const v = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(version.trim());
  if (!c || !v) throw new TemplateError(`semverCompare ${constraint} ${version}: not understood by this test renderer`);
  const want = [Number(c[2]), Number(c[3]), Number(c[4] ?? 0)];
  const have = [Number(v[1]), Number(v[2]), Number(v[3] ?? 0)];
  const cmp = have[0] - want[0] || have[1] - want[1] || have[2] - want[2];
  switch (c[1] ?? '=') {
    case '<': return cmp < 0;
    case '<=': return cmp <= 0;
    case '>': return cmp > 0;
    case '>=': return cmp >= 0;
    default: return cmp === 0;
  }
}

function stubPem(kind: string, cn: string): string {
  return `-----BEGIN ${kind}-----\nstub ${kind} for ${cn}\n-----END ${kind}-----\n`;
}

class Scope {
  vars = new Map<string, Value>();
  readonly parent?: Scope;
  constructor(parent?: Scope) {
    this.parent = parent;
  }
  get(name: string): Value {
    for (let s: Scope | undefined = this; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
    throw new TemplateError(`undefined variable ${name}`);
  }
  set(name: string, v: Value): void {
    for (let s: Scope | undefined = this; s; s = s.parent) if (s.vars.has(name)) { s.vars.set(name, v); return; }
    throw new TemplateError(`assignment to undeclared variable ${name}`);
  }
}

export interface RenderContext {
  Values: Value;
  Release: { Name: string; Namespace: string; Service: string; IsInstall: boolean; IsUpgrade: boolean; Revision: number };
  Chart: { Name: string; Version: string; AppVersion: string };
  Capabilities: { KubeVersion: { Version: string; Major: string; Minor: string } };
}

/** Renders templates the way `helm template` would for this chart (lookup answers from `helm`). */
export class ChartRenderer {
  private readonly defines = new Map<string, Node[]>();
  private readonly files = new Map<string, Node[]>();
  private readonly helm: HelmFunctions;

  constructor(sources: Record<string, string>, helm: HelmFunctions) {
    this.helm = helm;
    for (const [name, src] of Object.entries(sources)) this.files.set(name, parse(split(src), this.defines));
  }

  render(file: string, ctx: RenderContext): string {
    const nodes = this.files.get(file);
    if (!nodes) throw new Error(`no template ${file}`);
    const root = { ...ctx, Template: { Name: file, BasePath: 'templates' } };
    return this.exec(nodes, root, root, new Scope());
  }

  private exec(nodes: Node[], dot: Value, root: Value, scope: Scope): string {
    let out = '';
    for (const n of nodes) {
      switch (n.k) {
        case 'text': out += n.v; break;
        case 'action': {
          const v = this.pipeline(n.p, dot, root, scope);
          if (!n.p.decl) out += str(v);
          break;
        }
        case 'if': {
          const inner = new Scope(scope);
          out += truthy(this.pipeline(n.p, dot, root, inner)) ? this.exec(n.then, dot, root, inner) : this.exec(n.else, dot, root, new Scope(scope));
          break;
        }
        case 'with': {
          const inner = new Scope(scope);
          const v = this.pipeline(n.p, dot, root, inner);
          out += truthy(v) ? this.exec(n.then, v, root, inner) : this.exec(n.else, dot, root, new Scope(scope));
          break;
        }
        case 'range': {
          const names = n.p.decl?.names ?? [];
          const coll = this.pipeline({ cmds: n.p.cmds }, dot, root, scope);
          const entries: Array<[Value, Value]> = Array.isArray(coll) ? coll.map((v, i) => [i, v])
            : coll && typeof coll === 'object' ? Object.keys(coll).sort().map((k) => [k, (coll as Record<string, Value>)[k]]) : [];
          if (entries.length === 0) { out += this.exec(n.else, dot, root, new Scope(scope)); break; }
          for (const [key, v] of entries) {
            const inner = new Scope(scope);
            if (names.length === 1) inner.vars.set(names[0], v);
            if (names.length === 2) { inner.vars.set(names[0], key); inner.vars.set(names[1], v); }
            out += this.exec(n.then, v, root, inner);
          }
          break;
        }
        case 'template': {
          const body = this.defines.get(n.name);
          if (!body) throw new TemplateError(`template ${n.name} not defined`);
          const arg = n.p ? this.pipeline(n.p, dot, root, scope) : undefined;
          out += this.exec(body, arg, arg, new Scope());
          break;
        }
      }
    }
    return out;
  }

  private pipeline(p: Pipeline, dot: Value, root: Value, scope: Scope): Value {
    let v: Value = undefined;
    let first = true;
    for (const cmd of p.cmds) {
      v = this.command(cmd, dot, root, scope, first ? [] : [v]);
      first = false;
    }
    if (p.decl) {
      if (p.decl.op === ':=') scope.vars.set(p.decl.names[0], v);
      else scope.set(p.decl.names[0], v);
    }
    return v;
  }

  private operand(o: Operand, dot: Value, root: Value, scope: Scope): Value {
    switch (o.t) {
      case 'str': case 'num': return o.v;
      case 'field': return walk(dot, o.v, `.${o.v.join('.')}`);
      case 'var': return walk(o.name === '$' ? root : scope.get(o.name), o.path, `${o.name}.${o.path.join('.')}`);
      case 'pipe': return this.pipeline(o.p, dot, root, scope);
      case 'id':
        if (o.v === 'true') return true;
        if (o.v === 'false') return false;
        if (o.v === 'nil') return null;
        return this.call(o.v, [], dot, root, scope);
      default: throw new TemplateError(`unexpected token ${o.t}`);
    }
  }

  private command(cmd: Command, dot: Value, root: Value, scope: Scope, piped: Value[]): Value {
    const [head, ...rest] = cmd.operands;
    if (!head) throw new TemplateError('empty command');
    if (head.t === 'id' && !['true', 'false', 'nil'].includes(head.v)) {
      // and/or evaluate lazily, as Go does.
      if (head.v === 'and' || head.v === 'or') {
        let last: Value;
        for (const o of rest) {
          last = this.operand(o, dot, root, scope);
          if ((head.v === 'and') !== truthy(last)) return last;
        }
        if (piped.length > 0) last = piped[0];
        return last;
      }
      return this.call(head.v, [...rest.map((o) => this.operand(o, dot, root, scope)), ...piped], dot, root, scope);
    }
    if (rest.length > 0 || piped.length > 0) throw new TemplateError('a value cannot take arguments');
    return this.operand(head, dot, root, scope);
  }

  private call(name: string, a: Value[], _dot: Value, _root: Value, _scope: Scope): Value {
    const s = (i: number) => str(a[i]);
    switch (name) {
      case 'include': {
        const body = this.defines.get(s(0));
        if (!body) throw new TemplateError(`include: template ${s(0)} not defined`);
        return this.exec(body, a[1], a[1], new Scope());
      }
      case 'printf': return goPrintf(s(0), a.slice(1));
      case 'print': return a.map(str).join('');
      case 'quote': return a.map((x) => JSON.stringify(str(x))).join(' ');
      case 'trunc': { const n = Number(a[0]); const t = s(1); return n >= 0 ? t.slice(0, n) : t.slice(n); }
      case 'trimSuffix': return s(1).endsWith(s(0)) ? s(1).slice(0, s(1).length - s(0).length) : s(1);
      case 'trimPrefix': return s(1).startsWith(s(0)) ? s(1).slice(s(0).length) : s(1);
      case 'replace': return s(2).split(s(0)).join(s(1));
      case 'indent': return s(1).split('\n').map((l) => ' '.repeat(Number(a[0])) + l).join('\n');
      case 'nindent': return `\n${s(1).split('\n').map((l) => ' '.repeat(Number(a[0])) + l).join('\n')}`;
      case 'toYaml': return a[0] === undefined || a[0] === null ? 'null' : toYamlText(a[0], { lineWidth: 0 }).replace(/\n$/, '');
      case 'default': return truthy(a[1]) ? a[1] : a[0];
      case 'required': if (!truthy(a[1])) throw new TemplateError(s(0)); return a[1];
      case 'fail': throw new TemplateError(`fail: ${s(0)}`);
      case 'lookup': return this.helm.lookup(s(0), s(1), s(2), s(3));
      case 'semverCompare': return semverCompare(s(0), s(1));
      case 'genCA': return { Cert: stubPem('CERTIFICATE', s(0)), Key: stubPem('RSA PRIVATE KEY', s(0)) };
      case 'genSignedCert': return { Cert: stubPem('CERTIFICATE', `${s(0)} ${str(a[2])}`), Key: stubPem('RSA PRIVATE KEY', s(0)) };
      case 'b64enc': return Buffer.from(s(0)).toString('base64');
      case 'list': return [...a];
      case 'dict': { const d: Record<string, Value> = {}; for (let i = 0; i + 1 < a.length; i += 2) d[s(i)] = a[i + 1]; return d; }
      case 'hasKey': return a[0] !== null && typeof a[0] === 'object' && s(1) in (a[0] as object);
      case 'index': return a.slice(1).reduce((v: Value, k) => (v === null || v === undefined ? undefined : (v as Record<string, Value>)[str(k)]), a[0]);
      case 'eq': return a.slice(1).some((x) => x === a[0]);
      case 'ne': return a[0] !== a[1];
      case 'not': return !truthy(a[0]);
      case 'gt': return Number(a[0]) > Number(a[1]);
      case 'lt': return Number(a[0]) < Number(a[1]);
      case 'int': return Math.trunc(Number(a[0] ?? 0));
      case 'mul': return a.reduce((x: number, y) => x * Number(y), 1);
      case 'add': return a.reduce((x: number, y) => x + Number(y), 0);
      case 'len': return Array.isArray(a[0]) || typeof a[0] === 'string' ? (a[0] as string).length : Object.keys(a[0] ?? {}).length;
      case 'empty': return !truthy(a[0]);
      case 'toString': return s(0);
      default: throw new TemplateError(`function ${name} is not implemented by this test renderer`);
    }
  }
}
