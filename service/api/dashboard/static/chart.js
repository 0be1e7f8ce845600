// A line chart drawn as SVG: up to two series against the training step, redrawn as points arrive.

const NS = "http://www.w3.org/2000/svg";
const W = 560, H = 260, L = 52, R = 12, T = 28, B = 30;

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function ticks(lo, hi, n) {
  if (hi === lo) return [lo];
  const step = (hi - lo) / n;
  return Array.from({ length: n + 1 }, (_, i) => lo + i * step);
}

function label(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 10000) ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
}

// series: [{name, label, points: [[step, value], …]}]; returns the <svg>.
export function lineChart(title, series) {
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.dataset.chart = title;
  const all = series.flatMap((x) => x.points);
  svg.append(s("text", { x: L, y: 16 }, title));
  series.forEach((x, i) => svg.append(s("text", { x: W - R - 170 + i * 90, y: 16, class: `legend${i}` }, `— ${x.label || x.name}`)));
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(0, ...xs), x1 = Math.max(1, ...xs);
  let y0 = all.length ? Math.min(...ys) : 0, y1 = all.length ? Math.max(...ys) : 1;
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const py = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  for (const v of ticks(y0, y1, 4)) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: py(v), y2: py(v) }));
    svg.append(s("text", { x: 4, y: py(v) + 4 }, label(v)));
  }
  for (const v of ticks(x0, x1, 5)) svg.append(s("text", { x: px(v) - 8, y: H - 10 }, Math.round(v)));
  svg.append(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  series.forEach((x, i) => {
    const g = s("g", { "data-series": x.name, "data-points": x.points.length });
    const pts = [...x.points].sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) g.append(s("polyline", { class: `s${i}`, points: pts.map((p) => `${px(p[0])},${py(p[1])}`).join(" ") }));
    // Few points (validation, once per epoch): mark each one.
    if (pts.length <= 40) for (const p of pts) g.append(s("circle", { class: `s${i}`, cx: px(p[0]), cy: py(p[1]), r: 2.5 }));
    svg.append(g);
  });
  if (!all.length) svg.append(s("text", { x: W / 2 - 40, y: H / 2 }, "no points yet"));
  return svg;
}
