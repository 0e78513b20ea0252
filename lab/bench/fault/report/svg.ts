/**
 * bench/fault/report/svg: the report's charts as inline SVG strings, with no chart library and no
 * script. Every chart has a <title> and <desc> (named by aria-labelledby), a legend, axis ticks and
 * an axis label; every bar and point carries a <title> with its exact figure (a tooltip in a
 * browser). Values that were not measured are drawn as a grey note in the row, never as zero.
 *
 * Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies);
 * series never rely on colour alone: the legend order is the bar order within a group.
 */

/** Escapes text for HTML/SVG element content and attribute values. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export const COLORS = {
  blue: '#0072B2',
  orange: '#E69F00',
  green: '#009E73',
  vermillion: '#D55E00',
  sky: '#56B4E9',
  purple: '#CC79A7',
  yellow: '#F0E442',
  grey: '#7a7a7a',
  ink: '#222222',
  faint: '#dddddd',
} as const;

const FONT = 11;
/** rough width of a character of the 11 px sans-serif the page uses */
const CHAR_W = 6.1;
const textWidth = (s: string, size = FONT): number => s.length * CHAR_W * (size / FONT);

function clip(s: string, px: number, size = FONT): string {
  const max = Math.max(1, Math.floor(px / (CHAR_W * (size / FONT))));
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

const n2 = (x: number): string => (Math.round(x * 10) / 10).toString();

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi <= lo) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const start = Math.floor(lo / step + 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start, i = 0; i < 100; i++, v = start + i * step) {
    ticks.push(Math.round(v / step) * step);
    if (v >= hi - 1e-9 * step) break;
  }
  return ticks;
}

function tickText(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 10000) return `${Number((v / 1000).toFixed(1))}k`;
  return String(Number(v.toFixed(2)));
}

export interface Series {
  name: string;
  color: string;
}

let uid = 0;
/** A document-unique id prefix for a chart's title/desc elements. */
function nextId(base: string): string {
  uid = (uid + 1) % 1_000_000;
  return `${base.replace(/[^a-zA-Z0-9_-]/g, '-')}-${uid}`;
}

function open(id: string, width: number, height: number, title: string, desc: string): string {
  return (
    `<svg viewBox="0 0 ${width} ${Math.ceil(height)}" width="${width}" height="${Math.ceil(height)}" role="img" aria-labelledby="${id}-t ${id}-d" class="chart">` +
    `<title id="${id}-t">${esc(title)}</title><desc id="${id}-d">${esc(desc)}</desc>`
  );
}

function legend(series: readonly Series[], x: number, y: number, maxWidth: number, extra: string[] = []): { svg: string; height: number } {
  let cx = x;
  let cy = y;
  const parts: string[] = [];
  for (const s of series) {
    const w = 14 + textWidth(s.name) + 14;
    if (cx + w > x + maxWidth && cx > x) {
      cx = x;
      cy += 16;
    }
    parts.push(`<rect x="${n2(cx)}" y="${n2(cy - 9)}" width="10" height="10" fill="${s.color}" stroke="${COLORS.ink}" stroke-width="0.5"/>`);
    parts.push(`<text x="${n2(cx + 14)}" y="${n2(cy)}">${esc(s.name)}</text>`);
    cx += w;
  }
  for (const t of extra) {
    const w = textWidth(t) + 14;
    if (cx + w > x + maxWidth && cx > x) {
      cx = x;
      cy += 16;
    }
    parts.push(`<text x="${n2(cx)}" y="${n2(cy)}" class="muted">${esc(t)}</text>`);
    cx += w;
  }
  return { svg: `<g class="legend">${parts.join('')}</g>`, height: cy - y + 16 };
}

// ---------------------------------------------------------------- horizontal grouped bars

export interface Bar {
  value: number;
  min?: number;
  max?: number;
  /** the text shown at the bar's end (default: format(value)) */
  text?: string;
  /** the tooltip (default: series name and text) */
  tip?: string;
}

export interface BarRow {
  label: string;
  /** one per series; undefined = not measured (drawn as nothing, with `note` when all are missing) */
  bars: (Bar | undefined)[];
  /** shown in the row when no bar is drawn (e.g. "failed: …", "skipped: …", "not measured") */
  note?: string;
  /** a short mark drawn after the bars (e.g. "partial") */
  mark?: string;
}

export interface BarChartSpec {
  id: string;
  title: string;
  axisLabel: string;
  series: readonly Series[];
  rows: readonly BarRow[];
  format: (x: number) => string;
  width?: number;
  /** drawn in the legend line, after the series (e.g. "whiskers: min–max") */
  legendNotes?: string[];
  /** what a missing bar of a drawn row says (default "not measured") */
  missingText?: string;
}

export function barChart(spec: BarChartSpec): string {
  const id = nextId(spec.id);
  const W = spec.width ?? 620;
  const labelW = Math.min(170, Math.max(60, ...spec.rows.map((r) => textWidth(r.label) + 10)));
  const left = labelW + 6;
  // room on the right for the longest value text, at most a third of the width
  const texts = spec.rows.flatMap((r) => r.bars.flatMap((b) => (b !== undefined && Number.isFinite(b.value) ? [b.text ?? spec.format(b.value)] : [])));
  const right = Math.min(W / 3, Math.max(40, ...texts.map((t) => textWidth(t, 10) + 10)));
  const plotW = W - left - right;
  const barH = 11;
  const barGap = 2;
  const groupGap = 9;
  const lg = legend(spec.series, 8, 14, W - 16, spec.legendNotes);
  const top = lg.height + 12;
  const groupH = spec.series.length * (barH + barGap) - barGap;
  const plotH = Math.max(groupH, spec.rows.length * (groupH + groupGap) - groupGap);
  const H = top + plotH + 44;
  const all = spec.rows.flatMap((r) => r.bars.flatMap((b) => (b !== undefined ? [b.value, b.max ?? b.value] : [])).filter(Number.isFinite));
  const ticks = niceTicks(0, all.length > 0 ? Math.max(...all) : 1, 5);
  const xmax = ticks[ticks.length - 1]!;
  const sx = (v: number): number => left + (Math.max(0, v) / xmax) * plotW;
  const out: string[] = [open(id, W, H, spec.title, `${spec.axisLabel}; one group per row: ${spec.series.map((s) => s.name).join(', ')}`)];
  out.push(lg.svg);
  for (const t of ticks) {
    out.push(`<line x1="${n2(sx(t))}" x2="${n2(sx(t))}" y1="${top - 4}" y2="${n2(top + plotH + 4)}" stroke="${COLORS.faint}"/>`);
    out.push(`<text x="${n2(sx(t))}" y="${n2(top + plotH + 17)}" text-anchor="middle" class="tick">${esc(tickText(t))}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top - 4}" y2="${n2(top + plotH + 4)}" stroke="${COLORS.ink}"/>`);
  out.push(`<text x="${n2(left + plotW / 2)}" y="${n2(top + plotH + 34)}" text-anchor="middle" class="axis">${esc(spec.axisLabel)}</text>`);
  spec.rows.forEach((row, i) => {
    const y0 = top + i * (groupH + groupGap);
    const labelY = row.mark !== undefined ? y0 + groupH / 2 - 1 : y0 + groupH / 2 + 4;
    out.push(`<text x="${labelW}" y="${n2(labelY)}" text-anchor="end">${esc(clip(row.label, labelW - 4))}<title>${esc(row.label)}</title></text>`);
    if (row.mark !== undefined) out.push(`<text x="${labelW}" y="${n2(labelY + 11)}" text-anchor="end" class="mark">${esc(clip(row.mark, labelW - 4, 10))}</text>`);
    const drawn = row.bars.some((b) => b !== undefined && Number.isFinite(b.value));
    if (!drawn) {
      const note = row.note ?? 'not measured';
      out.push(`<text x="${left + 6}" y="${n2(y0 + groupH / 2 + 4)}" class="note">${esc(clip(note, plotW + right - 10))}<title>${esc(note)}</title></text>`);
      return;
    }
    row.bars.forEach((b, j) => {
      const s = spec.series[j]!;
      const y = y0 + j * (barH + barGap);
      if (b === undefined || !Number.isFinite(b.value)) {
        const missing = `${s.name}: ${spec.missingText ?? 'not measured'}`;
        out.push(`<text x="${left + 4}" y="${n2(y + barH - 2)}" class="note small">${esc(missing)}</text>`);
        return;
      }
      const text = b.text ?? spec.format(b.value);
      const tip = b.tip ?? `${row.label}, ${s.name}: ${text}`;
      const x1 = sx(b.value);
      out.push(`<rect x="${left}" y="${n2(y)}" width="${n2(Math.max(1, x1 - left))}" height="${barH}" fill="${s.color}"><title>${esc(tip)}</title></rect>`);
      let tx = x1;
      if (b.min !== undefined && b.max !== undefined && Number.isFinite(b.min) && Number.isFinite(b.max) && b.max > b.min) {
        const a = sx(b.min);
        const z = sx(b.max);
        const cy = y + barH / 2;
        out.push(`<path d="M${n2(a)} ${n2(cy)}H${n2(z)}M${n2(a)} ${n2(cy - 3)}V${n2(cy + 3)}M${n2(z)} ${n2(cy - 3)}V${n2(cy + 3)}" stroke="${COLORS.ink}" stroke-width="1"/>`);
        tx = Math.max(tx, z);
      }
      out.push(`<text x="${n2(tx + 4)}" y="${n2(y + barH - 2)}" class="val">${esc(clip(text, W - tx - 6, 10))}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('');
}

// ---------------------------------------------------------------- horizontal stacked bars (shares of a whole)

export interface StackRow {
  label: string;
  /** one value per series (counts); undefined row = not measured */
  segments?: number[];
  /** the whole the segments are shares of (default: their sum) */
  total?: number;
  /** text after the bar */
  text?: string;
  note?: string;
  /** a flag drawn after the text, bold (e.g. "silent!") */
  flag?: string;
}

export interface StackChartSpec {
  id: string;
  title: string;
  axisLabel: string;
  series: readonly Series[];
  rows: readonly StackRow[];
  width?: number;
}

export function stackChart(spec: StackChartSpec): string {
  const id = nextId(spec.id);
  const W = spec.width ?? 620;
  const labelW = Math.min(170, Math.max(60, ...spec.rows.map((r) => textWidth(r.label) + 10)));
  const left = labelW + 6;
  const right = 260;
  const plotW = W - left - right;
  const rowH = 14;
  const gap = 7;
  const lg = legend(spec.series, 8, 14, W - 16);
  const top = lg.height + 12;
  const plotH = Math.max(rowH, spec.rows.length * (rowH + gap) - gap);
  const H = top + plotH + 44;
  const out: string[] = [open(id, W, H, spec.title, `${spec.axisLabel}; segments: ${spec.series.map((s) => s.name).join(', ')}`)];
  out.push(lg.svg);
  for (const t of [0, 25, 50, 75, 100]) {
    const x = left + (t / 100) * plotW;
    out.push(`<line x1="${n2(x)}" x2="${n2(x)}" y1="${top - 4}" y2="${n2(top + plotH + 4)}" stroke="${COLORS.faint}"/>`);
    out.push(`<text x="${n2(x)}" y="${n2(top + plotH + 17)}" text-anchor="middle" class="tick">${t}%</text>`);
  }
  out.push(`<text x="${n2(left + plotW / 2)}" y="${n2(top + plotH + 34)}" text-anchor="middle" class="axis">${esc(spec.axisLabel)}</text>`);
  spec.rows.forEach((row, i) => {
    const y = top + i * (rowH + gap);
    out.push(`<text x="${labelW}" y="${n2(y + rowH / 2 + 4)}" text-anchor="end">${esc(clip(row.label, labelW - 4))}<title>${esc(row.label)}</title></text>`);
    const segs = row.segments;
    const total = row.total ?? (segs ?? []).reduce((a, b) => a + b, 0);
    if (segs === undefined || !(total > 0)) {
      const note = row.note ?? 'not measured';
      out.push(`<text x="${left + 6}" y="${n2(y + rowH / 2 + 4)}" class="note">${esc(clip(note, plotW + right - 10))}<title>${esc(note)}</title></text>`);
      return;
    }
    let x = left;
    segs.forEach((v, j) => {
      if (!(v > 0)) return;
      const w = (v / total) * plotW;
      const s = spec.series[j]!;
      out.push(`<rect x="${n2(x)}" y="${n2(y)}" width="${n2(Math.max(w, 1.5))}" height="${rowH}" fill="${s.color}" stroke="#fff" stroke-width="0.5"><title>${esc(`${row.label}, ${s.name}: ${v} of ${total} (${((v / total) * 100).toFixed(1)}%)`)}</title></rect>`);
      x += w;
    });
    const text = row.text ?? '';
    out.push(`<text x="${n2(left + plotW + 6)}" y="${n2(y + rowH / 2 + 4)}" class="val">${esc(clip(text, right - 8))}</text>`);
    if (row.flag !== undefined) out.push(`<text x="${n2(Math.min(left + plotW + 10 + textWidth(clip(text, right - 8)), W - textWidth(row.flag) - 2))}" y="${n2(y + rowH / 2 + 4)}" class="flag">${esc(row.flag)}</text>`);
  });
  out.push('</svg>');
  return out.join('');
}

// ---------------------------------------------------------------- scatter with a Pareto front

export interface ScatterPoint {
  label: string;
  x: number;
  y: number;
  /** on the front of the full comparison (drawn filled and bold) */
  front: boolean;
  tip?: string;
}

export interface ScatterSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  points: readonly ScatterPoint[];
  /** ids (labels) of the points on this pair's own 2-D front, joined by a dashed staircase */
  front2d: readonly string[];
  /** start the axes at zero (default true for y, false for x) */
  xFromZero?: boolean;
  yFromZero?: boolean;
  width?: number;
  height?: number;
  /** points with no figures, listed under the plot */
  missing?: readonly string[];
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}
const overlaps = (a: Box, b: Box): boolean => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

export function scatterChart(spec: ScatterSpec): string {
  const id = nextId(spec.id);
  const W = spec.width ?? 640;
  const H0 = spec.height ?? 380;
  const left = 58;
  const right = 20;
  const lg = legend(
    [
      { name: 'on the Pareto front (time, CPU, memory)', color: COLORS.blue },
      { name: 'dominated', color: '#ffffff' },
    ],
    8,
    14,
    W - 16,
    ['dashed: the front in this plane'],
  );
  const top = lg.height + 14;
  const bottom = 46;
  const missingH = spec.missing !== undefined && spec.missing.length > 0 ? 16 : 0;
  const H = H0 + missingH;
  const plotW = W - left - right;
  const plotH = H0 - top - bottom;
  const out: string[] = [open(id, W, H, spec.title, `scatter: x ${spec.xLabel}, y ${spec.yLabel}; lower is better on both; filled points are on the Pareto front`)];
  out.push(lg.svg);
  const pts = spec.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  const xlo = spec.xFromZero === true || xs.length === 0 ? 0 : Math.min(...xs);
  const ylo = spec.yFromZero === false && ys.length > 0 ? Math.min(...ys) : 0;
  const xt = niceTicks(xs.length > 0 ? xlo - (Math.max(...xs) - xlo) * 0.05 : 0, xs.length > 0 ? Math.max(...xs) * 1.05 : 1, 6);
  const yt = niceTicks(ylo, ys.length > 0 ? Math.max(...ys) * 1.08 : 1, 5);
  const x0 = xt[0]!;
  const x1 = xt[xt.length - 1]!;
  const y0 = yt[0]!;
  const y1 = yt[yt.length - 1]!;
  const sx = (v: number): number => left + ((v - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (v: number): number => top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
  for (const t of xt) {
    out.push(`<line x1="${n2(sx(t))}" x2="${n2(sx(t))}" y1="${top}" y2="${top + plotH}" stroke="${COLORS.faint}"/>`);
    out.push(`<text x="${n2(sx(t))}" y="${top + plotH + 15}" text-anchor="middle" class="tick">${esc(tickText(t))}</text>`);
  }
  for (const t of yt) {
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${n2(sy(t))}" y2="${n2(sy(t))}" stroke="${COLORS.faint}"/>`);
    out.push(`<text x="${left - 5}" y="${n2(sy(t) + 4)}" text-anchor="end" class="tick">${esc(tickText(t))}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="${COLORS.ink}"/>`);
  out.push(`<text x="${n2(left + plotW / 2)}" y="${top + plotH + 33}" text-anchor="middle" class="axis">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(14 ${n2(top + plotH / 2)}) rotate(-90)" text-anchor="middle" class="axis">${esc(spec.yLabel)}</text>`);
  // the 2-D front as a staircase (lower-left is better)
  const f2 = pts.filter((p) => spec.front2d.includes(p.label)).sort((a, b) => a.x - b.x || a.y - b.y);
  if (f2.length > 0) {
    let d = `M${n2(sx(f2[0]!.x))} ${n2(top)}V${n2(sy(f2[0]!.y))}`;
    for (let i = 1; i < f2.length; i++) d += `H${n2(sx(f2[i]!.x))}V${n2(sy(f2[i]!.y))}`;
    d += `H${n2(left + plotW)}`;
    out.push(`<path d="${d}" fill="none" stroke="${COLORS.blue}" stroke-width="1.2" stroke-dasharray="5 4"/>`);
  }
  // points, then labels placed so that they do not overlap each other or the points
  const placed: Box[] = pts.map((p) => ({ x: sx(p.x) - 5, y: sy(p.y) - 5, w: 10, h: 10 }));
  for (const p of pts) {
    const cx = sx(p.x);
    const cy = sy(p.y);
    const tip = p.tip ?? `${p.label}: ${spec.xLabel} ${p.x}, ${spec.yLabel} ${p.y}`;
    out.push(
      p.front
        ? `<circle cx="${n2(cx)}" cy="${n2(cy)}" r="5.5" fill="${COLORS.blue}" stroke="${COLORS.ink}" stroke-width="0.8"><title>${esc(tip)}</title></circle>`
        : `<circle cx="${n2(cx)}" cy="${n2(cy)}" r="4.5" fill="#ffffff" stroke="${COLORS.ink}" stroke-width="1.2"><title>${esc(tip)}</title></circle>`,
    );
  }
  for (const p of pts) {
    const cx = sx(p.x);
    const cy = sy(p.y);
    const w = textWidth(p.label) + (p.front ? 6 : 2);
    const h = 12;
    const candidates: Box[] = [
      { x: cx + 8, y: cy - 6, w, h },
      { x: cx - 8 - w, y: cy - 6, w, h },
      { x: cx - w / 2, y: cy - 20, w, h },
      { x: cx - w / 2, y: cy + 8, w, h },
      { x: cx + 8, y: cy - 18, w, h },
      { x: cx + 8, y: cy + 6, w, h },
      { x: cx - 8 - w, y: cy - 18, w, h },
      { x: cx - 8 - w, y: cy + 6, w, h },
    ];
    const inside = (b: Box) => b.x >= left + 1 && b.x + b.w <= left + plotW - 1 && b.y >= top + 1 && b.y + b.h <= top + plotH - 1;
    let box = candidates.find((b) => inside(b) && !placed.some((q) => overlaps(q, b)));
    for (let k = 1; box === undefined && k <= 12; k++) {
      box = [...candidates.map((b) => ({ ...b, y: b.y + 12 * k })), ...candidates.map((b) => ({ ...b, y: b.y - 12 * k }))].find((b) => inside(b) && !placed.some((q) => overlaps(q, b)));
    }
    box ??= candidates.find(inside) ?? candidates[0]!;
    placed.push(box);
    const far = Math.abs(box.y + 6 - cy) > 10 && (box.x > cx + 10 || box.x + box.w < cx - 10);
    if (far) out.push(`<line x1="${n2(cx)}" y1="${n2(cy)}" x2="${n2(box.x < cx ? box.x + box.w : box.x)}" y2="${n2(box.y + 6)}" stroke="${COLORS.grey}" stroke-width="0.6"/>`);
    out.push(`<text x="${n2(box.x + (p.front ? 1 : 0))}" y="${n2(box.y + 10)}"${p.front ? ' class="strong"' : ''}>${esc(p.label)}</text>`);
  }
  if (pts.length === 0) out.push(`<text x="${n2(left + plotW / 2)}" y="${n2(top + plotH / 2)}" text-anchor="middle" class="note">no tool has figures for both axes</text>`);
  if (missingH > 0) out.push(`<text x="${left}" y="${H0 + 8}" class="note">${esc(clip(`not placed (no figures): ${spec.missing!.join(', ')}`, W - left - 4))}</text>`);
  out.push('</svg>');
  return out.join('');
}
