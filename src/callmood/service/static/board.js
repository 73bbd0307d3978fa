// Live board: a tile per call in progress, from the server's push stream (/api/events).
// The stream opens with a snapshot of every call in progress (and sends one again after a
// reconnect or a resync), so the tiles shown are always the server's; events in between
// add, update and end tiles. Talk time ticks here between updates.
"use strict";

(function () {
  const board = document.getElementById("board");
  const status = document.getElementById("board-status");
  const empty = document.getElementById("board-empty");
  const HISTORY_SECONDS = 120;  // sparkline span, call time (as the server keeps it)
  const ENDED_MILLISECONDS = 10000;  // how long an ended call's tile stays, marked ended
  const tiles = new Map();  // call id -> { element, parts, call, receivedAt, ended }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function makeTile(call) {
    const root = element("article", "tile");
    root.dataset.callId = call.call_id;
    const parts = {
      name: element("div", "tile-name"),
      who: element("div", "tile-who"),
      emotion: element("span", "badge emotion emotion-unknown", "–"),
      time: element("span", "tile-time"),
      sparkline: element("canvas", "sparkline"),
      negativity: element("span", "small muted tile-negativity"),
      alertCount: element("span", "badge none tile-alert-count", "0"),
      alerts: element("div", "tile-alerts"),
      state: element("div", "small tile-state"),
    };
    parts.sparkline.setAttribute("aria-label", "customer negativity, last two minutes");
    const top = element("div", "tile-row");
    top.append(parts.emotion, parts.time);
    const middle = element("div", "tile-row");
    middle.append(parts.negativity, parts.alertCount);
    root.append(parts.name, parts.who, top, parts.sparkline, middle, parts.alerts, parts.state);
    board.prepend(root);
    return { element: root, parts: parts, call: { history: [] }, receivedAt: Date.now(), ended: false };
  }

  function upsert(call) {
    let tile = tiles.get(call.call_id);
    if (!tile) {
      tile = makeTile(call);
      tiles.set(call.call_id, tile);
    }
    tile.call = Object.assign({}, tile.call, call, { history: (call.history || tile.call.history).slice() });
    tile.receivedAt = Date.now();
    render(tile);
    showEmpty();
  }

  function update(data) {
    const tile = tiles.get(data.call_id);
    if (!tile || tile.ended) return;
    const history = tile.call.history.concat(data.points || []);
    const latest = history.length ? history[history.length - 1][0] : 0;
    Object.assign(tile.call, data, { history: history.filter((point) => point[0] >= latest - HISTORY_SECONDS) });
    tile.receivedAt = Date.now();
    render(tile);
  }

  function render(tile) {
    const call = tile.call;
    const parts = tile.parts;
    parts.name.textContent = call.name;
    const who = [call.agent && "agent " + call.agent, call.queue && "queue " + call.queue].filter(Boolean);
    parts.who.textContent = who.join(" · ");
    parts.who.hidden = who.length === 0;
    const emotion = call.emotion || "unknown";
    parts.emotion.className = "badge emotion emotion-" + emotion;
    parts.emotion.textContent = call.emotion ? call.emotion + (call.confidence ? " " + Math.round(call.confidence * 100) + "%" : "") : "listening…";
    parts.negativity.textContent = call.negativity === null || call.negativity === undefined
      ? "negativity –" : "negativity " + call.negativity.toFixed(2);
    const open = call.open_alerts || 0;
    parts.alertCount.textContent = open + " open alert" + (open === 1 ? "" : "s");
    parts.alertCount.className = "badge tile-alert-count " + (open ? "alerts" : "none");
    parts.alerts.textContent = (call.alerts || []).map((alert) => alert.message).join("; ");
    tile.element.classList.toggle("has-alerts", open > 0);
    tick(tile);
    drawSparkline(parts.sparkline, call.history);
  }

  function tick(tile) {
    const running = tile.ended ? 0 : (Date.now() - tile.receivedAt) / 1000;
    tile.parts.time.textContent = Callmood.formatSeconds((tile.call.call_seconds || 0) + running);
  }

  function drawSparkline(canvas, history) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 240;
    const height = canvas.clientHeight || 40;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    context.strokeStyle = "#e4e7eb";
    context.beginPath();
    context.moveTo(0, height - 0.5);
    context.lineTo(width, height - 0.5);
    context.stroke();
    if (!history.length) return;
    const latest = history[history.length - 1][0];
    const x = (at) => width - ((latest - at) / HISTORY_SECONDS) * width;
    const y = (value) => height - 2 - value * (height - 4);
    context.strokeStyle = Callmood.emotionColour("angry");
    context.lineWidth = 1.5;
    context.beginPath();
    history.forEach(([at, value], index) => {
      if (index === 0) context.moveTo(x(at), y(value));
      else context.lineTo(x(at), y(value));
    });
    if (history.length === 1) context.lineTo(x(latest) - 2, y(history[0][1]));
    context.stroke();
  }

  function end(data) {
    const tile = tiles.get(data.call_id);
    if (!tile || tile.ended) return;
    tick(tile);
    tile.ended = true;
    tile.element.classList.add("ended");
    tile.parts.state.replaceChildren();
    if (data.url) {
      const link = element("a", "", "ended: open the stored call");
      link.href = data.url;
      tile.parts.state.append(link);
    } else {
      tile.parts.state.textContent = "ended (nothing stored)";
    }
    setTimeout(() => {
      if (tiles.get(data.call_id) === tile) tiles.delete(data.call_id);
      tile.element.remove();
      showEmpty();
    }, ENDED_MILLISECONDS);
  }

  function snapshot(data) {
    const current = new Set(data.calls.map((call) => call.call_id));
    for (const [callId, tile] of tiles) {
      // A call that ended while the board was away: its tile just goes.
      if (!current.has(callId) && !tile.ended) {
        tile.element.remove();
        tiles.delete(callId);
      }
    }
    data.calls.forEach(upsert);
    showEmpty();
  }

  function showEmpty() {
    empty.hidden = tiles.size > 0;
  }

  function alertChange(data) {
    const tile = tiles.get(data.call_id);
    if (!tile || tile.ended) return;
    const others = (tile.call.alerts || []).filter((alert) => alert.id !== data.alert.id);
    tile.call.alerts = data.open_alerts > others.length ? others.concat([data.alert]) : others;
    tile.call.open_alerts = data.open_alerts;
    render(tile);
  }

  setInterval(() => tiles.forEach((tile) => { if (!tile.ended) tick(tile); }), 1000);
  window.addEventListener("resize", () => tiles.forEach((tile) => drawSparkline(tile.parts.sparkline, tile.call.history)));

  Callmood.events({
    open: () => { status.hidden = true; },
    error: () => {
      status.hidden = false;
      status.textContent = "Connection to the server lost: reconnecting…";
    },
    snapshot: snapshot,
    call_started: upsert,
    call_updated: update,
    alert_opened: alertChange,
    alert_closed: alertChange,
    call_ended: end,
  });
})();
