// Live page: capture the microphone, send 16-bit PCM over the /api/stream WebSocket,
// and draw the window results and alert banners the server pushes back.
"use strict";

(function () {
  const startButton = document.getElementById("start");
  const stopButton = document.getElementById("stop");
  const status = document.getElementById("status");
  const message = document.getElementById("message");
  const banners = document.getElementById("banners");
  const current = document.getElementById("current-emotion");
  const currentDetail = document.getElementById("current-detail");
  const summary = document.getElementById("summary");
  // From the script tag's data attribute: the CSP allows no inline script to set it.
  const workletUrl = document.currentScript.dataset.workletUrl;

  let socket = null;
  let audioContext = null;
  let microphone = null;
  let timeline = null;
  let curves = null;

  function setStatus(text) { status.textContent = text; }

  function resetView(labels) {
    Callmood.legend(document.getElementById("legend"), labels);
    timeline = new Callmood.Timeline(document.getElementById("timeline"), ["customer"], { duration: 30 });
    curves = new Callmood.ProbabilityCurves(document.getElementById("curves"), labels, { duration: 30 });
    timeline.draw();
    curves.draw();
    banners.replaceChildren();
    summary.hidden = true;
  }

  function showWindow(result) {
    timeline.addWindow(result);
    curves.addWindow(result);
    current.textContent = result.emotion;
    current.className = "current-emotion badge emotion emotion-" + result.emotion;
    currentDetail.textContent = "confidence " + Math.round(result.confidence * 100) + " %, " +
      Callmood.formatSeconds(result.start) + "–" + Callmood.formatSeconds(result.end);
  }

  function showAlert(msg) {
    const id = "alert-" + msg.alert.id.replace(/[^A-Za-z0-9_-]/g, "_");
    let banner = document.getElementById(id);
    if (!banner) {
      banner = document.createElement("div");
      banner.id = id;
      banners.prepend(banner);
    }
    const open = msg.event === "open";
    banner.className = "alert-banner " + (open ? "open" : "closed");
    banner.textContent = (open ? "Alert: " : "Alert closed: ") + msg.alert.message +
      " (" + msg.alert.severity + ", from " + Callmood.formatSeconds(msg.alert.opened_at) +
      (open ? ")" : " to " + Callmood.formatSeconds(msg.alert.closed_at) + ")");
    timeline.setAlerts(timeline.alerts.filter((a) => a.id !== msg.alert.id).concat([msg.alert]));
  }

  function showSummary(msg) {
    summary.hidden = false;
    const link = document.createElement("a");
    link.href = msg.url;
    link.textContent = "Open the stored call";
    summary.replaceChildren(
      document.createTextNode("Stream ended: " + Callmood.formatSeconds(msg.duration_seconds) +
        " analysed, " + msg.alert_count + " alert(s). "),
      link,
    );
  }

  async function stopAudio() {
    if (microphone) microphone.getTracks().forEach((track) => track.stop());
    if (audioContext) await audioContext.close().catch(() => {});
    microphone = null;
    audioContext = null;
  }

  async function start() {
    Callmood.showMessage(message, "");
    startButton.disabled = true;
    try {
      microphone = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      // 16 kHz is what the model uses; the browser resamples the microphone for us.
      try {
        audioContext = new AudioContext({ sampleRate: 16000 });
      } catch (error) {
        audioContext = new AudioContext();
      }
      await audioContext.audioWorklet.addModule(workletUrl);
    } catch (error) {
      await stopAudio();
      startButton.disabled = false;
      Callmood.showMessage(message, "Cannot use the microphone: " + error.message);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/api/stream");
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      socket.send(JSON.stringify({
        type: "start",
        sample_rate: audioContext.sampleRate,
        encoding: "pcm16",
        channels: ["customer"],
        name: document.getElementById("call-name").value || "Live call",
        tags: ["live"],
      }));
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") {
        resetView(msg.labels);
        const source = audioContext.createMediaStreamSource(microphone);
        const encoder = new AudioWorkletNode(audioContext, "pcm-encoder");
        encoder.port.onmessage = (block) => {
          if (socket && socket.readyState === WebSocket.OPEN) socket.send(block.data);
        };
        source.connect(encoder);
        stopButton.disabled = false;
        setStatus("Streaming at " + audioContext.sampleRate + " Hz…");
      } else if (msg.type === "window") {
        showWindow(msg);
      } else if (msg.type === "alert") {
        showAlert(msg);
      } else if (msg.type === "summary") {
        showSummary(msg);
      } else if (msg.type === "error") {
        Callmood.showMessage(message, "Server: " + msg.message);
      }
    };
    socket.onclose = async (event) => {
      await stopAudio();
      socket = null;
      startButton.disabled = false;
      stopButton.disabled = true;
      setStatus(event.code === 1000 ? "Stopped; the call is saved." : "Disconnected (code " + event.code + ").");
    };
    socket.onerror = () => Callmood.showMessage(message, "The connection to the server failed.");
  }

  async function stop() {
    stopButton.disabled = true;
    await stopAudio();
    if (socket && socket.readyState === WebSocket.OPEN) {
      setStatus("Finishing the analysis…");
      socket.send(JSON.stringify({ type: "stop" }));
    }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
})();
