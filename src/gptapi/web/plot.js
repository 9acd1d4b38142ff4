// Small time plots, drawn by hand on a <canvas> (no library, nothing fetched): a few series
// over the last two minutes, the y axis from 0 to a round number above the highest value.

const PALETTE = ["#1f6feb", "#d4380d", "#389e0d", "#9254de", "#d48806"];
const WINDOW_S = 120;
const GRID = "#e3e7eb";
const INK = "#5b6670";
const MARGIN = { left: 70, right: 8, top: 22, bottom: 16 };

// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``.
function roundUp(value) {
  if (!(value > 0)) {
    return 1;
  }
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) {
      return step * power;
    }
  }
  return 10 * power;
}

export class TimePlot {
  // series: labels, one per value pushed; format: a number -> its label on the y axis.
  constructor(canvas, { series, format }) {
    this.canvas = canvas;
    this.series = series;
    this.format = format;
    this.points = []; // {t: seconds, values: [number | null]}
  }

  push(t, values) {
    this.points.push({ t, values });
    while (this.points.length > 0 && this.points[0].t < t - WINDOW_S) {
      this.points.shift();
    }
    // For tests and curious readers: how much is drawn, and its highest value.
    this.canvas.dataset.points = String(this.points.length);
    this.canvas.dataset.peak = String(this.peak());
    this.draw();
  }

  peak() {
    let peak = 0;
    for (const { values } of this.points) {
      for (const value of values) {
        if (value !== null && value > peak) {
          peak = value;
        }
      }
    }
    return peak;
  }

  draw() {
    const canvas = this.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) {
      return; // in a hidden view: drawn when shown
    }
    const scale = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * scale)) {
      canvas.width = Math.round(width * scale);
      canvas.height = Math.round(height * scale);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const top = roundUp(this.peak());
    this.drawGrid(ctx, plotW, plotH, top);
    if (this.points.length === 0) {
      return;
    }
    const now = this.points[this.points.length - 1].t;
    const x = (t) => MARGIN.left + (plotW * (t - (now - WINDOW_S))) / WINDOW_S;
    const y = (v) => MARGIN.top + plotH * (1 - v / top);
    this.series.forEach((_, index) => {
      ctx.strokeStyle = PALETTE[index % PALETTE.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      for (const point of this.points) {
        const value = point.values[index];
        if (value === null || value === undefined) {
          drawing = false; // a gap: no reading
          continue;
        }
        if (drawing) {
          ctx.lineTo(x(point.t), y(value));
        } else {
          ctx.moveTo(x(point.t), y(value));
          drawing = true;
        }
      }
      ctx.stroke();
    });
    this.drawLegend(ctx, this.points[this.points.length - 1].values);
  }

  drawGrid(ctx, plotW, plotH, top) {
    ctx.strokeStyle = GRID;
    ctx.fillStyle = INK;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = Math.round(MARGIN.top + plotH * (1 - i / 4)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(MARGIN.left, y);
      ctx.lineTo(MARGIN.left + plotW, y);
      ctx.stroke();
      ctx.fillText(this.format((top * i) / 4), MARGIN.left - 6, y);
    }
    ctx.textBaseline = "bottom";
    ctx.textAlign = "left";
    ctx.fillText(`−${WINDOW_S / 60} min`, MARGIN.left, MARGIN.top + plotH + MARGIN.bottom);
    ctx.textAlign = "right";
    ctx.fillText("now", MARGIN.left + plotW, MARGIN.top + plotH + MARGIN.bottom);
  }

  drawLegend(ctx, latest) {
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    let x = MARGIN.left;
    this.series.forEach((label, index) => {
      const value = latest[index];
      const text = `${label} ${value === null || value === undefined ? "–" : this.format(value)}`;
      ctx.fillStyle = PALETTE[index % PALETTE.length];
      ctx.fillRect(x, 5, 10, 10);
      ctx.fillStyle = INK;
      ctx.fillText(text, x + 14, 4);
      x += ctx.measureText(text).width + 28;
    });
  }
}
