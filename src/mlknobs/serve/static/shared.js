// mlknobs serve: helpers the drawing page (app.js) and the training panel (train.js) share.
"use strict";

window.mlknobs = (() => {
  // Blue - white - red as `mlknobs plot weights` draws (matplotlib's RdBu_r), for w in [-1, 1].
  const RDBU_R = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
                  [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43],
                  [103, 0, 31]];

  function colour(w) {
    const t = (Math.max(-1, Math.min(1, w)) + 1) / 2 * (RDBU_R.length - 1);
    const i = Math.min(Math.floor(t), RDBU_R.length - 2), f = t - i;
    return RDBU_R[i].map((v, k) => Math.round(v + f * (RDBU_R[i + 1][k] - v)));
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(p, digits = 1) {
    return `${(100 * p).toFixed(digits)} %`;
  }

  // A 28x28 canvas whose pixel i (row by row) has the colour rgb(i) = [r, g, b].
  function tile(rgb, className) {
    const canvas = element("canvas", className);
    canvas.width = 28;
    canvas.height = 28;
    const c = canvas.getContext("2d");
    const image = c.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) image.data.set([...rgb(i), 255], 4 * i);
    c.putImageData(image, 0, 0);
    return canvas;
  }

  // Weights in [-1, 1] (value(i) for pixel i), coloured as above.
  function weightTile(value, className = "tile") {
    return tile((i) => colour(value(i)), className);
  }

  // Gray levels (level(i) in 0..255 for pixel i): light ink on black, as MNIST.
  function grayTile(level, className = "digit") {
    return tile((i) => {
      const v = level(i);
      return [v, v, v];
    }, className);
  }

  return { colour, element, percent, weightTile, grayTile };
})();
