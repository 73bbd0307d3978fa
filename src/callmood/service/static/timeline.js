// Canvas drawings shared by the call-detail and live pages: one emotion lane per speaker
// with alert spans and a playback cursor, and per-class probability curves.
"use strict";

(function () {
  const LANE_HEIGHT = 34;
  const LANE_GAP = 10;
  const LABEL_WIDTH = 78;
  const AXIS_HEIGHT = 22;

  function prepareCanvas(canvas, cssHeight) {
    // Draw at device resolution so lines stay crisp on high-DPI screens.
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || canvas.parentElement.clientWidth || 800;
    canvas.style.height = cssHeight + "px";
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { context, width: cssWidth, height: cssHeight };
  }

  function niceStep(duration, width) {
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
    const wanted = duration / Math.max(2, width / 90);
    return steps.find((step) => step >= wanted) || 3600;
  }

  function drawAxis(context, x0, width, top, duration) {
    context.fillStyle = "#616e7c";
    context.strokeStyle = "#e4e7eb";
    context.font = "11px DejaVu Sans, sans-serif";
    context.textAlign = "center";
    const step = niceStep(duration, width);
    for (let t = 0; t <= duration + 1e-6; t += step) {
      const x = x0 + (t / duration) * width;
      context.beginPath();
      context.moveTo(x, top);
      context.lineTo(x, top + 5);
      context.stroke();
      // Keep the last label inside the canvas.
      context.textAlign = x > x0 + width - 20 ? "right" : "center";
      context.fillText(Callmood.formatSeconds(t), x, top + 16);
    }
  }

  class Timeline {
    // speakers: lane names in order; duration: seconds (grows while live).
    constructor(canvas, speakers, options) {
      this.canvas = canvas;
      this.speakers = speakers;
      this.duration = Math.max(1, (options && options.duration) || 1);
      this.windows = [];
      this.alerts = [];
      this.speech = {};  // speaker -> [[start, end], ...]: talk, also of unanalysed speakers
      this.cursor = null;
      this.onSeek = (options && options.onSeek) || null;
      canvas.addEventListener("click", (event) => {
        if (!this.onSeek) return;
        const box = canvas.getBoundingClientRect();
        const plotWidth = box.width - LABEL_WIDTH - 8;
        const fraction = (event.clientX - box.left - LABEL_WIDTH) / plotWidth;
        if (fraction >= 0 && fraction <= 1) this.onSeek(fraction * this.duration);
      });
      window.addEventListener("resize", () => this.draw());
    }

    setWindows(windows) { this.windows = windows.slice(); this.draw(); }
    addWindow(window_) {
      this.windows.push(window_);
      this.duration = Math.max(this.duration, window_.end);
      this.draw();
    }
    setAlerts(alerts) { this.alerts = alerts.slice(); this.draw(); }
    setCursor(seconds) { this.cursor = seconds; this.draw(); }

    draw() {
      const height = this.speakers.length * (LANE_HEIGHT + LANE_GAP) + AXIS_HEIGHT;
      const { context, width } = prepareCanvas(this.canvas, height);
      const plotWidth = width - LABEL_WIDTH - 8;
      const xOf = (seconds) => LABEL_WIDTH + (seconds / this.duration) * plotWidth;
      context.clearRect(0, 0, width, height);
      context.font = "12px DejaVu Sans, sans-serif";
      this.speakers.forEach((speaker, lane) => {
        const top = lane * (LANE_HEIGHT + LANE_GAP);
        context.fillStyle = "#1f2933";
        context.textAlign = "left";
        context.fillText(speaker, 4, top + LANE_HEIGHT / 2 + 4);
        context.fillStyle = "#f1f4f8";
        context.fillRect(LABEL_WIDTH, top, plotWidth, LANE_HEIGHT);
        context.fillStyle = "#d5dbe3";
        for (const [start, end] of this.speech[speaker] || []) {
          context.fillRect(xOf(start), top + LANE_HEIGHT / 3, Math.max(1, xOf(end) - xOf(start)), LANE_HEIGHT / 3);
        }
        // Windows overlap (hop < window); later windows paint over the earlier ones,
        // so each stretch shows its most recent estimate.
        for (const item of this.windows) {
          if (item.speaker !== speaker) continue;
          context.globalAlpha = 0.35 + 0.65 * (item.confidence === undefined ? 1 : item.confidence);
          context.fillStyle = Callmood.emotionColour(item.emotion);
          const x = xOf(item.start);
          context.fillRect(x, top, Math.max(1, xOf(item.end) - x), LANE_HEIGHT);
        }
        context.globalAlpha = 1;
        for (const alert of this.alerts) {
          if (alert.speaker !== speaker && alert.speaker !== "any") continue;
          const end = alert.closed_at === null || alert.closed_at === undefined
            ? this.duration : alert.closed_at;
          context.strokeStyle = "#c62828";
          context.lineWidth = 2;
          context.strokeRect(xOf(alert.opened_at), top + 1, Math.max(2, xOf(end) - xOf(alert.opened_at)), LANE_HEIGHT - 2);
        }
      });
      const axisTop = this.speakers.length * (LANE_HEIGHT + LANE_GAP) - LANE_GAP + 2;
      context.lineWidth = 1;
      drawAxis(context, LABEL_WIDTH, plotWidth, axisTop, this.duration);
      if (this.cursor !== null) {
        const x = xOf(Math.min(this.cursor, this.duration));
        context.strokeStyle = "#1b2a41";
        context.lineWidth = 2;
        context.beginPath();
        context.moveTo(x, 0);
        context.lineTo(x, axisTop);
        context.stroke();
      }
    }
  }

  class ProbabilityCurves {
    // One line per class over the windows' centres (one speaker).
    constructor(canvas, labels, options) {
      this.canvas = canvas;
      this.labels = labels;
      this.duration = Math.max(1, (options && options.duration) || 1);
      this.windows = [];
      this.cursor = null;
      window.addEventListener("resize", () => this.draw());
    }

    setWindows(windows) { this.windows = windows.slice(); this.draw(); }
    addWindow(window_) {
      this.windows.push(window_);
      this.duration = Math.max(this.duration, window_.end);
      this.draw();
    }
    setCursor(seconds) { this.cursor = seconds; this.draw(); }

    draw() {
      const height = 170;
      const { context, width } = prepareCanvas(this.canvas, height);
      const plotWidth = width - LABEL_WIDTH - 8;
      const plotHeight = height - AXIS_HEIGHT - 8;
      const xOf = (seconds) => LABEL_WIDTH + (seconds / this.duration) * plotWidth;
      const yOf = (p) => 4 + (1 - p) * plotHeight;
      context.clearRect(0, 0, width, height);
      context.fillStyle = "#616e7c";
      context.font = "11px DejaVu Sans, sans-serif";
      context.textAlign = "right";
      for (const p of [0, 0.5, 1]) {
        context.fillText(p.toFixed(1), LABEL_WIDTH - 8, yOf(p) + 4);
        context.strokeStyle = "#eef1f5";
        context.beginPath();
        context.moveTo(LABEL_WIDTH, yOf(p));
        context.lineTo(LABEL_WIDTH + plotWidth, yOf(p));
        context.stroke();
      }
      const ordered = this.windows.slice().sort((a, b) => a.start - b.start);
      context.lineWidth = 2;
      for (const label of this.labels) {
        context.strokeStyle = Callmood.emotionColour(label);
        context.beginPath();
        ordered.forEach((item, index) => {
          const x = xOf((item.start + item.end) / 2);
          const y = yOf(item.probabilities[label] || 0);
          // No line across silence: a gap longer than a window starts a new stroke.
          const gap = index > 0 && item.start - ordered[index - 1].end > 0.5;
          if (index === 0 || gap) context.moveTo(x, y); else context.lineTo(x, y);
        });
        context.stroke();
      }
      context.lineWidth = 1;
      drawAxis(context, LABEL_WIDTH, plotWidth, plotHeight + 6, this.duration);
      if (this.cursor !== null) {
        const x = xOf(Math.min(this.cursor, this.duration));
        context.strokeStyle = "#1b2a41";
        context.lineWidth = 2;
        context.beginPath();
        context.moveTo(x, 0);
        context.lineTo(x, plotHeight + 6);
        context.stroke();
      }
    }
  }

  Callmood.Timeline = Timeline;
  Callmood.ProbabilityCurves = ProbabilityCurves;
})();
