// Recording from the microphone straight to 16-bit PCM WAV, the one format every mka install
// reads (MediaRecorder would give WebM/Opus, which libsndfile does not). The samples are taken
// on the audio thread by an AudioWorklet (recorder-worklet.js), mono, at the context's rate.
"use strict";

const WORKLET_URL = "/static/recorder-worklet.js";

class WavRecorder {
  constructor() {
    this.chunks = [];
    this.stream = null;
    this.context = null;
  }

  static available() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.isSecureContext
      && window.AudioWorkletNode);
  }

  async start() {
    this.chunks = [];
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.context = new AudioContext();
    try {
      await this.context.audioWorklet.addModule(WORKLET_URL);
    } catch (error) {
      await this.release();
      throw error;
    }
    this.source = this.context.createMediaStreamSource(this.stream);
    // One input channel, mixed down from whatever the microphone gives (as the recorder always did).
    this.tap = new AudioWorkletNode(this.context, "mka-recorder-tap", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
    });
    this.stopped = new Promise((resolve) => {
      this.tap.port.onmessage = (event) => {
        if (event.data === "stopped") resolve();
        else this.chunks.push(event.data);
      };
    });
    this.source.connect(this.tap);
    // The tap outputs silence; connecting it keeps the graph rendering it in every browser.
    this.tap.connect(this.context.destination);
  }

  // Stops recording and returns the take as a WAV Blob.
  async stop() {
    this.tap.port.postMessage("stop");
    // Every block recorded before the stop arrives before "stopped" (a suspended context would
    // never answer: give up waiting after a second and keep what arrived).
    await Promise.race([this.stopped, new Promise((resolve) => setTimeout(resolve, 1000))]);
    this.source.disconnect();
    this.tap.disconnect();
    const rate = this.context.sampleRate;
    await this.release();
    return encodeWav(this.chunks, rate);
  }

  async release() {
    this.stream.getTracks().forEach((track) => track.stop());
    if (this.context.state !== "closed") await this.context.close();
  }
}

function encodeWav(chunks, sampleRate) {
  const count = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const buffer = new ArrayBuffer(44 + count * 2);
  const view = new DataView(buffer);
  const text = (offset, value) => { for (let i = 0; i < value.length; i++) view.setUint8(offset + i, value.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + count * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true); view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, count * 2, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) {
      const s = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([buffer], { type: "audio/wav" });
}

window.WavRecorder = WavRecorder;
