// The recorder's tap on the audio thread (an AudioWorklet module, loaded by recorder.js from this
// server, so the page's Content-Security-Policy "script-src 'self'" allows it).
//
// It copies the first input channel, block by block, to the page. The node is created with one
// input channel in "explicit" mode, so a stereo microphone arrives already mixed down to mono.
// Blocks are gathered into 4096-sample messages; on "stop" it sends what it still holds, then
// "stopped": the port delivers messages in order, so the page has every sample up to the stop.
"use strict";

const BATCH = 4096;

class RecorderTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buffer = new Float32Array(BATCH);
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "stop") {
        this.flush();
        this.stopped = true;
        this.port.postMessage("stopped");
      }
    };
  }

  flush() {
    if (this.filled > 0) {
      this.port.postMessage(this.buffer.slice(0, this.filled));
      this.filled = 0;
    }
  }

  process(inputs) {
    if (this.stopped) return false;
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const count = Math.min(channel.length - offset, BATCH - this.filled);
        this.buffer.set(channel.subarray(offset, offset + count), this.filled);
        this.filled += count;
        offset += count;
        if (this.filled === BATCH) this.flush();
      }
    }
    return true;
  }
}

registerProcessor("mka-recorder-tap", RecorderTap);
