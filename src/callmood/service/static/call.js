// Call-detail page: the emotion timeline per speaker, probability curves, and a cursor
// that follows the audio player; alerts and the timeline seek the player.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("call-data").textContent);
  const player = document.getElementById("player");

  function seek(seconds) {
    if (player) {
      player.currentTime = seconds;
      player.play().catch(() => {});  // autoplay may be refused; the cursor still moves
    }
    timeline.setCursor(seconds);
    curves.setCursor(seconds);
  }

  Callmood.legend(document.getElementById("legend"), data.labels);
  const timeline = new Callmood.Timeline(document.getElementById("timeline"), data.speakers, {
    duration: data.duration,
    onSeek: seek,
  });
  timeline.windows = data.windows;
  timeline.speech = data.speech;
  timeline.alerts = data.alerts;
  timeline.draw();

  const curves = new Callmood.ProbabilityCurves(document.getElementById("curves"), data.labels, {
    duration: data.duration,
  });
  curves.setWindows(data.windows.filter((item) => item.speaker === data.curve_speaker));

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
})();
