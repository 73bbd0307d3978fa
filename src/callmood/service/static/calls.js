// Calls page: drag-and-drop upload with a progress bar per file (XHR upload events),
// then poll the analysis job and reload the list when the call is stored.
"use strict";

(function () {
  const dropzone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("uploads");
  const POLL_MILLISECONDS = 1000;

  // Negativity bars: the width is set here, since the CSP refuses inline style attributes.
  document.querySelectorAll(".meter[data-fill]").forEach((meter) => {
    meter.firstElementChild.style.width = meter.dataset.fill + "%";
  });

  function row(file) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    const state = document.createElement("span");
    state.className = "small muted upload-state";
    state.textContent = "uploading…";
    item.append(name, bar, state);
    list.append(item);
    return { item, bar, state };
  }

  function fail(view, text) {
    view.state.textContent = text;
    view.state.className = "small upload-state message error";
    view.bar.hidden = true;
  }

  async function follow(view, statusUrl) {
    for (;;) {
      let job;
      try {
        job = await Callmood.api("GET", statusUrl);
      } catch (error) {
        fail(view, "cannot read the job: " + error.message);
        return;
      }
      if (job.state === "done") {
        view.state.replaceChildren();
        const link = document.createElement("a");
        link.href = "/calls/" + job.call_id;
        link.textContent = "analysed: open";
        view.state.append(link);
        view.state.className = "small upload-state done";
        setTimeout(() => location.reload(), 800);
        return;
      }
      if (job.state === "failed") {
        fail(view, "analysis failed: " + (job.error || "unknown error"));
        return;
      }
      view.state.textContent = job.state === "running" ? "analysing…" : "queued…";
      await new Promise((resolve) => setTimeout(resolve, POLL_MILLISECONDS));
    }
  }

  function upload(file) {
    const view = row(file);
    const form = new FormData();
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/calls");
    Object.entries(Callmood.csrfHeaders()).forEach(([name, value]) => request.setRequestHeader(name, value));
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) view.bar.value = Math.round((event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status >= 200 && request.status < 300) {
        view.bar.value = 100;
        view.state.textContent = "queued…";
        follow(view, body.status_url || "/api/jobs/" + body.job_id);
      } else {
        const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || request.statusText);
        fail(view, "rejected: " + detail);
      }
    });
    request.addEventListener("error", () => fail(view, "upload failed: the server did not answer"));
    request.send(form);
  }

  function uploadAll(files) { Array.from(files).forEach(upload); }

  ["dragenter", "dragover"].forEach((kind) => dropzone.addEventListener(kind, (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => dropzone.addEventListener(kind, (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
  }));
  dropzone.addEventListener("drop", (event) => uploadAll(event.dataTransfer.files));
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
})();
