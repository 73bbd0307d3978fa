// Calls page: drag-and-drop upload with the form's options and a progress bar per file (XHR
// upload events), then poll the analysis job and refresh the list in place when the call is
// stored. The page never reloads itself: that would abort the uploads still in flight and
// wipe the messages of rejected files. Leaving while a file is still uploading asks first.
"use strict";

(function () {
  const dropzone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("uploads");
  const POLL_MILLISECONDS = 1000;
  const options = {
    name: document.getElementById("upload-name"),
    tags: document.getElementById("upload-tags"),
    agent: document.getElementById("upload-agent"),
    queue: document.getElementById("upload-queue"),
    channels: document.getElementById("upload-channels"),
    mono: document.getElementById("upload-mono"),
    analyzeAgent: document.getElementById("upload-analyze-agent"),
  };
  let uploading = 0;  // requests whose body the server has not received yet

  // Negativity bars: the width is set here, since the CSP refuses inline style attributes.
  function fillMeters(root) {
    root.querySelectorAll(".meter[data-fill]").forEach((meter) => {
      meter.firstElementChild.style.width = meter.dataset.fill + "%";
    });
  }
  fillMeters(document);
  Callmood.localTimes(document);
  Callmood.omitEmptyFields(document.getElementById("filters"));

  // A mixed (mono) recording has no channels to order and no separate agent to analyse.
  options.mono.addEventListener("change", () => {
    options.channels.disabled = options.mono.checked;
    options.analyzeAgent.disabled = options.mono.checked;
  });

  window.addEventListener("beforeunload", (event) => {
    if (uploading > 0) {
      event.preventDefault();
      event.returnValue = "";  // older browsers need it set to ask
    }
  });

  // The list as the server renders it now (same URL: same filters and page), swapped in.
  async function refreshList() {
    try {
      await Callmood.refreshFromServer(["#calls tbody", "#count"], document.querySelector("#calls").closest(".table-scroll"));
      fillMeters(document.getElementById("calls"));
      Callmood.localTimes(document.getElementById("calls"));
    } catch (error) {
      // The list stays as it was; the upload's own link still leads to the call.
    }
  }

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
        await refreshList();
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

  // The form fields of the upload API (see UploadOptions), from the options fieldset.
  function formFields(file, count) {
    const fields = {};
    const name = options.name.value.trim();
    if (name) fields.name = count > 1 ? name + " (" + file.name + ")" : name;
    if (options.tags.value.trim()) fields.tags = options.tags.value;
    if (options.agent.value.trim()) fields.agent = options.agent.value.trim();
    if (options.queue.value.trim()) fields.queue = options.queue.value.trim();
    if (options.mono.checked) {
      fields.mono = "true";
    } else {
      if (options.channels.value === "swapped") {
        fields.customer_channel = "1";
        fields.agent_channel = "0";
      }
      if (options.analyzeAgent.checked) fields.analyze_agent = "true";
    }
    return fields;
  }

  function upload(file, fields) {
    const view = row(file);
    const form = new FormData();
    // Fields first: the server reads the form as a stream, options before the file.
    Object.entries(fields).forEach(([name, value]) => form.append(name, value));
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/calls");
    Object.entries(Callmood.csrfHeaders()).forEach(([name, value]) => request.setRequestHeader(name, value));
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) view.bar.value = Math.round((event.loaded / event.total) * 100);
    });
    uploading += 1;
    request.addEventListener("loadend", () => { uploading -= 1; });
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
    request.addEventListener("abort", () => fail(view, "upload cancelled: nothing was stored"));
    request.send(form);
  }

  function uploadAll(files) {
    const chosen = Array.from(files);
    chosen.forEach((file) => upload(file, formFields(file, chosen.length)));
  }

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

  // Calls stored meanwhile (uploads elsewhere, live calls ending), from /api/events: a
  // banner offers them; "show" refreshes the list in place with the page's filters, so
  // uploads in flight and the filter form are left alone.
  const fresh = new Set();
  const banner = document.getElementById("new-items");
  function showBanner() {
    for (const callId of fresh) {
      if (document.querySelector('#calls tr[data-call-id="' + callId + '"]')) fresh.delete(callId);
    }
    banner.hidden = fresh.size === 0;
    document.getElementById("new-items-text").textContent =
      fresh.size + " new call" + (fresh.size === 1 ? "" : "s") + " stored since the list was shown.";
  }
  function stored(data) {
    if (!data.url) return;  // a live call that stored nothing
    fresh.add(data.call_id);
    showBanner();
  }
  document.getElementById("new-items-show").addEventListener("click", async () => {
    await refreshList();
    fresh.clear();
    showBanner();
  });
  // The upload flow refreshes the list too: a call it brought in is no longer new.
  const listShown = refreshList;
  refreshList = async function () {
    await listShown();
    showBanner();
  };
  Callmood.events({ call_stored: stored, call_ended: stored });
})();
