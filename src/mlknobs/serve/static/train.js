// mlknobs serve: the training panel. Settings come from GET /api/train/settings (mlknobs.config,
// with the server's limits), Start posts them to /api/train, and the run is followed through the
// Server-Sent Events of /api/train/events: the state so far first, then one record per event
// (start, step, epoch, snapshot, end). Everything is written with textContent or drawn on canvases.
"use strict";

(() => {
  const { element, percent, weightTile, grayTile } = window.mlknobs;
  const $ = (id) => document.getElementById(id);
  const MAX_POINTS = 2000;       // as the server: beyond, neighbouring points are averaged in pairs
  const TERMINAL = new Set(["done", "stopped", "failed"]);
  const JSON_HEADERS = { "Content-Type": "application/json" };

  const panel = $("train-panel");
  const form = $("train-form");
  const startButton = $("train-start");
  const stopButton = $("train-stop");
  const statusLine = $("train-status");
  const nextLine = $("train-next");
  const errorLine = $("train-error");
  const chart = $("train-chart");
  const table = $("train-epochs");
  const historyBody = table.tBodies[0];
  const tilesTitle = $("train-tiles-title");
  const tiles = $("train-tiles");
  const digits = $("train-digits");

  let fields = [];               // {entry, input}: one per setting shown
  let source = null;             // the EventSource of the run being followed
  let view = fresh();            // what the panel shows of that run
  let drawScheduled = false;

  function fresh() {
    return { run: null, status: "idle", phase: "", stopping: false, message: "", hint: null, resume: null,
             model: null, test_accuracy: null, seconds: null, epochs: 0, batches: 0, total: 0,
             steps: [], losses: [], stride: 1, pending: [], progress: null, history: [], snapshot: null,
             class_names: null, settings: null };
  }

  // --- the settings form ------------------------------------------------------------------------

  // The fields' data-testid hooks are a public interface (browser tests, scripts): the setting's name
  // with dashes (train-hidden-size, train-epochs), the learning rate as train-lr, whatever flags
  // the server was given.
  const SHORT_IDS = { learning_rate: "lr" };
  function testId(entry) {
    return `train-${SHORT_IDS[entry.name] || entry.name.replace(/_/g, "-")}`;
  }

  function rangeHint(entry) {
    if (entry.kind === "choice" || entry.kind === "boolean") return "";
    const show = (n) => (typeof n === "number" ? n.toLocaleString("en") : "");
    if (entry.min !== null && entry.max !== null && entry.max < 1e9) return `${show(entry.min)} – ${show(entry.max)}${entry.max_open ? " (excl.)" : ""}`;
    if (entry.min !== null) return `${entry.min_open ? ">" : "≥"} ${show(entry.min)}`;
    return "";
  }

  function field(entry) {
    const label = element("label", "field");
    const words = element("span", "words");
    words.append(element("span", "name", entry.name.replace(/_/g, " ")));
    if (entry.flag) words.append(" ", element("code", "flag", entry.flag));
    let input;
    if (entry.kind === "choice") {
      input = element("select");
      for (const choice of entry.choices) input.append(new Option(choice, choice, false, choice === entry.default));
    } else if (entry.kind === "boolean") {
      input = element("input");
      input.type = "checkbox";
      input.checked = entry.default;
      label.classList.add("check");
    } else {
      input = element("input");
      input.type = "number";
      input.step = entry.kind === "integer" ? "1" : "any";
      if (entry.min !== null && !entry.min_open) input.min = entry.min;
      if (entry.max !== null && !entry.max_open) input.max = entry.max;
      input.value = entry.default;
      input.inputMode = entry.kind === "integer" ? "numeric" : "decimal";
    }
    input.name = entry.name;
    input.dataset.testid = testId(entry);
    label.title = [entry.help, entry.limits ? `Allowed: ${entry.limits}.` : "",
                   entry.server_limit ? "This page trains at most that (it bounds the server's memory)." : ""]
      .filter(Boolean).join(" ");
    const hint = rangeHint(entry);
    label.append(words, input);
    if (hint) label.append(element("span", "range", hint));
    fields.push({ entry, input });
    return label;
  }

  function value({ entry, input }) {
    if (entry.kind === "boolean") return input.checked;
    if (entry.kind === "choice") return input.value;
    return input.value.trim() === "" ? null : Number(input.value);   // the server says what is wrong
  }

  // Only what differs from the defaults is sent, as a command line would: `augment` then fills in
  // the distortions that were not given, exactly as `train --augment` does.
  function settingsToSend() {
    const body = {};
    for (const f of fields) {
      const v = value(f);
      if (v !== f.entry.default) body[f.entry.name] = v;
    }
    return body;
  }

  function markInvalid(names) {
    for (const { entry, input } of fields) {
      const bad = names.includes(entry.name);
      input.setAttribute("aria-invalid", bad ? "true" : "false");
      if (bad && !input.closest("#train-primary")) input.closest("details").open = true;
    }
  }

  async function loadSettings() {
    const response = await fetch("/api/train/settings");
    if (!response.ok) return false;                       // a server without the panel
    const described = await response.json();
    const primary = $("train-primary"), more = $("train-more");
    for (const entry of [...described.settings, described.augment]) {
      (entry.primary ? primary : more).append(field(entry));
    }
    panel.hidden = false;
    $("train-jump").hidden = false;
    return true;
  }

  // --- starting, stopping, following -------------------------------------------------------------

  async function post(path, body) {
    try {
      const response = await fetch(path, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
      return { status: response.status, answer: await response.json() };
    } catch (error) {
      return { status: 0, answer: { error: `no answer from the server (${error.message}): is mlknobs serve still running?` } };
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorLine.textContent = "";
    markInvalid([]);
    startButton.disabled = true;
    const { status, answer } = await post("/api/train", settingsToSend());
    if (status === 202) {
      follow();
    } else {
      errorLine.textContent = answer.error || `the server answered ${status}`;
      if (answer.settings) markInvalid(answer.settings);
      if (status === 409) follow();                       // someone else's run: watch it
      else startButton.disabled = false;
    }
  });

  stopButton.addEventListener("click", async () => {
    stopButton.disabled = true;
    const { status, answer } = await post("/api/train/stop", {});
    if (status === 202) {
      view.stopping = true;
      schedule();
    } else {
      errorLine.textContent = answer.error || `the server answered ${status}`;
    }
  });

  function follow() {
    if (source) source.close();
    view = fresh();
    historyBody.replaceChildren();
    showTable();
    startButton.disabled = true;
    stopButton.disabled = false;
    source = new EventSource("/api/train/events");
    source.onmessage = (event) => handle(JSON.parse(event.data));
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) showNoServer();
      // Otherwise the browser reconnects by itself, and the server starts again with its state.
    };
    schedule();
  }

  function showNoServer() {
    errorLine.textContent = "lost the connection to the server: is mlknobs serve still running?";
    startButton.disabled = false;
    stopButton.disabled = true;
  }

  function handle(record) {
    switch (record.event) {
      case "state": adopt(record); break;
      case "start":
        Object.assign(view, { phase: "training", epochs: record.epochs, batches: record.batches, total: record.steps });
        break;
      case "step":
        addPoint(record.step, record.loss);
        view.progress = record;
        break;
      case "epoch":
        view.history.push(record);
        appendEpoch(record);
        if (record.epoch === view.epochs) view.phase = "testing and saving";
        break;
      case "snapshot":
        view.snapshot = record;
        view.snapshotDirty = true;
        break;
      case "end":
        Object.assign(view, { status: record.status, message: record.message, hint: record.hint || null,
                              resume: record.resume || null, model: record.model || null,
                              test_accuracy: record.test_accuracy ?? null, seconds: record.seconds, phase: "" });
        finish();
        break;
      default:
        break;
    }
    schedule();
  }

  // The whole state: on connecting, on reconnecting, and when this page fell behind the run.
  function adopt(state) {
    const keep = { run: state.run, status: state.status, phase: state.phase, stopping: state.stopping,
                   message: state.message, hint: state.hint, resume: state.resume, model: state.model,
                   test_accuracy: state.test_accuracy, seconds: state.seconds, epochs: state.epochs,
                   batches: state.batches, total: state.steps, progress: state.progress,
                   history: state.history || [], snapshot: state.snapshot, class_names: state.class_names,
                   settings: state.settings };
    view = { ...fresh(), ...keep, snapshotDirty: true };
    if (state.curve) {
      view.steps = state.curve.steps.slice();
      view.losses = state.curve.losses.slice();
      view.stride = state.curve.stride;
    }
    historyBody.replaceChildren();
    view.history.forEach(appendEpoch);
    showTable();
    if (state.run === null) {                             // no run yet
      if (source) source.close();
      source = null;
      startButton.disabled = false;
      stopButton.disabled = true;
    } else if (TERMINAL.has(state.status)) {
      finish();
    }
  }

  function finish() {
    if (source) source.close();
    source = null;
    startButton.disabled = false;
    stopButton.disabled = true;
    if (view.status === "done" && window.mlknobs.modelChanged) window.mlknobs.modelChanged();
  }

  // The loss curve, averaged in pairs past MAX_POINTS as the server does.
  function addPoint(step, loss) {
    view.pending.push([step, loss]);
    if (view.pending.length < view.stride) return;
    const finite = view.pending.map(([, l]) => l).filter((l) => l !== null);
    view.steps.push(step);
    view.losses.push(finite.length === view.pending.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null);
    view.pending = [];
    if (view.steps.length >= MAX_POINTS) {
      view.steps = view.steps.filter((_, i) => i % 2 === 1);
      const merged = [];
      for (let i = 0; i + 1 < view.losses.length; i += 2) {
        const a = view.losses[i], b = view.losses[i + 1];
        merged.push(a === null || b === null ? null : (a + b) / 2);
      }
      view.losses = merged;
      view.stride *= 2;
    }
  }

  // --- showing -----------------------------------------------------------------------------------

  function schedule() {
    if (drawScheduled) return;
    drawScheduled = true;
    requestAnimationFrame(() => {
      drawScheduled = false;
      showStatus();
      drawChart();
      if (view.snapshotDirty) {
        view.snapshotDirty = false;
        drawSnapshot(view.snapshot);
      }
    });
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function statusText() {
    const v = view;
    if (v.status === "running") {
      if (v.stopping) return "running: stopping at the next step…";
      if (v.phase !== "training" || !v.progress) return `running: ${v.phase || "starting"}…`;
      const p = v.progress;
      const parts = [`running: epoch ${p.epoch} of ${v.epochs}, batch ${p.batch} of ${v.batches}`];
      if (p.loss !== null) parts.push(`loss ${p.loss.toFixed(3)}`);
      if (p.steps_per_second) parts.push(`${Math.round(p.steps_per_second).toLocaleString("en")} steps/s`);
      if (p.seconds_left !== null && p.seconds_left !== undefined) parts.push(`about ${duration(p.seconds_left)} left`);
      return parts.join(" · ");
    }
    if (v.status === "done") {
      const epochs = `${v.history.length} epoch${v.history.length === 1 ? "" : "s"}`;
      return `done: test accuracy ${percent(v.test_accuracy, 2)} after ${epochs} (${duration(v.seconds)} in all)`;
    }
    if (v.status === "stopped" || v.status === "failed") return `${v.status}: ${v.message}`;
    return "No run yet: pick the settings and press Start.";
  }

  function showStatus() {
    statusLine.textContent = statusText();
    statusLine.dataset.status = view.status;
    const file = view.model ? String(view.model).split(/[\\/]/).pop() : "";
    nextLine.replaceChildren();
    if (view.status === "done" && file) {
      nextLine.append(`Saved ${file}. The drawing canvas above now uses this network: draw a digit to try it.`);
    } else if (view.status === "stopped" && view.resume) {
      nextLine.append("To go on from the last finished epoch: ", element("code", "", view.resume));
    } else if (view.status === "failed" && view.hint) {
      nextLine.append(view.hint);
    }
  }

  function appendEpoch(entry) {
    const row = element("tr");
    const cell = (text) => row.appendChild(element("td", "", text));
    cell(String(entry.epoch));
    cell(typeof entry.train_loss === "number" ? entry.train_loss.toFixed(4) : "–");
    cell(typeof entry.train_accuracy === "number" ? percent(entry.train_accuracy, 2) : "–");
    cell(typeof entry.val_accuracy === "number" ? percent(entry.val_accuracy, 2) : "–").className = "val";
    cell(typeof entry.seconds === "number" ? entry.seconds.toFixed(1) : "–");
    historyBody.append(row);
    showTable();
  }

  function showTable() {          // hidden until the first epoch ends; no validation column without one
    table.hidden = view.history.length === 0;
    table.classList.toggle("no-val", !view.history.some((e) => typeof e.val_accuracy === "number"));
  }

  function niceCeiling(x) {       // 0.37 -> 0.5, 2.31 -> 2.5, 13 -> 20: fifths of it are round numbers
    if (!(x > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= x * (1 - 1e-9)) return m * power;
    return 10 * power;
  }

  function drawChart() {
    const c = chart.getContext("2d");
    const W = chart.width, H = chart.height;
    const left = 52, right = 12, top = 12, bottom = 30;
    const plotW = W - left - right, plotH = H - top - bottom;
    c.clearRect(0, 0, W, H);
    c.font = "12px system-ui, sans-serif";
    c.fillStyle = "#5b6475";
    c.strokeStyle = "#d8dde6";
    c.lineWidth = 1;

    const n = view.steps.length;
    const lastStep = n ? view.steps[n - 1] : 0;
    const xMax = Math.max(view.total, lastStep, 1);
    const finite = view.losses.filter((l) => l !== null && Number.isFinite(l));
    const yMax = niceCeiling(finite.length ? Math.max(...finite) : 2.5);
    const x = (step) => left + plotW * step / xMax;
    const y = (loss) => top + plotH * (1 - Math.min(loss, yMax) / yMax);

    // Axes and grid: six loss levels, a dashed line at the end of each epoch.
    c.textAlign = "right";
    c.textBaseline = "middle";
    for (let k = 0; k <= 5; k++) {
      const level = yMax * k / 5;
      c.beginPath();
      c.moveTo(left, y(level));
      c.lineTo(W - right, y(level));
      c.stroke();
      c.fillText(String(Number(level.toPrecision(3))), left - 6, y(level));
    }
    c.save();
    c.translate(12, top + plotH / 2);
    c.rotate(-Math.PI / 2);
    c.textAlign = "center";
    c.fillText("loss", 0, 0);
    c.restore();
    c.textAlign = "center";
    c.textBaseline = "top";
    if (view.batches && view.epochs) {
      const every = Math.ceil(view.epochs / 12);           // at most a dozen labels
      c.setLineDash([4, 4]);
      for (let e = 1; e <= view.epochs; e++) {
        const at = x(e * view.batches);
        if (e < view.epochs) {
          c.beginPath();
          c.moveTo(at, top);
          c.lineTo(at, top + plotH);
          c.stroke();
        }
        if (e % every === 0 || e === 1) c.fillText(`epoch ${e}`, x((e - 0.5) * view.batches), top + plotH + 8);
      }
      c.setLineDash([]);
    } else {
      c.fillText("steps", left + plotW / 2, top + plotH + 8);
    }

    // The losses (light) and their running average (dark); a diverged step (no number) breaks the line.
    const line = (values, colour, width) => {
      c.strokeStyle = colour;
      c.lineWidth = width;
      c.beginPath();
      let pen = false;
      values.forEach((loss, i) => {
        if (loss === null || !Number.isFinite(loss)) { pen = false; return; }
        if (pen) c.lineTo(x(view.steps[i]), y(loss));
        else c.moveTo(x(view.steps[i]), y(loss));
        pen = true;
      });
      c.stroke();
    };
    line(view.losses, "#b8c6db", 1);
    const alpha = Math.min(1, 4 / Math.max(1, Math.sqrt(n)));
    let average = null;
    line(view.losses.map((loss) => {
      if (loss === null || !Number.isFinite(loss)) return (average = null);
      average = average === null ? loss : average + alpha * (loss - average);
      return average;
    }), "#1d4e89", 2);
    if (n === 0) {
      c.textAlign = "center";
      c.textBaseline = "middle";
      c.fillText(view.status === "running" ? "waiting for the first step…" : "the loss will be drawn here",
                 left + plotW / 2, top + plotH / 2);
    }
    chart.dataset.points = String(n);
  }

  function decode(base64, Type) {
    const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
    return new Type(bytes.buffer);
  }

  function drawSnapshot(snapshot) {
    if (!snapshot) {
      tiles.replaceChildren();
      digits.replaceChildren();
      return;
    }
    const weights = decode(snapshot.tiles, Int8Array);
    const cells = [];
    for (let u = 0; u < snapshot.units; u++) {
      const item = element("li", "tile-cell");
      item.append(weightTile((i) => weights[784 * u + i] / 127));
      item.title = `hidden unit ${u}`;
      cells.push(item);
    }
    tiles.replaceChildren(...cells);
    const hidden = view.settings ? view.settings.hidden_size : snapshot.units;
    tilesTitle.textContent = snapshot.units < hidden
      ? `What the first ${snapshot.units} of its ${hidden} hidden units look for`
      : `What its ${snapshot.units} hidden units look for`;
    if (!snapshot.digits) return;
    const pixels = decode(snapshot.digits.pixels, Uint8Array);
    const names = view.class_names || [];
    digits.replaceChildren(...snapshot.digits.labels.map((label, k) => {
      const guess = snapshot.digits.guesses[k];
      const item = element("li", guess === label ? "digit-cell right" : "digit-cell wrong");
      item.append(grayTile((i) => pixels[784 * k + i]));
      const name = (index) => names[index] ?? String(index);
      item.append(element("span", "caption", `${name(label)} → ${name(guess)}`));
      item.title = `label ${name(label)}, the network guesses ${name(guess)}`;
      return item;
    }));
  }

  // --- start -------------------------------------------------------------------------------------

  async function init() {
    try {
      if (!(await loadSettings())) return;
      const response = await fetch("/api/train");
      const state = await response.json();
      if (state.status === "running") follow();
      else adopt(state);
    } catch (error) {
      errorLine.textContent = `cannot read the training settings (${error.message})`;
    }
    schedule();
  }

  init();
})();
