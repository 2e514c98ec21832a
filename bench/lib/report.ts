// What every scenario hands back, and how it becomes a JSON file, a Markdown report and an SVG
// chart (drawn here: bars for throughput-like figures, latency percentile curves per contender).
import type { Machine } from './machine.ts';
import type { Figure } from './stats.ts';
import { CURVE_PERCENTILES } from './stats.ts';

export interface Column {
  key: string;
  label: string;
  unit: string;
  /** figure: median (min–max) of rounds; ratio: a plain number shown as N×; text: as is. */
  kind: 'figure' | 'ratio' | 'text';
}

export interface Row {
  contender: string;
  label: string;
  /** A sub-heading rows share (a load level, a query kind, a number of sidecars). */
  group?: string;
  figures: Record<string, Figure>;
  ratios: Record<string, number | null>;
  text?: Record<string, string>;
  /** Percentile → milliseconds (median of rounds), drawn as this row's latency curve. */
  curve?: Record<string, number>;
  error?: string;
}

export interface BarPanel {
  title: string;
  /** Which figure of each row the bars show. */
  figure: string;
  unit: string;
}

export interface Target {
  name: string;
  goal: string;
  /** The measured figure the goal is about (same unit as the goal). */
  measured: number | null;
  met: boolean | null;
  /** How far from the goal, in words ("+12%", "0.3 ms over"). */
  margin: string;
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  /** How it was measured, in a few sentences: load, rounds, peers, pinning. */
  method: string;
  command: string;
  date: string;
  machine?: Machine;
  settings: Record<string, unknown>;
  columns: Column[];
  rows: Row[];
  bars: BarPanel[];
  curveTitle?: string;
  targets: Target[];
  notes: string[];
  /** Contenders that could not run, with why: any entry makes the run exit non-zero. */
  errors: string[];
  raw?: unknown;
}

const fmt = (x: number): string => {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
};

function cell(row: Row, col: Column): string {
  if (row.error) return '—';
  if (col.kind === 'ratio') {
    const r = row.ratios[col.key];
    return r === null || r === undefined ? '—' : `${r.toFixed(2)}×`;
  }
  if (col.kind === 'text') return row.text?.[col.key] ?? '—';
  const f = row.figures[col.key];
  if (!f) return '—';
  return f.rounds.length > 1 ? `${fmt(f.median)} (${fmt(f.min)}–${fmt(f.max)})` : fmt(f.median);
}

export function renderMarkdown(r: ScenarioResult, svgFile: string): string {
  const lines: string[] = [`# ${r.title}`, ''];
  if (r.machine) {
    const m = r.machine;
    lines.push(
      `Machine: ${m.cores} cores, ${m.cpuModel}, ${m.memoryGb} GB, Linux ${m.kernel}, Node ${m.node}; load average at start ${m.loadAverageAtStart.join(' ')}. Run ${r.date}.`,
      '',
    );
  }
  lines.push(r.method, '', `Command: \`${r.command}\``, '');
  lines.push(`| Contender | ${r.columns.map((c) => (c.unit ? `${c.label} (${c.unit})` : c.label)).join(' | ')} |`);
  lines.push(`|---|${r.columns.map(() => '---:').join('|')}|`);
  let group: string | undefined;
  for (const row of r.rows) {
    if (row.group !== undefined && row.group !== group) {
      group = row.group;
      lines.push(`| **${row.group}** |${r.columns.map(() => ' ').join('|')}|`);
    }
    lines.push(`| ${row.label}${row.error ? ' (could not run)' : ''} | ${r.columns.map((c) => cell(row, c)).join(' | ')} |`);
  }
  lines.push(
    '',
    'Figures are medians of the rounds, with the lowest and highest round in brackets; ratios compare medians from the same run.',
    '',
  );
  if (r.targets.length) {
    lines.push('| Target | Goal | Measured | Met | Margin |', '|---|---|---:|---|---|');
    for (const t of r.targets)
      lines.push(
        `| ${t.name} | ${t.goal} | ${t.measured === null ? 'n/a' : fmt(t.measured)} | ${t.met === null ? 'not measured' : t.met ? 'met' : '**missed**'} | ${t.margin} |`,
      );
    lines.push('');
  }
  lines.push(`![${r.title}](${svgFile})`, '');
  for (const n of r.notes) lines.push(`- ${n}`);
  if (r.notes.length) lines.push('');
  if (r.errors.length) {
    lines.push('Could not run:', '');
    for (const e of r.errors) lines.push(`- ${e}`);
    lines.push('');
  }
  return lines.join('\n');
}

const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#ff7f0e',
  '#2ca02c',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#bcbd22',
  '#7f7f7f',
  '#393b79',
  '#637939',
];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Ticks 1-2-5 per decade between lo and hi. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

export function renderSvg(r: ScenarioResult): string {
  const W = 960;
  const labelW = 340;
  const barMax = W - labelW - 90;
  const parts: string[] = [];
  let y = 30;
  parts.push(`<text x="${W / 2}" y="${y}" font-size="18" font-weight="bold" text-anchor="middle">${esc(r.title)}</text>`);
  y += 12;
  if (r.machine) {
    y += 16;
    parts.push(
      `<text x="${W / 2}" y="${y}" font-size="12" fill="#555" text-anchor="middle">${esc(`${r.machine.cores} cores ${r.machine.cpuModel}, Node ${r.machine.node}, ${r.date.slice(0, 16).replace('T', ' ')} UTC; medians of rounds, whiskers span the rounds`)}</text>`,
    );
  }
  const colorOf = new Map<string, string>();
  const color = (key: string) => {
    if (!colorOf.has(key)) colorOf.set(key, PALETTE[colorOf.size % PALETTE.length]);
    return colorOf.get(key)!;
  };
  // One colour per contender in table order, the same in every panel.
  for (const row of r.rows) color(row.contender);
  for (const panel of r.bars) {
    const rows = r.rows.filter((row) => !row.error && row.figures[panel.figure]);
    if (rows.length === 0) continue;
    y += 34;
    parts.push(
      `<text x="10" y="${y}" font-size="15" font-weight="bold">${esc(panel.title)}${panel.unit ? ` (${esc(panel.unit)})` : ''}</text>`,
    );
    y += 10;
    const max = Math.max(...rows.map((row) => row.figures[panel.figure].max)) || 1;
    const scale = (v: number) => (Math.max(0, v) / max) * barMax;
    let group: string | undefined;
    for (const row of rows) {
      if (row.group !== undefined && row.group !== group) {
        group = row.group;
        y += 18;
        parts.push(`<text x="10" y="${y}" font-size="12" font-style="italic" fill="#333">${esc(row.group)}</text>`);
      }
      const f = row.figures[panel.figure];
      y += 6;
      const c = color(row.contender);
      parts.push(`<text x="${labelW - 8}" y="${y + 13}" font-size="12" text-anchor="end">${esc(row.label)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${scale(f.median).toFixed(1)}" height="18" fill="${c}" opacity="0.85"/>`);
      if (f.rounds.length > 1) {
        parts.push(
          `<line x1="${(labelW + scale(f.min)).toFixed(1)}" x2="${(labelW + scale(f.max)).toFixed(1)}" y1="${y + 9}" y2="${y + 9}" stroke="#000" stroke-width="1.5"/>`,
        );
        for (const v of [f.min, f.max])
          parts.push(
            `<line x1="${(labelW + scale(v)).toFixed(1)}" x2="${(labelW + scale(v)).toFixed(1)}" y1="${y + 4}" y2="${y + 14}" stroke="#000" stroke-width="1.5"/>`,
          );
      }
      parts.push(
        `<text x="${(labelW + Math.max(scale(f.median), scale(f.max)) + 6).toFixed(1)}" y="${y + 13}" font-size="12">${esc(fmt(f.median))}</text>`,
      );
      y += 18;
    }
  }
  const curved = r.rows.filter((row) => !row.error && row.curve && Object.keys(row.curve).length > 0);
  if (curved.length) {
    y += 40;
    parts.push(
      `<text x="10" y="${y}" font-size="15" font-weight="bold">${esc(r.curveTitle ?? 'Latency by percentile')} (ms, log scale)</text>`,
    );
    const top = y + 20;
    const left = 70;
    const plotW = W - left - 30;
    const plotH = 320;
    const values = curved.flatMap((row) => Object.values(row.curve!)).filter((v) => v > 0);
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
    const xOf = (p: number) => left + ((Math.log10(100 / (100 - p)) - Math.log10(2)) / (4 - Math.log10(2))) * plotW;
    const yOf = (v: number) =>
      top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1)) * plotH;
    parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
    for (const t of logTicks(lo, hi)) {
      parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${yOf(t).toFixed(1)}" y2="${yOf(t).toFixed(1)}" stroke="#eee"/>`);
      parts.push(`<text x="${left - 6}" y="${(yOf(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${t}</text>`);
    }
    for (const p of CURVE_PERCENTILES) {
      parts.push(`<line x1="${xOf(p).toFixed(1)}" x2="${xOf(p).toFixed(1)}" y1="${top}" y2="${top + plotH}" stroke="#eee"/>`);
      parts.push(`<text x="${xOf(p).toFixed(1)}" y="${top + plotH + 16}" font-size="11" text-anchor="middle">p${p}</text>`);
    }
    const groups = [...new Set(curved.map((row) => row.group ?? ''))];
    const DASHES = ['', '7,4', '2,3', '10,3,2,3'];
    const legendTop = top + plotH + 36;
    curved.forEach((row, i) => {
      // One colour per contender (as in the bars); one dash pattern per group.
      const c = color(row.contender);
      const dash = DASHES[groups.indexOf(row.group ?? '') % DASHES.length];
      const pts = CURVE_PERCENTILES.filter((p) => row.curve![String(p)] !== undefined).map((p) => [xOf(p), yOf(row.curve![String(p)])]);
      parts.push(
        `<polyline fill="none" stroke="${c}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`,
      );
      for (const [a, b] of pts) parts.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3" fill="${c}"/>`);
      const lx = left + (i % 2) * (plotW / 2);
      const ly = legendTop + Math.floor(i / 2) * 18;
      parts.push(
        `<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="3"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
      );
      parts.push(`<text x="${lx + 32}" y="${ly + 4}" font-size="12">${esc(row.group ? `${row.label}, ${row.group}` : row.label)}</text>`);
    });
    y = legendTop + Math.ceil(curved.length / 2) * 18;
  }
  y += 20;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
${parts.join('\n')}
</svg>
`;
}
