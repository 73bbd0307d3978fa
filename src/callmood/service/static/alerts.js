// Alerts page: acknowledge / resolve buttons (one alert, or the selected ones at once) call
// the REST API and update the rows in place; filter URLs carry only the fields set.
"use strict";

(function () {
  const message = document.getElementById("message");
  const selectAll = document.getElementById("select-all");
  const acknowledgeSelected = document.getElementById("acknowledge-selected");

  function rowOf(alertId) {
    return document.querySelector('#alerts tr[data-alert-id="' + alertId + '"]');
  }

  function show(alert) {
    const rowElement = rowOf(alert.id);
    if (!rowElement) return;
    const badge = rowElement.querySelector(".badge.state");
    badge.textContent = alert.state;
    badge.className = "badge state " + alert.state;
    rowElement.querySelector(".handled-by").textContent = Callmood.handledBy(alert);
    rowElement.querySelector("button.ack").disabled = alert.state !== "open";
    rowElement.querySelector("button.resolve").disabled = alert.state === "resolved";
    const pick = rowElement.querySelector("input.pick");
    pick.checked = false;
    pick.disabled = alert.state !== "open";
  }

  function picked() {
    return Array.from(document.querySelectorAll("#alerts input.pick:checked"))
      .map((box) => Number(box.closest("tr").dataset.alertId));
  }

  function updateSelection() {
    const count = picked().length;
    acknowledgeSelected.disabled = count === 0;
    acknowledgeSelected.textContent = count ? "Acknowledge selected (" + count + ")" : "Acknowledge selected";
  }

  async function act(button) {
    const alertId = button.closest("tr").dataset.alertId;
    const action = button.dataset.action;
    button.disabled = true;
    try {
      show(await Callmood.api("POST", "/api/alerts/" + alertId + "/" + action));
      Callmood.showMessage(message, "");
    } catch (error) {
      button.disabled = false;
      Callmood.showMessage(message, "Could not " + action + " alert " + alertId + ": " + error.message);
    }
    updateSelection();
  }

  acknowledgeSelected.addEventListener("click", async () => {
    const ids = picked();
    acknowledgeSelected.disabled = true;
    try {
      const alerts = await Callmood.api("POST", "/api/alerts/acknowledge", { ids: ids });
      alerts.forEach(show);
      selectAll.checked = false;
      Callmood.showMessage(message, alerts.length + " alert(s) acknowledged.", "ok");
    } catch (error) {
      Callmood.showMessage(message, "Could not acknowledge the selected alerts: " + error.message);
    }
    updateSelection();
  });

  selectAll.addEventListener("change", () => {
    document.querySelectorAll("#alerts input.pick:not(:disabled)").forEach((box) => {
      box.checked = selectAll.checked;
    });
    updateSelection();
  });
  document.querySelectorAll("#alerts input.pick").forEach((box) => box.addEventListener("change", updateSelection));

  const stateFilter = document.getElementById("state-filter");
  stateFilter.addEventListener("change", () => stateFilter.form.requestSubmit());
  Callmood.omitEmptyFields(document.getElementById("filters"));

  document.querySelectorAll("#alerts button[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(button));
  });

  // Alerts of calls stored meanwhile, from /api/events (the server stores a call's alerts
  // with the call): a banner counts them; "show" swaps in the list as the server renders
  // it now, same filters and page, without reloading.
  const banner = document.getElementById("new-items");
  let freshAlerts = 0;
  function stored(data) {
    if (!data.url || !data.alert_count) return;
    freshAlerts += data.alert_count;
    document.getElementById("new-items-text").textContent =
      freshAlerts + " new alert" + (freshAlerts === 1 ? "" : "s") + " stored since the list was shown.";
    banner.hidden = false;
  }
  async function refreshList() {
    await Callmood.refreshFromServer(["#alerts tbody", "#alert-count"], document.getElementById("alerts-card"));
    document.querySelectorAll("#alerts input.pick").forEach((box) => box.addEventListener("change", updateSelection));
    document.querySelectorAll("#alerts button[data-action]").forEach((button) => {
      button.addEventListener("click", () => act(button));
    });
    selectAll.checked = false;
    updateSelection();
  }
  document.getElementById("new-items-show").addEventListener("click", async () => {
    try {
      await refreshList();
      freshAlerts = 0;
      banner.hidden = true;
    } catch (error) {
      Callmood.showMessage(message, "Could not load the new alerts: " + error.message);
    }
  });
  // Alerts open on calls still in progress (stored with their call when it ends): counted
  // from the snapshot and the alert events, with a link to the live board.
  const liveNote = document.getElementById("live-alerts");
  const liveOpen = new Map();  // call id -> open alerts
  function showLive() {
    let total = 0;
    liveOpen.forEach((count) => { total += count; });
    liveNote.hidden = total === 0;
    liveNote.replaceChildren(total + " alert" + (total === 1 ? "" : "s") + " open on calls in progress: ");
    const link = document.createElement("a");
    link.href = "/board";
    link.textContent = "see the live board";
    liveNote.append(link);
  }
  function liveChange(data) {
    liveOpen.set(data.call_id, data.open_alerts);
    showLive();
  }
  Callmood.events({
    call_stored: stored,
    call_ended: (data) => { liveOpen.delete(data.call_id); showLive(); stored(data); },
    snapshot: (data) => {
      liveOpen.clear();
      data.calls.forEach((call) => liveOpen.set(call.call_id, call.open_alerts));
      showLive();
    },
    alert_opened: liveChange,
    alert_closed: liveChange,
  });
})();
