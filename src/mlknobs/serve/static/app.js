// mlknobs serve: draw a digit (or drop a picture) and show what the network makes of it.
//
// The canvas is sent as a PNG to POST /api/predict, which reads it with the same function as
// `mlknobs predict`; a picture from the file picker or a drop is sent as it is. Everything that
// comes back is written with textContent or drawn on canvases: never parsed as HTML.
"use strict";

(() => {
  const { element, percent, weightTile } = window.mlknobs;
  const PEN_WIDTH = 18;          // px on the 280 px canvas: MNIST's strokes are ~9 % of the digit
  const PAPER = "#ffffff";
  const INK = "#111111";
  const SEND_EVERY_MS = 120;     // while drawing, at most one prediction request per this long

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const drop = $("drop");
  const fileInput = $("file");
  const statusLine = $("status");
  const prediction = $("prediction");
  const bars = $("probabilities");
  const inputCanvas = $("input");
  const units = $("units");

  let hasInk = false;            // is there anything on the canvas to send?
  let stroke = null;             // {id, x, y}: the pointer drawing now and where it was
  let timer = null;              // a scheduled send
  let inFlight = false;          // a canvas request is on its way
  let dirty = false;             // the canvas changed since it was last sent
  let latest = 0;                // number of the newest request: older answers are dropped
  let barRows = [];              // one {row, fill, value} per class

  // --- the canvas ---------------------------------------------------------------------------------

  function clearPad() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.restore();
    hasInk = false;
  }

  function at(event) {           // pointer position in canvas pixels, whatever its CSS size
    const box = pad.getBoundingClientRect();
    return { x: (event.clientX - box.left) * pad.width / box.width,
             y: (event.clientY - box.top) * pad.height / box.height };
  }

  function penWidth(event) {     // a pen presses harder or lighter; mouse and touch draw at 0.5
    const pressure = event.pointerType === "pen" && event.pressure > 0 ? event.pressure : 0.5;
    return PEN_WIDTH * (0.6 + 0.8 * pressure);
  }

  function segment(from, to, width) {
    ctx.strokeStyle = INK;
    ctx.lineWidth = width;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    hasInk = true;
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    const point = at(event);
    stroke = { id: event.pointerId, ...point };
    segment(point, point, penWidth(event));      // a dot for a click without a move
    changed();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!stroke || event.pointerId !== stroke.id) return;
    const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const move of moves.length ? moves : [event]) {
      const point = at(move);
      segment(stroke, point, penWidth(move));
      stroke.x = point.x;
      stroke.y = point.y;
    }
    changed();
  });

  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    pad.addEventListener(type, (event) => {
      if (stroke && event.pointerId === stroke.id) {
        stroke = null;
        changed(true);
      }
    });
  }

  // --- sending ------------------------------------------------------------------------------------

  // Throttled: the first change schedules a send, later ones ride along with it; while a request
  // is on its way the next waits for it, so answers never pile up behind a fast pen.
  function changed(now = false) {
    dirty = true;
    if (now && timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (!timer) timer = setTimeout(sendCanvas, now ? 0 : SEND_EVERY_MS);
  }

  function sendCanvas() {
    timer = null;
    if (inFlight || !dirty) return;
    dirty = false;
    if (!hasInk) return;
    const number = ++latest;
    inFlight = true;
    pad.toBlob((blob) => {
      post(blob, "image/png", number).finally(() => {
        inFlight = false;
        if (dirty) changed(true);
      });
    }, "image/png");
  }

  function sendFile(file) {
    if (timer) clearTimeout(timer);
    timer = null;
    dirty = false;
    const number = ++latest;
    showStatus(`Reading ${file.name}…`);
    preview(file);
    post(file, file.type || "application/octet-stream", number, file.name);
  }

  async function post(body, type, number, source = "") {
    let answer, ok;
    try {
      const response = await fetch("/api/predict", { method: "POST", body, headers: { "Content-Type": type } });
      ok = response.ok;
      answer = await response.json();
    } catch (error) {
      ok = false;
      answer = { error: `no answer from the server (${error.message}): is mlknobs serve still running?` };
    }
    if (number !== latest) return;               // a newer drawing or picture was sent since
    if (ok) {
      show(answer, source);
    } else {
      showNothing();
      showStatus(answer && answer.error ? answer.error : "the server could not read this picture", true);
    }
  }

  // The picture goes on the canvas too (contained, on white), so drawing on it goes on from there.
  function preview(file) {
    clearPad();
    if (!window.createImageBitmap) return;
    createImageBitmap(file).then((bitmap) => {
      const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      const width = bitmap.width * scale, height = bitmap.height * scale;
      ctx.drawImage(bitmap, (pad.width - width) / 2, (pad.height - height) / 2, width, height);
      bitmap.close();
      hasInk = true;
    }).catch(() => { /* a format the browser cannot show (TIFF): the server may still read it */ });
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) sendFile(fileInput.files[0]);
    fileInput.value = "";                        // choosing the same file again is a change too
  });

  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const files = event.dataTransfer ? event.dataTransfer.files : [];
    if (files.length) sendFile(files[0]);
  });

  $("clear").addEventListener("click", () => {
    if (timer) clearTimeout(timer);
    timer = null;
    dirty = false;
    latest++;                                    // answers still on their way are dropped
    clearPad();
    showNothing();
    showStatus("Draw a digit, or drop a picture on the canvas.");
  });

  // --- showing ------------------------------------------------------------------------------------

  function showStatus(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  function show(answer, source) {
    showStatus(source ? `Read from ${source}.` : "");
    prediction.replaceChildren(
      element("span", "name", answer.name), " ",
      element("span", "confidence", percent(answer.confidence)));
    answer.probabilities.forEach((p, label) => {
      const bar = barRows[label];
      if (!bar) return;
      bar.fill.style.width = `${(100 * p).toFixed(1)}%`;
      bar.value.textContent = percent(p);
      bar.row.classList.toggle("top", label === answer.label);
    });
    drawInput(answer.input);
    showUnits(answer.hidden);
  }

  function showNothing() {
    prediction.textContent = "–";
    for (const bar of barRows) {
      bar.fill.style.width = "0%";
      bar.value.textContent = "";
      bar.row.classList.remove("top");
    }
    drawInput(null);
    units.replaceChildren();
  }

  function makeBars(classNames) {
    bars.replaceChildren();
    barRows = classNames.map((name) => {
      const row = element("li", "bar-row");
      const track = element("span", "track");
      const fill = element("span", "fill");
      const value = element("span", "value");
      track.append(fill);
      row.append(element("span", "label", name), track, value);
      bars.append(row);
      return { row, fill, value };
    });
  }

  function drawInput(rows) {                     // 28x28 gray levels, light ink on black
    const c = inputCanvas.getContext("2d");
    const image = c.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) {
      const level = rows ? rows[Math.floor(i / 28)][i % 28] : 0;
      image.data.set([level, level, level, 255], 4 * i);
    }
    c.putImageData(image, 0, 0);
  }

  function tile(weights) {                       // rows of 28 weights in [-1, 1]
    return weightTile((i) => weights[Math.floor(i / 28)][i % 28]);
  }

  function showUnits(hidden) {
    units.replaceChildren(...hidden.map((unit) => {
      const item = element("li", "unit");
      const meter = element("span", "meter");
      const level = element("span", "level");
      level.style.width = `${(100 * unit.activation).toFixed(1)}%`;
      meter.append(level);
      const numbers = element("span", "numbers");
      numbers.append(element("span", "activation", unit.activation.toFixed(2)), " ",
                     element("span", "z", `z = ${unit.z.toFixed(1)}`));
      item.append(tile(unit.weights), element("span", "unit-name", `unit ${unit.unit}`), meter, numbers);
      item.title = `hidden unit ${unit.unit}: activation ${unit.activation} = sigmoid(z), z = ${unit.z}`;
      return item;
    }));
  }

  // --- the model ----------------------------------------------------------------------------------

  // The model the page draws with (again after a training run replaced it: window.mlknobs.modelChanged).
  async function loadModel() {
    try {
      const response = await fetch("/api/model");
      const meta = await response.json();
      if (!response.ok) throw new Error(meta.error || response.statusText);
      const file = String(meta.model).split(/[\\/]/).pop();
      const accuracy = typeof meta.test_accuracy === "number"
        ? `test accuracy ${(100 * meta.test_accuracy).toFixed(2)} %` : "test accuracy not measured";
      $("model").textContent = `Model ${file}: ${meta.dataset}, ${meta.architecture.hidden_size} hidden units, ${accuracy}`;
      makeBars(meta.class_names);
    } catch (error) {
      $("model").textContent = `Cannot read the model's description (${error.message})`;
      makeBars([..."0123456789"]);
    }
  }

  // A training run saved a new model: describe it, and read the drawing again with it.
  window.mlknobs.modelChanged = async () => {
    await loadModel();
    if (hasInk) changed(true);
  };

  clearPad();
  drawInput(null);
  loadModel();
})();
