// Trends page: asks /api/trends for the form's filters in the browser's time zone (per day
// or week, per agent, per queue) and shows each as a canvas chart with its numbers in a
// table beside it (the table is what screen readers and the CSV download get).
"use strict";

(function () {
  const form = document.getElementById("trend-filters");
  const errorBox = document.getElementById("trend-error");
  const summary = document.getElementById("trend-summary");
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  // The colours of the severity badges (callmood.css .badge.critical, .warning, .info).
  const SEVERITIES = [["critical", "#c62828"], ["warning", "#ffb74d"], ["info", "#90caf9"]];
  const CHART_HEIGHT = 160;
  // Bucket keys are local dates ("2026-10-25"): formatted as dates in UTC, never shifted.
  const dayFormat = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", day: "numeric", month: "short", year: "numeric" });
  const tableDay = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", weekday: "short", day: "numeric", month: "short" });
  const shortDay = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", day: "numeric", month: "short" });
  const drawn = [];  // [draw function] to repeat when the window is resized

  Callmood.omitEmptyFields(form);

  function cssColour(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function asDate(key) { return new Date(key + "T00:00:00Z"); }

  function prepareCanvas(canvas, cssHeight) {
    const prepared = Callmood.prepareCanvas(canvas, cssHeight);
    prepared.context.font = "11px DejaVu Sans, sans-serif";
    return prepared;
  }

  // Vertical columns, one per bucket, each a stack of `series` ({values, colour}) from 0 to max.
  function columns(canvas, labels, series, max, format) {
    const { context, width, height } = prepareCanvas(canvas, CHART_HEIGHT);
    const left = 34, bottom = 20, top = 8;
    const plotHeight = height - bottom - top;
    const step = (width - left - 4) / Math.max(1, labels.length);
    context.fillStyle = "#616e7c";
    context.strokeStyle = "#e4e7eb";
    context.textAlign = "right";
    for (const fraction of [0, 0.5, 1]) {
      const y = top + plotHeight * (1 - fraction);
      context.fillText(format(max * fraction), left - 4, y + 4);
      context.beginPath(); context.moveTo(left, y); context.lineTo(width, y); context.stroke();
    }
    labels.forEach((label, index) => {
      let base = 0;
      for (const part of series) {
        const value = part.values[index];
        if (value === null || value === undefined || value <= 0) continue;
        const y0 = top + plotHeight * (1 - base / max);
        const y1 = top + plotHeight * (1 - (base + value) / max);
        context.fillStyle = part.colour;
        context.fillRect(left + index * step + step * 0.15, y1, Math.max(1, step * 0.7), y0 - y1);
        base += value;
      }
    });
    // As many date labels as fit, evenly spaced.
    context.fillStyle = "#616e7c";
    context.textAlign = "center";
    const every = Math.max(1, Math.ceil(labels.length / Math.max(1, Math.floor((width - left) / 56))));
    labels.forEach((label, index) => {
      if (index % every === 0) context.fillText(label, left + (index + 0.5) * step, height - 5);
    });
  }

  // Horizontal bars (agents, queues): mean negativity, with the alert count written after it.
  function bars(canvas, groups) {
    const rowHeight = 22;
    const { context, width } = prepareCanvas(canvas, Math.max(40, groups.length * rowHeight + 8));
    const labelWidth = Math.min(120, width * 0.35);
    const plotWidth = width - labelWidth - 70;
    groups.forEach((group, index) => {
      const y = 4 + index * rowHeight;
      context.fillStyle = "#1f2933";
      context.textAlign = "right";
      context.fillText(clip(context, group.key === null ? "(none)" : group.key, labelWidth - 8), labelWidth - 6, y + 14);
      const value = group.mean_negativity;
      context.fillStyle = cssColour("--emotion-angry", "#dc3b3b");
      if (value !== null) context.fillRect(labelWidth, y + 3, Math.max(1, plotWidth * value), rowHeight - 8);
      context.fillStyle = "#616e7c";
      context.textAlign = "left";
      const text = (value === null ? "–" : value.toFixed(2)) + " · " + group.alerts + " alert(s)";
      context.fillText(text, labelWidth + (value === null ? 0 : plotWidth * value) + 4, y + 14);
    });
  }

  function clip(context, text, room) {
    if (context.measureText(text).width <= room) return text;
    while (text.length > 1 && context.measureText(text + "…").width > room) text = text.slice(0, -1);
    return text + "…";
  }

  function cell(row, content, className) {
    const element = document.createElement(row.parentElement && row.parentElement.tagName === "THEAD" ? "th" : "td");
    if (content instanceof Node) element.append(content); else element.textContent = content;
    if (className) element.className = className;
    row.append(element);
    return element;
  }

  function severityText(group) {
    const parts = SEVERITIES.map(([name]) => [name, group.alerts_by_severity[name] || 0])
      .filter(([, count]) => count > 0)
      .map(([name, count]) => count + " " + name);
    return parts.length ? " (" + parts.join(", ") + ")" : "";
  }

  // The numbers of one section: a header, one row per group, then the totals.
  function fillTable(table, heading, groups, totals, firstCell) {
    const head = document.createElement("thead");
    const headRow = head.insertRow();
    for (const title of [heading, "Calls", "Duration", "Mean negativity", "Calls with alerts", "Alerts", "Open alerts"]) {
      const th = document.createElement("th");
      th.textContent = title;
      headRow.append(th);
    }
    const body = document.createElement("tbody");
    const foot = document.createElement("tfoot");
    const rows = groups.map((group) => [body, group, firstCell(group)]);
    rows.push([foot, totals, "Total"]);
    for (const [section, group, first] of rows) {
      const row = section.insertRow();
      row.dataset.key = group.key === null ? "" : group.key;
      const firstCell = cell(row, first, "group");
      if (group.first_day) firstCell.title = dayFormat.format(asDate(group.first_day));
      cell(row, String(group.calls), "num calls");
      cell(row, Callmood.formatSeconds(group.duration_seconds), "num duration");
      cell(row, group.mean_negativity === null ? "–" : group.mean_negativity.toFixed(2), "num negativity");
      cell(row, String(group.calls_with_alerts), "num with-alerts");
      cell(row, group.alerts + severityText(group), "alerts");
      cell(row, String(group.open_alerts), "num open");
    }
    table.replaceChildren(head, body, foot);
  }

  function filterParams() {
    const params = new URLSearchParams();
    for (const name of ["date_from", "date_to", "agent", "queue"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    params.set("tz", zone);
    return params;
  }

  function withBy(params, by) {
    const copy = new URLSearchParams(params);
    copy.set("by", by);
    return copy;
  }

  // /calls filtered by the agent or queue of a row (and the other filter of the form).
  function callsLink(by, group) {
    const text = group.key === null ? "(none)" : group.key;
    if (group.key === null) return document.createTextNode(text);
    const params = new URLSearchParams();
    params.set(by, group.key);
    const other = by === "agent" ? "queue" : "agent";
    const otherValue = form.elements[other].value.trim();
    if (otherValue) params.set(other, otherValue);
    const link = document.createElement("a");
    link.href = "/calls?" + params.toString();
    link.textContent = text;
    link.className = "calls-link";
    return link;
  }

  function showTime(data) {
    const section = document.getElementById("trend-time");
    const week = data.by === "week";
    section.dataset.by = data.by;
    section.querySelector(".unit").textContent = week ? "week (from Monday)" : "day";
    const labels = data.groups.map((group) => shortDay.format(asDate(group.key)));
    const draw = () => {
      columns(document.getElementById("chart-negativity"), labels,
        [{ values: data.groups.map((g) => g.mean_negativity), colour: cssColour("--emotion-angry", "#dc3b3b") }],
        1, (value) => value.toFixed(1));
      const most = Math.max(1, ...data.groups.map((g) => g.alerts));
      columns(document.getElementById("chart-alerts"), labels,
        SEVERITIES.map(([name, colour]) => ({
          values: data.groups.map((g) => g.alerts_by_severity[name] || 0), colour: colour,
        })),
        most, (value) => String(Math.round(value)));
    };
    drawn.push(draw);
    draw();
    fillTable(document.getElementById("table-time"), week ? "Week from" : "Day", data.groups, data.totals,
      (group) => tableDay.format(asDate(group.key)));
  }

  function showCategory(by, data) {
    const draw = () => bars(document.getElementById("chart-" + by), data.groups);
    drawn.push(draw);
    draw();
    fillTable(document.getElementById("table-" + by), by === "agent" ? "Agent" : "Queue",
      data.groups, data.totals, (group) => callsLink(by, group));
  }

  async function load() {
    const params = filterParams();
    const by = form.elements.by.value === "week" ? "week" : "day";
    try {
      const [time, agents, queues] = await Promise.all([
        Callmood.api("GET", "/api/trends?" + withBy(params, by)),
        Callmood.api("GET", "/api/trends?" + withBy(params, "agent")),
        Callmood.api("GET", "/api/trends?" + withBy(params, "queue")),
      ]);
      // The range the server chose (the last 30 days when none was given) goes into the form.
      form.elements.date_from.value = time.date_from;
      form.elements.date_to.value = time.date_to;
      const ranged = new URLSearchParams(params);
      ranged.set("date_from", time.date_from);
      ranged.set("date_to", time.date_to);
      document.getElementById("csv-time").href = "/api/trends.csv?" + withBy(ranged, by);
      document.getElementById("csv-agent").href = "/api/trends.csv?" + withBy(ranged, "agent");
      document.getElementById("csv-queue").href = "/api/trends.csv?" + withBy(ranged, "queue");
      summary.textContent = time.totals.calls + " call(s) started from " + dayFormat.format(asDate(time.date_from)) +
        " to " + dayFormat.format(asDate(time.date_to)) + ", days in your time zone (" + zone + ").";
      drawn.length = 0;
      showTime(time);
      showCategory("agent", agents);
      showCategory("queue", queues);
      document.getElementById("severity-legend").replaceChildren(...SEVERITIES.map(([name]) => {
        const chip = document.createElement("span");
        chip.className = "badge " + name;
        chip.textContent = name;
        return chip;
      }));
      Callmood.showMessage(errorBox, "");
      document.body.dataset.trendsLoaded = "true";
    } catch (error) {
      summary.textContent = "";
      Callmood.showMessage(errorBox, "Could not load the trends: " + error.message);
      document.body.dataset.trendsLoaded = "error";
    }
  }

  // Changing "per day / week" shows it at once; the other fields wait for "Show".
  form.elements.by.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("by", form.elements.by.value);
    history.replaceState(null, "", url);
    load();
  });
  window.addEventListener("resize", () => drawn.forEach((draw) => draw()));
  load();
})();
