// Call-detail page: the emotion timeline per speaker and the probability curves (zoomed and
// panned together, values on hover), a cursor that follows the audio player (alerts and the
// timeline seek it; ?t=<seconds> starts there), alert buttons, and rename/retag/delete.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("call-data").textContent);
  const player = document.getElementById("player");
  const message = document.getElementById("message");
  const callId = location.pathname.split("/").pop();

  function seek(seconds, play) {
    if (player) {
      player.currentTime = seconds;
      if (play !== false) player.play().catch(() => {});  // autoplay may be refused; the cursor still moves
    }
    timeline.setCursor(seconds);
    curves.setCursor(seconds);
  }

  const zoomRange = document.getElementById("zoom-range");
  function showView(view) {
    // Both drawings show the same part of the call.
    timeline.view = view;
    curves.view = view;
    timeline.draw();
    curves.draw();
    zoomRange.textContent = view
      ? "showing " + Callmood.formatSeconds(view[0]) + "–" + Callmood.formatSeconds(view[1]) +
        " of " + Callmood.formatSeconds(data.duration)
      : "";
  }

  Callmood.legend(document.getElementById("legend"), data.labels);
  const timeline = new Callmood.Timeline(document.getElementById("timeline"), data.speakers, {
    duration: data.duration,
    onSeek: seek,
    onView: showView,
    tip: document.getElementById("timeline-tip"),
  });
  timeline.windows = data.windows;
  timeline.speech = data.speech;
  timeline.alerts = data.alerts;
  timeline.draw();

  const curves = new Callmood.ProbabilityCurves(document.getElementById("curves"), data.labels, {
    duration: data.duration,
    onSeek: seek,
    onView: showView,
    tip: document.getElementById("curves-tip"),
  });
  curves.setWindows(data.windows.filter((item) => item.speaker === data.curve_speaker));

  document.getElementById("zoom-in").addEventListener("click", () => timeline.zoom(0.5, timeline.cursor));
  document.getElementById("zoom-out").addEventListener("click", () => timeline.zoom(2, timeline.cursor));
  document.getElementById("zoom-reset").addEventListener("click", () => timeline.setView(null, true));

  if (player) {
    let frame = null;
    const follow = () => {
      timeline.setCursor(player.currentTime);
      curves.setCursor(player.currentTime);
      frame = player.paused ? null : requestAnimationFrame(follow);
    };
    player.addEventListener("play", () => { if (frame === null) frame = requestAnimationFrame(follow); });
    player.addEventListener("seeked", follow);
    player.addEventListener("timeupdate", () => { if (frame === null) follow(); });
  }

  for (const link of document.querySelectorAll("a.jump")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      seek(parseFloat(link.dataset.time));
    });
  }

  // A link from the alerts page names the moment the alert began.
  const start = parseFloat(new URLSearchParams(location.search).get("t"));
  if (isFinite(start) && start >= 0) seek(Math.min(start, data.duration), false);

  // ------------------------------------------------------------ alerts
  for (const button of document.querySelectorAll("#alerts button[data-action]")) {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      const action = button.dataset.action;
      button.disabled = true;
      try {
        const alert = await Callmood.api("POST", "/api/alerts/" + row.dataset.alertId + "/" + action);
        const badge = row.querySelector(".badge.state");
        badge.textContent = alert.state;
        badge.className = "badge state " + alert.state;
        row.querySelector(".handled-by").textContent = Callmood.handledBy(alert);
        row.querySelector("button.ack").disabled = alert.state !== "open";
        row.querySelector("button.resolve").disabled = alert.state === "resolved";
        Callmood.showMessage(message, "");
      } catch (error) {
        button.disabled = false;
        Callmood.showMessage(message, "Could not " + action + " the alert: " + error.message);
      }
    });
  }

  // ------------------------------------------------------------ rename, retag, delete
  const editForm = document.getElementById("edit-form");
  editForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("edit-name").value.trim();
    const tags = document.getElementById("edit-tags").value.split(",").map((tag) => tag.trim()).filter(Boolean);
    try {
      const call = await Callmood.api("PATCH", "/api/calls/" + callId, { name: name, tags: tags });
      document.getElementById("call-name").textContent = call.name;
      document.title = call.name + " · callmood";
      document.getElementById("call-tags").replaceChildren(...call.tags.map((tag) => {
        const badge = document.createElement("span");
        badge.className = "badge small";
        badge.textContent = tag;
        return badge;
      }));
      document.getElementById("edit-tags").value = call.tags.join(", ");
      Callmood.showMessage(message, "Saved.", "ok");
    } catch (error) {
      Callmood.showMessage(message, "Could not save: " + error.message);
    }
  });

  document.getElementById("delete-call").addEventListener("click", async () => {
    const name = document.getElementById("call-name").textContent;
    if (!window.confirm("Delete the call “" + name + "”, its analysis, alerts and recording? This cannot be undone.")) return;
    try {
      await Callmood.api("DELETE", "/api/calls/" + callId);
      location.assign("/calls");
    } catch (error) {
      Callmood.showMessage(message, "Could not delete the call: " + error.message);
    }
  });
})();
