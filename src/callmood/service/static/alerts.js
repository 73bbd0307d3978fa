// Alerts page: acknowledge / resolve buttons call the REST API and update the row in place.
"use strict";

(function () {
  const message = document.getElementById("message");

  async function act(button) {
    const rowElement = button.closest("tr");
    const alertId = rowElement.dataset.alertId;
    const action = button.dataset.action;
    button.disabled = true;
    try {
      const alert = await Callmood.api("POST", "/api/alerts/" + alertId + "/" + action);
      const badge = rowElement.querySelector(".badge.state");
      badge.textContent = alert.state;
      badge.className = "badge state " + alert.state;
      rowElement.querySelector("button.ack").disabled = alert.state !== "open";
      rowElement.querySelector("button.resolve").disabled = alert.state === "resolved";
      Callmood.showMessage(message, "");
    } catch (error) {
      button.disabled = false;
      Callmood.showMessage(message, "Could not " + action + " alert " + alertId + ": " + error.message);
    }
  }

  const stateFilter = document.getElementById("state-filter");
  stateFilter.addEventListener("change", () => stateFilter.form.submit());

  document.querySelectorAll("#alerts button[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(button));
  });
})();
