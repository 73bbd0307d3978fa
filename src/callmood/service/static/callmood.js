// Shared helpers of the dashboard pages: emotion colours (read from the CSS custom
// properties in callmood.css, so pages and canvases agree), time formatting, and API calls.
"use strict";

window.Callmood = (function () {
  const colourCache = {};

  function emotionColour(emotion) {
    if (!(emotion in colourCache)) {
      const value = getComputedStyle(document.documentElement)
        .getPropertyValue("--emotion-" + emotion)
        .trim();
      colourCache[emotion] = value || getComputedStyle(document.documentElement)
        .getPropertyValue("--emotion-unknown").trim() || "#cccccc";
    }
    return colourCache[emotion];
  }

  // m:ss, h:mm:ss from an hour, in whole seconds cut down: the rule of the audio player and
  // of the server-rendered pages (pages.py _duration), so one call shows one duration.
  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds) || !isFinite(seconds)) return "–";
    const whole = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const rest = String(whole % 60).padStart(2, "0");
    return hours ? hours + ":" + String(minutes).padStart(2, "0") + ":" + rest : minutes + ":" + rest;
  }

  // <time datetime="ISO" data-local> elements, rendered in UTC by the server (which does not
  // know the viewer's zone), shown in the browser's time zone and locale instead.
  const localFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  function localTimes(root) {
    (root || document).querySelectorAll("time[data-local]").forEach((element) => {
      const moment = new Date(element.dateTime);
      if (!isNaN(moment)) element.textContent = localFormat.format(moment);
    });
  }

  // A filter form sends only the fields that are set, so its URLs stay short and readable
  // (empty fields are disabled while submitting, enabled again when the page is shown).
  function omitEmptyFields(form) {
    if (!form) return;
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if (field.name && field.value === "") field.disabled = true;
      }
    });
    window.addEventListener("pageshow", () => {
      for (const field of form.elements) if (field.name) field.disabled = false;
    });
  }

  // A canvas sized to its CSS width and `cssHeight`, drawn at device resolution so lines
  // stay crisp on high-DPI screens; its 2D context works in CSS pixels.
  function prepareCanvas(canvas, cssHeight) {
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || canvas.parentElement.clientWidth || 800;
    canvas.style.height = cssHeight + "px";
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { context, width: cssWidth, height: cssHeight };
  }

  function emotionChip(emotion) {
    const chip = document.createElement("span");
    chip.className = "badge emotion emotion-" + emotion;
    chip.textContent = emotion;
    return chip;
  }

  function legend(container, labels) {
    container.replaceChildren(...labels.map(emotionChip));
  }

  // The login session's CSRF token (the page's <meta name="csrf-token">): the API refuses
  // a cookie-authenticated change without it, so other sites cannot make one.
  function csrfHeaders() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? { "X-CSRF-Token": meta.content } : {};
  }

  // JSON request to the REST API; the dashboard's login session cookie authenticates it.
  async function api(method, url, body) {
    const headers = { Accept: "application/json", ...csrfHeaders() };
    const options = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let payload = null;
    const text = await response.text();
    try { payload = text ? JSON.parse(text) : null; } catch (error) { payload = { detail: text }; }
    if (!response.ok) {
      const detail = payload && payload.detail !== undefined ? payload.detail : response.statusText;
      const message = typeof detail === "string" ? detail : JSON.stringify(detail, null, 2);
      const failure = new Error(message);
      failure.status = response.status;
      throw failure;
    }
    return payload;
  }

  function showMessage(element, text, kind) {
    element.textContent = text;
    element.className = "message " + (kind || "error");
    element.hidden = !text;
  }

  // Who acknowledged and resolved an alert (/api/alerts' *_by), as the pages say it.
  function handledBy(alert) {
    const parts = [];
    if (alert.acknowledged_by) parts.push("acknowledged by " + alert.acknowledged_by);
    if (alert.resolved_by) parts.push("resolved by " + alert.resolved_by);
    return parts.join(" · ");
  }

  // A list as the server renders it now (same URL: same filters and page) swapped in: each
  // of `selectors` replaced, and the pager (#pager) moved after `pagerAfter`. Throws when
  // the server cannot be reached; a refused request leaves the page as it was.
  async function refreshFromServer(selectors, pagerAfter) {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const selector of selectors) {
      const now = document.querySelector(selector);
      const next = fresh.querySelector(selector);
      if (now && next) now.replaceWith(next);
    }
    const pager = document.getElementById("pager");
    const freshPager = fresh.getElementById("pager");
    if (pager) pager.remove();
    if (freshPager) pagerAfter.after(freshPager);
  }

  // The server's push stream (/api/events, server-sent events): `handlers` maps event names
  // to functions of the parsed data, plus optional `open` and `error`. EventSource reconnects
  // by itself after a dropped connection; after a refused one (the server restarting answers
  // 502/503, or nothing) it gives up, so this opens a new one a little later.
  function events(handlers) {
    let source = null;
    function connect() {
      source = new EventSource("/api/events");
      Object.entries(handlers).forEach(([name, handle]) => {
        if (name === "open" || name === "error") return;
        source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
      });
      source.addEventListener("open", () => { if (handlers.open) handlers.open(); });
      source.addEventListener("error", () => {
        if (handlers.error) handlers.error();
        if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
      });
    }
    connect();
    window.addEventListener("pagehide", () => source && source.close());
    return { close: () => source && source.close() };
  }

  return {
    emotionColour, formatSeconds, localTimes, omitEmptyFields, prepareCanvas, emotionChip, legend, csrfHeaders, api,
    showMessage, handledBy, events, refreshFromServer,
  };
})();
