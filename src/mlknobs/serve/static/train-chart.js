// mlknobs serve: what the training panel draws of a run: the loss of every step (a chart that
// grows, with its running average and the epochs marked) and a snapshot's weight tiles and digits.
"use strict";

window.mlknobs.trainChart = (() => {
  const { element, weightTile, grayTile } = window.mlknobs;

  function niceCeiling(x) {       // 0.37 -> 0.5, 2.31 -> 2.5, 13 -> 20: fifths of it are round numbers
    if (!(x > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= x * (1 - 1e-9)) return m * power;
    return 10 * power;
  }

  // The loss of every step so far (view.steps, view.losses) on `chart`, the epochs marked.
  function drawLoss(chart, view) {
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

  // A snapshot's weight tiles and batch digits into places.tiles and places.digits, titled in places.title.
  function drawSnapshot(places, snapshot, view) {
    const { tiles, digits, title: tilesTitle } = places;
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

  return { drawLoss, drawSnapshot };
})();
