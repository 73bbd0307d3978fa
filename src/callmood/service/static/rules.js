// Rules page: load the rules YAML from the API, save it back, and show the server's
// validation errors (which name the rule and field) when it refuses them.
"use strict";

(function () {
  const editor = document.getElementById("rules-yaml");
  const message = document.getElementById("message");

  async function request(method, body) {
    const response = await fetch("/api/rules?format=yaml", {
      method: method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "Content-Type": "application/yaml", ...Callmood.csrfHeaders() },
      body: body,
    });
    const text = await response.text();
    if (!response.ok) {
      let detail = text;
      try { detail = JSON.parse(text).detail; } catch (error) { /* plain text */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail, null, 2));
    }
    return text;
  }

  async function load() {
    try {
      editor.value = await request("GET");
      Callmood.showMessage(message, "");
    } catch (error) {
      Callmood.showMessage(message, "Cannot load the rules: " + error.message);
    }
  }

  async function save() {
    try {
      await request("PUT", editor.value);
      editor.value = await request("GET");
      Callmood.showMessage(message, "Saved. Calls analysed from now on use these rules.", "ok");
    } catch (error) {
      Callmood.showMessage(message, "Not saved: " + error.message);
    }
  }

  document.getElementById("save").addEventListener("click", save);
  document.getElementById("reload").addEventListener("click", load);
  load();
})();
