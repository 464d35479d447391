// Small SVG charts: lines for series over days, horizontal bars for per-server figures.
// Series differ by dash pattern and marker shape as well as colour, and every chart
// carries its figures as a table too, so nothing depends on seeing colours.
import { h, table } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
let counter = 0;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// The axis top: four grid steps of 1, 2 or 5 times a power of ten, so labels stay round.
function niceMax(v) {
  const raw = Math.max(1, v / 4);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return 4 * raw;
}

function marker(i, x, y) {
  const cls = `s${i % 3}`;
  if (i % 3 === 0) return s("circle", { cx: x, cy: y, r: 3, class: cls });
  if (i % 3 === 1) return s("rect", { x: x - 3, y: y - 3, width: 6, height: 6, class: cls });
  return s("polygon", { points: `${x},${y - 4} ${x + 4},${y + 3} ${x - 4},${y + 3}`, class: cls });
}

function legend(series) {
  return h("div", { class: "legend" }, series.map((se, i) => {
    const svg = s("svg", { width: 34, height: 12, "aria-hidden": "true", class: "chart-key" },
      s("line", { x1: 1, y1: 6, x2: 33, y2: 6, class: `s${i % 3} dash${i % 3}`, "stroke-width": 2 }),
      marker(i, 17, 6));
    return h("span", {}, svg, " ", se.name);
  }));
}

export function lineChart(title, labels, series, id) {
  const W = 560, H = 220, L = 40, R = 24, T = 10, B = 30;
  const max = niceMax(Math.max(1, ...series.flatMap((se) => se.values)));
  const n = labels.length;
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const tid = `chart-${++counter}`;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": tid },
    s("title", { id: tid }, title));
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.appendChild(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(s("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, Number.isInteger(v) ? v : v.toFixed(1)));
  }
  svg.appendChild(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  const step = Math.max(1, Math.ceil(n / 6));
  labels.forEach((lab, i) => {
    if (i % step === 0 || i === n - 1) {
      svg.appendChild(s("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, lab.slice(5)));
    }
  });
  series.forEach((se, i) => {
    const pts = se.values.map((v, j) => `${x(j)},${y(v)}`).join(" ");
    svg.appendChild(s("polyline", { points: pts, class: `line s${i % 3} dash${i % 3}` }));
    se.values.forEach((v, j) => {
      const m = marker(i, x(j), y(v));
      m.appendChild(s("title", {}, `${se.name}, ${labels[j]}: ${v}`));
      svg.appendChild(m);
    });
  });
  const total = series.reduce((a, se) => a + se.values.reduce((b, v) => b + v, 0), 0);
  return h("figure", { id, dataset: { total: String(total) } },
    h("figcaption", {}, title),
    svg,
    series.length > 1 ? legend(series) : null,
    h("details", {}, h("summary", {}, "Figures"),
      table([{ title: "Day", cell: (r) => r.day }, ...series.map((se) => ({ title: se.name, cell: (r) => r[se.name] }))],
        labels.map((day, j) => Object.fromEntries([["day", day], ...series.map((se) => [se.name, se.values[j]])])))));
}

export function barChart(title, items, unit, id) {
  const W = 560, rowH = 26, L = 170, R = 110, T = 6;
  const H = T * 2 + Math.max(1, items.length) * rowH;
  const max = niceMax(Math.max(1, ...items.map((it) => it.value)));
  const tid = `chart-${++counter}`;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": tid },
    s("title", { id: tid }, title));
  if (!items.length) {
    svg.appendChild(s("text", { x: 10, y: T + 16 }, "No data yet"));
  }
  items.forEach((it, i) => {
    const yy = T + i * rowH;
    const w = ((W - L - R) * it.value) / max;
    const label = it.label.length > 26 ? `${it.label.slice(0, 25)}…` : it.label;
    svg.appendChild(s("text", { x: L - 6, y: yy + rowH / 2 + 4, "text-anchor": "end" }, label));
    svg.appendChild(s("rect", { x: L, y: yy + 4, width: Math.max(w, 1), height: rowH - 8, class: "bar s0" },
      s("title", {}, `${it.label}: ${it.value} ${unit}`)));
    svg.appendChild(s("text", { x: L + w + 4, y: yy + rowH / 2 + 4 }, `${it.value} ${unit}`));
  });
  const total = items.reduce((a, it) => a + it.value, 0);
  return h("figure", { id, dataset: { total: String(total) } },
    h("figcaption", {}, title), svg,
    h("details", {}, h("summary", {}, "Figures"),
      table([{ title: "Server", cell: (r) => r.label }, { title: unit, cell: (r) => r.value }], items)));
}
