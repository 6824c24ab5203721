// chart.js — the gateway's last hour as an inline SVG: jobs finished per minute stacked by outcome, and under it
// the wait in line of the jobs that got a worker in that minute (average as bars, the longest as a line).

const OUTCOMES = [
  ["completed", "completed"],
  ["failed", "failed"],
  ["cancelled", "cancelled"],
  ["workerLost", "worker lost"],
  ["queueTimeout", "timed out in line"],
];

const CHART = { width: 640, left: 44, right: 8, barsTop: 16, barsHeight: 120, waitTop: 180, waitHeight: 56 };

// 1, 2, 5, 10, 20, 50 …: the smallest at or above n.
function niceCeiling(n) {
  let step = 1;
  for (;;) {
    for (const m of [1, 2, 5]) if (step * m >= n) return step * m;
    step *= 10;
  }
}

function clockLabel(ms) {
  const d = new Date(ms);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

function columnAt(column, i) {
  return Array.isArray(column) && typeof column[i] === "number" ? column[i] : 0;
}

function drawChart(history) {
  const box = $("chart");
  const n = Number(history && history.minutes) || 0;
  const from = parseTime(history && history.from);
  if (!n || from === null) return;
  const finished = history.finished || {};
  const c = CHART;
  const step = (c.width - c.left - c.right) / n;
  const totals = Array.from({ length: n }, (_, i) => OUTCOMES.reduce((sum, [key]) => sum + columnAt(finished[key], i), 0));
  const waitsMax = Array.from({ length: n }, (_, i) => (Array.isArray(history.waitMsMax) ? history.waitMsMax[i] : null));
  const waitsAvg = Array.from({ length: n }, (_, i) => (Array.isArray(history.waitMsAvg) ? history.waitMsAvg[i] : null));
  const countTop = niceCeiling(Math.max(1, ...totals));
  const waitTop = niceCeiling(Math.max(1000, ...waitsMax.filter((w) => typeof w === "number")) / 1000) * 1000;
  const root = svg("svg", { viewBox: "0 0 " + c.width + " " + (c.waitTop + c.waitHeight + 6), role: "img", class: "chart-svg" });
  root.append(svg("title"));
  root.firstChild.textContent = "Jobs finished per minute and wait in line, last hour";

  const axis = (top, height, label, topText) => {
    root.append(svg("line", { x1: c.left, x2: c.width - c.right, y1: top + height, y2: top + height, class: "axis" }));
    root.append(svg("line", { x1: c.left, x2: c.width - c.right, y1: top, y2: top, class: "grid" }));
    root.append(svg("line", { x1: c.left, x2: c.width - c.right, y1: top + height / 2, y2: top + height / 2, class: "grid" }));
    const t = svg("text", { x: c.left - 5, y: top + 4, class: "tick end" });
    t.textContent = topText;
    const z = svg("text", { x: c.left - 5, y: top + height, class: "tick end" });
    z.textContent = "0";
    const l = svg("text", { x: c.left, y: top - 5, class: "panel-label" });
    l.textContent = label;
    root.append(t, z, l);
  };
  axis(c.barsTop, c.barsHeight, "jobs per minute", String(countTop));
  axis(c.waitTop, c.waitHeight, "wait in line (bars: average, line: longest)", formatDuration(waitTop));

  for (let i = 0; i < n; i++) {
    const x = c.left + i * step + 0.5;
    const when = clockLabel(from + i * 60000);
    let y = c.barsTop + c.barsHeight;
    const parts = [];
    for (const [key, name] of OUTCOMES) {
      const count = columnAt(finished[key], i);
      if (!count) continue;
      const h = (count / countTop) * c.barsHeight;
      y -= h;
      root.append(svg("rect", { x, y, width: Math.max(1, step - 1.5), height: h, class: "o-" + key }));
      parts.push(count + " " + name);
    }
    // One hover target per minute, over both panels, saying what it holds.
    const hover = svg("rect", { x: c.left + i * step, y: c.barsTop, width: step, height: c.waitTop + c.waitHeight - c.barsTop, class: "hover" });
    const title = svg("title");
    let text = when + " — " + (parts.length ? parts.join(", ") : "no job finished");
    if (typeof waitsAvg[i] === "number") text += "; waited " + formatDuration(waitsAvg[i]) + " on average, " + formatDuration(waitsMax[i]) + " at most";
    title.textContent = text;
    hover.append(title);
    if (typeof waitsAvg[i] === "number" && waitsAvg[i] > 0) {
      const h = Math.min(1, waitsAvg[i] / waitTop) * c.waitHeight;
      root.append(svg("rect", { x, y: c.waitTop + c.waitHeight - h, width: Math.max(1, step - 1.5), height: h, class: "wait-avg" }));
    }
    root.append(hover);
  }

  let path = "";
  let open = false;
  for (let i = 0; i < n; i++) {
    if (typeof waitsMax[i] !== "number") {
      open = false;
      continue;
    }
    const x = c.left + (i + 0.5) * step;
    const y = c.waitTop + c.waitHeight - Math.min(1, waitsMax[i] / waitTop) * c.waitHeight;
    path += (open ? " L" : " M") + x.toFixed(1) + " " + y.toFixed(1);
    open = true;
    // A dot too, or a minute alone between empty ones would not show at all.
    root.append(svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 1.8, class: "wait-max-dot" }));
  }
  if (path) root.append(svg("path", { d: path.trim(), class: "wait-max" }));

  for (const back of [60, 45, 30, 15, 0]) {
    const i = n - back;
    const x = c.left + Math.min(n, Math.max(0, i)) * step;
    const t = svg("text", { x, y: c.barsTop + c.barsHeight + 14, class: back === 60 ? "tick" : back === 0 ? "tick end" : "tick middle" });
    t.textContent = back === 0 ? "now" : "−" + back + " min";
    root.append(t);
  }
  if (!totals.some((t) => t > 0)) {
    const t = svg("text", { x: c.left + (c.width - c.left - c.right) / 2, y: c.barsTop + c.barsHeight / 2, class: "empty-note middle" });
    t.textContent = "No job finished in the last hour";
    root.append(t);
  }
  box.replaceChildren(root);
}

function drawLegend() {
  const legend = $("legend");
  for (const [key, name] of OUTCOMES) {
    const item = el("span", "legend-item");
    item.append(el("span", "swatch o-" + key), el("span", "", name));
    legend.append(item);
  }
  const wait = el("span", "legend-item");
  wait.append(el("span", "swatch wait-avg"), el("span", "", "average wait"));
  const longest = el("span", "legend-item");
  longest.append(el("span", "swatch wait-max"), el("span", "", "longest wait"));
  legend.append(wait, longest);
}
