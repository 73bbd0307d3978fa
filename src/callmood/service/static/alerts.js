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
})();
