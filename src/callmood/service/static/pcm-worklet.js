// AudioWorklet that turns the microphone's float samples into 16-bit PCM blocks of
// about 100 ms, posted to the page, which sends each as one binary WebSocket frame.
"use strict";

class PcmEncoder extends AudioWorkletProcessor {
  constructor() {
    super();
    // sampleRate is the AudioContext's rate, a global inside the worklet scope.
    this.blockSamples = Math.round(sampleRate / 10);
    this.block = new Int16Array(this.blockSamples);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const clipped = Math.max(-1, Math.min(1, channel[i]));
      this.block[this.filled++] = clipped < 0 ? clipped * 32768 : clipped * 32767;
      if (this.filled === this.blockSamples) {
        this.port.postMessage(this.block.buffer, [this.block.buffer]);
        this.block = new Int16Array(this.blockSamples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-encoder", PcmEncoder);
