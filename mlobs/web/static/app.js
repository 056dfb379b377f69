// mlobs admin views: draws the charts whose data a page embeds as JSON (no inline
// script: the Content-Security-Policy is default-src 'self').
"use strict";

function drawDurationChart() {
  const target = document.getElementById("duration-chart");
  const source = document.getElementById("duration-data");
  if (!target || !source || typeof uPlot === "undefined") return;
  const data = JSON.parse(source.textContent);
  const names = Object.keys(data.series);
  const palette = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f"];
  const series = [{}].concat(names.map((name, i) => ({
    label: name, stroke: palette[Math.floor(i / 3) % palette.length],
    dash: name.startsWith("p50") ? [4, 4] : name.startsWith("p99") ? [1, 3] : undefined,
    width: 1.5, value: (u, v) => (v == null ? "–" : v.toFixed(1) + " ms"),
  })));
  const columns = [data.x].concat(names.map((name) => data.series[name]));
  new uPlot({
    width: Math.max(target.clientWidth, 400), height: 320, series: series,
    axes: [{}, { label: "duration (ms)" }],
    // one bucket only (a fresh warehouse): half an hour either side, not uPlot's years
    scales: { x: { time: true, range: (u, min, max) =>
      (min === max ? [min - 1800, max + 1800] : [min, max]) } },
  }, columns, target);
  target.dataset.drawn = "true";
}

function drawEcdfChart() {
  const target = document.getElementById("ecdf-chart");
  const source = document.getElementById("ecdf-data");
  if (!target || !source || typeof uPlot === "undefined") return;
  const data = JSON.parse(source.textContent);
  const colours = { baseline: "#1565c0", current: "#c62828" };
  const names = Object.keys(data.series);
  new uPlot({
    width: Math.max(target.clientWidth, 400), height: 300,
    series: [{ label: target.dataset.metric }].concat(names.map((name) => ({
      label: name, stroke: colours[name] || "#555", width: 1.5,
      paths: uPlot.paths.stepped({ align: 1 }),
    }))),
    axes: [{ label: target.dataset.metric }, { label: "share of invocations ≤ x" }],
    scales: { x: { time: false }, y: { range: [0, 1] } },
  }, [data.x].concat(names.map((name) => data.series[name])), target);
  target.dataset.drawn = "true";
}

document.addEventListener("DOMContentLoaded", drawDurationChart);
document.addEventListener("DOMContentLoaded", drawEcdfChart);
