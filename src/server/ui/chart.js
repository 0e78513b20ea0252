// chart.js: the dashboard's charts as inline SVG, drawn here in ~100 lines.
// Why not a charting library: the dashboard draws a handful of line and bar charts; a library
// (Chart.js ~200 KB, uPlot ~45 KB, D3's modules ~100 KB) would be most of the page's weight, would
// have to be vendored (no CDN: nothing is fetched from the internet at run time) and kept up to
// date, and renders to <canvas>, which screen readers and tests cannot read. Here every point is
// an SVG element with its value in data-* attributes and a <title> (hover text, read aloud), and
// the chart has role="img" and an aria-label that says what it shows.

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** 3 ticks from 0 to max, with their labels */
function ticks(max, fmt) {
  return [0, max / 2, max].map((v) => ({ v, label: fmt(v) }));
}

/**
 * A chart of points over time.
 * points: [{ t: ms, y: number, title: string, data: {KEY: value} }] in time order
 * opts: { kind: 'line'|'bar', label: string (aria-label), yLabel, fmt(y) -> text, width, height, cls }
 */
export function timeChart(points, opts) {
  const W = opts.width ?? 640;
  const H = opts.height ?? 220;
  const m = { l: 80, r: 24, t: 28, b: 40 };
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.label, class: `chart ${opts.cls ?? ''}`, 'data-points': points.length });
  svg.appendChild(el('title', {}, opts.label));
  const fmt = opts.fmt ?? ((v) => String(Math.round(v)));
  if (points.length === 0) {
    svg.appendChild(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'no data yet'));
    return svg;
  }
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const span = Math.max(1, t1 - t0);
  const ymax = Math.max(...points.map((p) => p.y)) || 1;
  // bars keep half a bar's width inside the plot at both ends
  const pad = opts.kind === 'bar' ? 14 : 0;
  const x = (t) => (points.length === 1 ? m.l + (W - m.l - m.r) / 2 : m.l + pad + ((t - t0) / span) * (W - m.l - m.r - 2 * pad));
  const y = (v) => H - m.b - (v / ymax) * (H - m.t - m.b);
  // axes and grid
  const axes = el('g', { class: 'axes', 'aria-hidden': 'true' });
  for (const tk of ticks(ymax, fmt)) {
    axes.appendChild(el('line', { x1: m.l, x2: W - m.r, y1: y(tk.v), y2: y(tk.v), class: 'grid' }));
    axes.appendChild(el('text', { x: m.l - 6, y: y(tk.v) + 4, 'text-anchor': 'end' }, tk.label));
  }
  const day = (t) => new Date(t).toISOString().slice(5, 16).replace('T', ' ');
  axes.appendChild(el('text', { x: m.l, y: H - 12, 'text-anchor': 'start' }, day(t0)));
  if (points.length > 1) axes.appendChild(el('text', { x: W - m.r, y: H - 12, 'text-anchor': 'end' }, day(t1)));
  if (opts.yLabel) axes.appendChild(el('text', { x: 4, y: 12, class: 'ylabel' }, opts.yLabel));
  svg.appendChild(axes);
  const g = el('g', { class: 'series' });
  if (opts.kind === 'bar') {
    const bw = Math.max(2, Math.min(2 * pad, (W - m.l - m.r) / points.length - 2));
    for (const p of points) {
      const r = el('rect', { x: x(p.t) - bw / 2, y: y(p.y), width: bw, height: Math.max(0, H - m.b - y(p.y)), class: 'point bar', ...dataAttrs(p.data) });
      r.appendChild(el('title', {}, p.title));
      g.appendChild(r);
    }
  } else {
    g.appendChild(el('polyline', { points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`).join(' '), class: 'line', 'aria-hidden': 'true' }));
    for (const p of points) {
      const c = el('circle', { cx: x(p.t).toFixed(1), cy: y(p.y).toFixed(1), r: 4, class: 'point', ...dataAttrs(p.data) });
      c.appendChild(el('title', {}, p.title));
      g.appendChild(c);
    }
  }
  svg.appendChild(g);
  return svg;
}

function dataAttrs(d = {}) {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [`data-${k}`, v]));
}
