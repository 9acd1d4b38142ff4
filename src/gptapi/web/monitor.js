// The live monitor view: polls GET /monitor/stats every second and GET /monitor/requests
// every two while the view is shown (and the tab visible), and draws what they return.
// Both count against the key's rate limits like any keyed call: polling stops at a refused
// key rather than spend the address's budget for requests without a valid one.

import { ApiError, callJson, describeError, formatBytes, formatNumber } from "./api.js";
import { TimePlot } from "./plot.js";

const STATS_EVERY_MS = 1000;
const REQUESTS_EVERY_MS = 2000;
const REQUEST_ROWS = 25;
// Tokens are counted when a request ends: a rate over a few seconds smooths the steps.
const RATE_WINDOW_S = 5;

const byId = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let plots = null;
let shown = false;
let generation = 0; // bumped to end the running poll loops
// "pid counter" -> recent {t, value} readings: with --workers N each poll reaches one process,
// whose counters are its own, so a rate compares readings of one process only.
const readings = new Map();
// Refusal reasons (src/gptapi/errors.py RefusalReason) in the three lines of the refusals plot.
const REFUSAL_GROUPS = {
  deadline: ["deadline"],
  "busy / limits": ["queue_full", "key_in_flight", "token_rate", "low_memory", "draining"],
  other: ["context_length", "kv_full", "engine_unavailable"],
};

function makePlots() {
  const count = (value) => formatNumber(value, 1);
  return {
    memory: new TimePlot(byId("plot-memory"), {
      series: ["RSS", "PSS", "anonymous", "file-backed"],
      format: formatBytes,
    }),
    slots: new TimePlot(byId("plot-slots"), { series: ["busy", "queued"], format: count }),
    tps: new TimePlot(byId("plot-tps"), { series: ["tokens/s"], format: count }),
    refusals: new TimePlot(byId("plot-refusals"), {
      series: Object.keys(REFUSAL_GROUPS),
      format: count,
    }),
    cache: new TimePlot(byId("plot-cache"), {
      series: ["held", "budget"],
      format: formatBytes,
    }),
  };
}

function showError(message) {
  const box = byId("monitor-error");
  box.textContent = message || "";
  box.hidden = !message;
}

// A counter's rise per second over the last RATE_WINDOW_S of this process's readings.
function perSecond(stats, name, value) {
  const now = stats.monotonic_s;
  const key = `${stats.pid} ${name}`;
  const kept = (readings.get(key) || []).filter((r) => r.t >= now - RATE_WINDOW_S);
  kept.push({ t: now, value });
  readings.set(key, kept);
  const first = kept[0];
  const rate = (value - first.value) / (now - first.t);
  return Number.isFinite(rate) && rate >= 0 ? rate : null; // one reading: no rate yet
}

function refusalRates(stats) {
  return Object.entries(REFUSAL_GROUPS).map(([group, reasons]) => {
    const total = reasons.reduce((sum, reason) => sum + (stats.refusals[reason] || 0), 0);
    return perSecond(stats, `refusals ${group}`, total);
  });
}

function setText(id, text) {
  byId(id).textContent = text;
}

function renderStats(stats) {
  const memory = stats.memory;
  const cache = stats.prompt_cache;
  const rate = perSecond(stats, "tokens", stats.completion_tokens_total);
  setText("stat-busy", stats.slots === null ? "–" : `${stats.busy_slots} / ${stats.slots}`);
  setText("stat-queued", formatNumber(stats.queued));
  setText("stat-tps", formatNumber(rate, 1));
  setText("stat-completion-tokens", formatNumber(stats.completion_tokens_total));
  setText("stat-rss", formatBytes(memory.rss_bytes));
  setText("stat-pss", formatBytes(memory.pss_bytes));
  setText("stat-anon", formatBytes(memory.rss_anon_bytes));
  setText("stat-file", formatBytes(memory.rss_file_bytes));
  setText("stat-headroom", formatBytes(memory.headroom_bytes));
  setText(
    "stat-cache",
    cache === null ? "–" : `${formatBytes(cache.bytes)} (${cache.entries} entries)`,
  );
  const t = performance.now() / 1000;
  plots.memory.push(t, [
    memory.rss_bytes, memory.pss_bytes, memory.rss_anon_bytes, memory.rss_file_bytes,
  ]);
  plots.slots.push(t, [stats.busy_slots, stats.queued]);
  plots.tps.push(t, [rate]);
  plots.refusals.push(t, refusalRates(stats));
  plots.cache.push(t, cache === null ? [null, null] : [cache.bytes, cache.budget_bytes]);

  const rows = Object.entries(stats.refusals).map(([reason, count]) =>
    row([reason, formatNumber(count)]),
  );
  byId("refusals").tBodies[0].replaceChildren(...rows);
  const model = stats.model === null ? "model loading" : `model ${stats.model}`;
  const at = new Date(stats.timestamp).toLocaleTimeString();
  setText("monitor-status", `process ${stats.pid} · ${model} · updated ${at}`);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell; // server strings are shown, never parsed as markup
    tr.append(td);
  }
  return tr;
}

function renderRequests(list) {
  const rows = list.requests.map((r) => {
    const end = r.memory_end || {};
    const change = r.memory_delta || {};
    const prompt = r.prompt_tokens === null ? "–" : `${r.prompt_tokens} (${r.cached_tokens ?? 0})`;
    return row([
      new Date(r.timestamp).toLocaleTimeString(),
      r.route,
      String(r.status),
      r.end_reason ?? "–",
      prompt,
      formatNumber(r.completion_tokens),
      formatNumber(r.queue_ms),
      formatNumber(r.ttft_ms),
      formatNumber(r.total_ms),
      formatNumber(r.tokens_per_s, 1),
      formatBytes(end.rss_bytes),
      formatBytes(end.pss_bytes),
      formatBytes(change.rss_anon_bytes),
      formatBytes(change.rss_file_bytes),
    ]);
  });
  byId("recent-requests").tBodies[0].replaceChildren(...rows);
}

// One poll; false when the key was refused (or there is none): polling stops until a key is
// accepted (playground.js restarts it).
async function poll(path, render) {
  try {
    const { data } = await callJson(path);
    render(data);
    showError(null);
    return true;
  } catch (error) {
    showError(describeError(error));
    return !(error instanceof ApiError && (error.status === 401 || error.status === 0));
  }
}

async function loop(mine, path, render, everyMs) {
  while (mine === generation) {
    if (!document.hidden && !(await poll(path, render))) {
      return;
    }
    await sleep(everyMs);
  }
}

function start() {
  generation += 1;
  const mine = generation;
  loop(mine, "/monitor/stats", renderStats, STATS_EVERY_MS);
  loop(mine, `/monitor/requests?limit=${REQUEST_ROWS}`, renderRequests, REQUESTS_EVERY_MS);
}

// The view was shown (start polling, draw the plots at their size now) or hidden (stop).
export function showMonitor(visible) {
  if (plots === null) {
    plots = makePlots();
    window.addEventListener("resize", () => Object.values(plots).forEach((p) => p.draw()));
  }
  shown = visible;
  if (visible) {
    Object.values(plots).forEach((p) => p.draw());
    start();
  } else {
    generation += 1;
  }
}

// A key was saved or forgotten: poll again with it.
export function keyChanged() {
  if (shown) {
    start();
  }
}
