// mlknobs serve: the training panel's run. Start posts the settings form (train-form.js) to
// /api/train, and the run is followed through the Server-Sent Events of /api/train/events: the
// state so far first, then one record per event (start, step, epoch, snapshot, end), kept in one
// `view` that the status line, the epochs' table and the pictures (train-chart.js) show.
// Everything is written with textContent or drawn on canvases.
"use strict";

(() => {
  const { element, percent, trainForm, trainChart } = window.mlknobs;
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

  let source = null;             // the EventSource of the run being followed
  let view = fresh();            // what the panel shows of that run
  let drawScheduled = false;

  function fresh() {
    return { run: null, status: "idle", phase: "", stopping: false, message: "", hint: null, resume: null,
             model: null, test_accuracy: null, seconds: null, epochs: 0, batches: 0, total: 0,
             steps: [], losses: [], stride: 1, pending: [], progress: null, history: [], snapshot: null,
             class_names: null, settings: null };
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
    trainForm.markInvalid([]);
    startButton.disabled = true;
    const { status, answer } = await post("/api/train", trainForm.settingsToSend());
    if (status === 202) {
      follow();
    } else {
      errorLine.textContent = answer.error || `the server answered ${status}`;
      if (answer.settings) trainForm.markInvalid(answer.settings);
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
      trainChart.drawLoss(chart, view);
      if (view.snapshotDirty) {
        view.snapshotDirty = false;
        trainChart.drawSnapshot({ tiles, digits, title: tilesTitle }, view.snapshot, view);
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

  // --- start -------------------------------------------------------------------------------------

  async function init() {
    try {
      if (!(await trainForm.load($("train-primary"), $("train-more")))) return;    // no panel on this server
      panel.hidden = false;
      $("train-jump").hidden = false;
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
