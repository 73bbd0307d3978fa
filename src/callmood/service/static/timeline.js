// Canvas drawings shared by the call-detail and live pages: one emotion lane per speaker
// with alert spans and a playback cursor, and per-class probability curves. Both can show
// a part of the call (zoom: mouse wheel or setView; pan: drag) and name the values under
// the mouse in a tip element.
"use strict";

(function () {
  const LANE_HEIGHT = 34;
  const LANE_GAP = 10;
  const LABEL_WIDTH = 78;
  const RIGHT_MARGIN = 8;
  const AXIS_HEIGHT = 22;
  const CURVES_HEIGHT = 170;
  const MIN_VIEW_SECONDS = 2;
  const DRAG_PIXELS = 4;  // a press that moves less is a click (seek), not a drag (pan)

  const prepareCanvas = Callmood.prepareCanvas;

  function niceStep(span, width) {
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
    const wanted = span / Math.max(2, width / 90);
    return steps.find((step) => step >= wanted) || 3600;
  }

  function drawAxis(context, xOf, x0, width, top, start, end) {
    context.fillStyle = "#616e7c";
    context.strokeStyle = "#e4e7eb";
    context.font = "11px DejaVu Sans, sans-serif";
    const step = niceStep(end - start, width);
    for (let t = Math.ceil(start / step) * step; t <= end + 1e-6; t += step) {
      const x = xOf(t);
      context.beginPath();
      context.moveTo(x, top);
      context.lineTo(x, top + 5);
      context.stroke();
      // Keep the first and last labels inside the canvas.
      context.textAlign = x > x0 + width - 20 ? "right" : x < x0 + 20 ? "left" : "center";
      context.fillText(Callmood.formatSeconds(t), x, top + 16);
    }
  }

  // What both drawings share: the duration, the part of it in view, the cursor, and the
  // mouse: wheel zooms around the pointer, a drag pans, a click seeks, hovering names values.
  class TimeChart {
    constructor(canvas, options) {
      this.canvas = canvas;
      this.duration = Math.max(1, (options && options.duration) || 1);
      this.view = null;  // [start, end] in seconds, or null for the whole call
      this.windows = [];
      this.cursor = null;
      this.onSeek = (options && options.onSeek) || null;
      this.onView = (options && options.onView) || null;
      this.tip = (options && options.tip) || null;
      this.attachMouse();
      window.addEventListener("resize", () => this.draw());
    }

    range() {
      return this.view ? this.view : [0, this.duration];
    }

    plotWidth() { return (this.canvas.clientWidth || 800) - LABEL_WIDTH - RIGHT_MARGIN; }

    timeAt(clientX) {
      const box = this.canvas.getBoundingClientRect();
      const fraction = (clientX - box.left - LABEL_WIDTH) / this.plotWidth();
      const [start, end] = this.range();
      return fraction >= 0 && fraction <= 1 ? start + fraction * (end - start) : null;
    }

    // Show [start, end] (clamped to the call); null or the whole call shows everything.
    setView(view, notify) {
      let next = null;
      if (view) {
        const span = Math.min(this.duration, Math.max(MIN_VIEW_SECONDS, view[1] - view[0]));
        const start = Math.min(Math.max(0, view[0]), this.duration - span);
        next = span >= this.duration - 1e-6 ? null : [start, start + span];
      }
      this.view = next;
      this.draw();
      if (notify && this.onView) this.onView(this.view);
    }

    zoom(factor, around) {
      const [start, end] = this.range();
      const centre = around === undefined || around === null ? (start + end) / 2 : around;
      const share = (centre - start) / (end - start);
      const span = (end - start) * factor;
      this.setView([centre - share * span, centre - share * span + span], true);
    }

    attachMouse() {
      const canvas = this.canvas;
      let press = null;
      canvas.addEventListener("wheel", (event) => {
        const at = this.timeAt(event.clientX);
        if (at === null) return;
        event.preventDefault();  // the wheel zooms the chart instead of scrolling the page
        this.zoom(event.deltaY < 0 ? 0.8 : 1.25, at);
      }, { passive: false });
      canvas.addEventListener("pointerdown", (event) => {
        press = { x: event.clientX, range: this.range(), dragged: false };
        canvas.setPointerCapture(event.pointerId);
      });
      canvas.addEventListener("pointermove", (event) => {
        if (press) {
          const moved = event.clientX - press.x;
          if (Math.abs(moved) >= DRAG_PIXELS) press.dragged = true;
          if (press.dragged && this.view) {
            const [start, end] = press.range;
            const shift = (moved / this.plotWidth()) * (end - start);
            this.setView([start - shift, end - shift], true);
          }
        }
        this.hover(event);
      });
      canvas.addEventListener("pointerup", (event) => {
        const wasClick = press && !press.dragged;
        press = null;
        if (wasClick && this.onSeek) {
          const at = this.timeAt(event.clientX);
          if (at !== null) this.onSeek(at);
        }
      });
      canvas.addEventListener("pointerleave", () => { if (this.tip) this.tip.hidden = true; });
    }

    hover(event) {
      if (!this.tip) return;
      const at = this.timeAt(event.clientX);
      const box = this.canvas.getBoundingClientRect();
      const text = at === null ? null : this.describe(at, event.clientY - box.top);
      if (!text) { this.tip.hidden = true; return; }
      this.tip.textContent = text;
      this.tip.hidden = false;
      const x = event.clientX - box.left;
      // Beside the pointer, on the side with room.
      this.tip.style.left = (x > box.width / 2 ? x - this.tip.offsetWidth - 12 : x + 12) + "px";
      this.tip.style.top = Math.max(0, event.clientY - box.top - 10) + "px";
    }

    windowAt(at, speaker) {
      // The latest window covering `at` (later windows paint over earlier ones).
      let found = null;
      for (const item of this.windows) {
        if ((speaker === undefined || item.speaker === speaker) && item.start <= at && at < item.end) found = item;
      }
      return found;
    }

    setWindows(windows) { this.windows = windows.slice(); this.draw(); }
    addWindow(window_) {
      this.windows.push(window_);
      this.duration = Math.max(this.duration, window_.end);
      this.draw();
    }
    setCursor(seconds) { this.cursor = seconds; this.draw(); }

    drawCursor(context, xOf, bottom) {
      const [start, end] = this.range();
      if (this.cursor === null || this.cursor < start || this.cursor > end) return;
      const x = xOf(this.cursor);
      context.strokeStyle = "#1b2a41";
      context.lineWidth = 2;
      context.beginPath();
      context.moveTo(x, 0);
      context.lineTo(x, bottom);
      context.stroke();
    }
  }

  class Timeline extends TimeChart {
    // speakers: lane names in order; duration: seconds (grows while live).
    constructor(canvas, speakers, options) {
      super(canvas, options);
      this.speakers = speakers;
      this.alerts = [];
      this.speech = {};  // speaker -> [[start, end], ...]: talk, also of unanalysed speakers
    }

    setAlerts(alerts) { this.alerts = alerts.slice(); this.draw(); }

    describe(at, y) {
      const lane = Math.floor(y / (LANE_HEIGHT + LANE_GAP));
      const speaker = this.speakers[lane];
      if (speaker === undefined) return Callmood.formatSeconds(at);
      const item = this.windowAt(at, speaker);
      const talking = (this.speech[speaker] || []).some(([start, end]) => start <= at && at < end);
      const what = item
        ? item.emotion + " (confidence " + Math.round(item.confidence * 100) + " %)"
        : talking ? "speaking, emotion not analysed" : "silent";
      return Callmood.formatSeconds(at) + " · " + speaker + ": " + what;
    }

    draw() {
      const height = this.speakers.length * (LANE_HEIGHT + LANE_GAP) + AXIS_HEIGHT;
      const { context, width } = prepareCanvas(this.canvas, height);
      const plotWidth = width - LABEL_WIDTH - RIGHT_MARGIN;
      const [viewStart, viewEnd] = this.range();
      const xOf = (seconds) => LABEL_WIDTH + ((seconds - viewStart) / (viewEnd - viewStart)) * plotWidth;
      context.clearRect(0, 0, width, height);
      context.font = "12px DejaVu Sans, sans-serif";
      this.speakers.forEach((speaker, lane) => {
        const top = lane * (LANE_HEIGHT + LANE_GAP);
        context.fillStyle = "#1f2933";
        context.textAlign = "left";
        context.fillText(speaker, 4, top + LANE_HEIGHT / 2 + 4);
        context.save();
        context.beginPath();
        context.rect(LABEL_WIDTH, top, plotWidth, LANE_HEIGHT);
        context.clip();  // zoomed in, what lies outside the view stays out of the labels
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
        context.restore();
      });
      const axisTop = this.speakers.length * (LANE_HEIGHT + LANE_GAP) - LANE_GAP + 2;
      context.lineWidth = 1;
      drawAxis(context, xOf, LABEL_WIDTH, plotWidth, axisTop, viewStart, viewEnd);
      this.drawCursor(context, xOf, axisTop);
    }
  }

  class ProbabilityCurves extends TimeChart {
    // One line per class over the windows' centres (one speaker).
    constructor(canvas, labels, options) {
      super(canvas, options);
      this.labels = labels;
    }

    describe(at) {
      const item = this.windowAt(at);
      if (!item) return Callmood.formatSeconds(at) + " · no speech analysed";
      const values = this.labels
        .map((label) => [label, item.probabilities[label] || 0])
        .sort((a, b) => b[1] - a[1])
        .map(([label, p]) => label + " " + p.toFixed(2));
      return Callmood.formatSeconds(item.start) + "–" + Callmood.formatSeconds(item.end) + " · " + values.join(", ");
    }

    // Windows in time order, split where speech pauses: no line is drawn across silence.
    runs() {
      const ordered = this.windows.slice().sort((a, b) => a.start - b.start);
      const runs = [];
      ordered.forEach((item, index) => {
        const gap = index === 0 || item.start - ordered[index - 1].end > 0.5;
        if (gap) runs.push([]);
        runs[runs.length - 1].push(item);
      });
      return runs;
    }

    draw() {
      const height = CURVES_HEIGHT;
      const { context, width } = prepareCanvas(this.canvas, height);
      const plotWidth = width - LABEL_WIDTH - RIGHT_MARGIN;
      const plotHeight = height - AXIS_HEIGHT - 8;
      const [viewStart, viewEnd] = this.range();
      const xOf = (seconds) => LABEL_WIDTH + ((seconds - viewStart) / (viewEnd - viewStart)) * plotWidth;
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
      context.save();
      context.beginPath();
      context.rect(LABEL_WIDTH, 0, plotWidth, plotHeight + 6);
      context.clip();
      const runs = this.runs();
      context.lineWidth = 2;
      for (const label of this.labels) {
        context.strokeStyle = Callmood.emotionColour(label);
        context.beginPath();
        for (const run of runs) {
          if (run.length === 1) {
            // A window alone between pauses is a level across its own span, not a lone
            // moveTo that draws nothing.
            const y = yOf(run[0].probabilities[label] || 0);
            context.moveTo(xOf(run[0].start), y);
            context.lineTo(xOf(run[0].end), y);
            continue;
          }
          run.forEach((item, index) => {
            const x = xOf((item.start + item.end) / 2);
            const y = yOf(item.probabilities[label] || 0);
            if (index === 0) context.moveTo(x, y); else context.lineTo(x, y);
          });
        }
        context.stroke();
      }
      context.restore();
      context.lineWidth = 1;
      drawAxis(context, xOf, LABEL_WIDTH, plotWidth, plotHeight + 6, viewStart, viewEnd);
      this.drawCursor(context, xOf, plotHeight + 6);
    }
  }

  Callmood.Timeline = Timeline;
  Callmood.ProbabilityCurves = ProbabilityCurves;
})();
