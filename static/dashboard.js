// The dashboard: each <figure class="chart"> holds a table of numbers (what screen readers and browsers without
// JavaScript get); this script draws it with Chart.js (static/vendor/chartjs, loaded before it as window.Chart),
// in the colors of the page's scheme (CSS variables, redrawn when the system scheme changes), then folds the table.
import { localizeTimes } from "./history.js";

const PALETTE = 8;
const scheme = matchMedia("(prefers-color-scheme: dark)");
const charts = [];

/** The page's colors, read from its CSS variables (style.css, dashboard.css). */
function colors() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    text: read("--fg"),
    muted: read("--muted"),
    grid: read("--chart-grid"),
    card: read("--card"),
    series: Array.from({ length: PALETTE }, (_, index) => read(`--chart-${index + 1}`)),
  };
}

/** How to label bucket times, as short as they stay unambiguous: days alone for whole days, times alone within
    one local day, both otherwise. */
function timeFormat(times) {
  const moments = times.map((iso) => new Date(iso));
  const midnight = (moment) => moment.getHours() === 0 && moment.getMinutes() === 0;
  if (moments.length > 1 && moments.every(midnight)) return { day: "numeric", month: "short" };
  const day = (moment) => moment.toDateString();
  if (moments.every((moment) => day(moment) === day(moments[0]))) return { hour: "2-digit", minute: "2-digit" };
  return { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
}

/** Labels, series and how to draw them, from a chart's table. */
function readTable(table) {
  const heads = [...table.querySelectorAll("thead th")].slice(1).map((th) => th.textContent.trim());
  const drawn = table.dataset.drawn === undefined ? heads.length : Number(table.dataset.drawn);
  const rows = [...table.querySelectorAll("tbody tr")];
  const times = rows.map((row) => row.querySelector("th time")?.getAttribute("datetime"));
  const format = times.every(Boolean) ? timeFormat(times) : null;
  const labels = rows.map((row, index) => (format ? new Date(times[index]).toLocaleString(undefined, format) : row.querySelector("th").textContent.trim()));
  const series = heads.slice(0, drawn).map((name, column) => ({
    name,
    values: rows.map((row) => {
      const cell = row.querySelectorAll("td")[column];
      return cell && cell.dataset.value !== undefined ? Number(cell.dataset.value) : null;
    }),
  }));
  return { labels, series, kind: table.dataset.kind, unit: table.dataset.unit || "", stacked: "stacked" in table.dataset, horizontal: "horizontal" in table.dataset };
}

function formatValue(value, unit) {
  if (value === null || value === undefined) return "–";
  const number = Number(value).toLocaleString(undefined, { maximumFractionDigits: unit === "" ? 0 : 2 });
  return unit === "%" ? `${number}%` : unit ? `${number} ${unit}` : number;
}

/** The Chart.js configuration of one table, in the current scheme's colors. */
function config(data, palette) {
  const line = data.kind === "line";
  const datasets = data.series.map((item, index) => {
    const color = palette.series[index % PALETTE];
    return {
      label: item.name,
      data: item.values,
      backgroundColor: color,
      borderColor: color,
      borderWidth: line ? 2 : 0,
      pointRadius: line && data.labels.length <= 48 ? 2 : 0,
      spanGaps: false,
    };
  });
  const value = data.horizontal ? "x" : "y";
  const category = data.horizontal ? "y" : "x";
  const axis = (stacked) => ({ stacked, grid: { color: palette.grid }, border: { color: palette.grid }, ticks: { color: palette.muted } });
  return {
    type: line ? "line" : "bar",
    data: { labels: data.labels, datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      indexAxis: category,
      interaction: { mode: "index", intersect: false },
      scales: {
        [category]: { ...axis(data.stacked), ticks: { color: palette.muted, autoSkip: true, autoSkipPadding: 16, maxRotation: 0 } },
        [value]: {
          ...axis(data.stacked),
          beginAtZero: true,
          ticks: { color: palette.muted, callback: (tick) => formatValue(tick, data.unit) },
        },
      },
      plugins: {
        legend: { display: datasets.length > 1, labels: { color: palette.text, boxWidth: 12 } },
        tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${formatValue(item.raw, data.unit)}` } },
      },
    },
  };
}

function draw() {
  const palette = colors();
  for (const figure of document.querySelectorAll("figure.chart")) {
    const canvas = figure.querySelector("canvas");
    const table = figure.querySelector("table.chart-data");
    if (!canvas || !table) continue;
    charts.push(new window.Chart(canvas, config(readTable(table), palette)));
    figure.querySelector("details.chart-numbers")?.removeAttribute("open");
  }
}

/** The system scheme changed: the same charts in the other scheme's colors. */
function recolor() {
  const palette = colors();
  for (const chart of charts) {
    const fresh = config({ ...readTable(chart.canvas.closest("figure").querySelector("table.chart-data")) }, palette);
    chart.options = fresh.options;
    chart.data.datasets.forEach((dataset, index) => Object.assign(dataset, { backgroundColor: fresh.data.datasets[index].backgroundColor, borderColor: fresh.data.datasets[index].borderColor }));
    chart.update();
  }
}

localizeTimes(document);
const tz = document.getElementById("tz");
if (tz) tz.value = String(-new Date().getTimezoneOffset());
if (window.Chart) {
  draw();
  scheme.addEventListener("change", recolor);
}
document.documentElement.dataset.ready = "true";
