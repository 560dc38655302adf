// The init audio's mel spectrogram on a canvas, and the inpainting mask drawn on it.
//
// The canvas keeps the spectrogram's own grid: one column per mel frame, one row per mel bin
// (row 0 is the highest bin, as mka_core.spectrogram_image draws it). Boxes are stored in
// that grid - frames [f0, f1) and bins [b0, b1] - so what is sent is exactly what is shown:
// seconds f * hop / sample_rate and mel bin indices.
"use strict";

class MaskCanvas {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onChange = onChange;
    this.image = null;
    this.boxes = [];
    this.drag = null;
    this.editable = false;
    this.frequencyBand = false;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", () => { this.drag = null; this.draw(); });
  }

  // info: the upload's analysis (frames, n_mels, hop_length, sample_rate, num_samples, mel_png).
  async load(info) {
    this.info = info;
    this.boxes = [];
    const image = new Image();
    image.src = info.mel_png;
    await image.decode();
    this.image = image;
    // Each frame and bin gets an integer number of pixels, so boxes snap to the grid exactly.
    this.sx = Math.max(1, Math.floor(1200 / info.frames));
    this.sy = Math.max(1, Math.floor(320 / info.n_mels));
    this.canvas.width = info.frames * this.sx;
    this.canvas.height = info.n_mels * this.sy;
    this.draw();
    this.onChange(this.boxes);
  }

  clear() {
    this.boxes = [];
    this.draw();
    this.onChange(this.boxes);
  }

  remove(index) {
    this.boxes.splice(index, 1);
    this.draw();
    this.onChange(this.boxes);
  }

  // Pointer position -> (frame, bin) on the spectrogram grid.
  cell(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    const frame = Math.min(this.info.frames - 1, Math.max(0, Math.floor(x * this.info.frames)));
    const row = Math.min(this.info.n_mels - 1, Math.max(0, Math.floor(y * this.info.n_mels)));
    return { frame, bin: this.info.n_mels - 1 - row };
  }

  down(event) {
    if (!this.editable || !this.image) return;
    this.canvas.setPointerCapture(event.pointerId);
    const at = this.cell(event);
    this.drag = { from: at, to: at };
    this.draw();
  }

  move(event) {
    if (!this.drag) return;
    this.drag.to = this.cell(event);
    this.draw();
  }

  up(event) {
    if (!this.drag) return;
    this.drag.to = this.cell(event);
    this.boxes.push(this.boxOf(this.drag));
    this.drag = null;
    this.draw();
    this.onChange(this.boxes);
  }

  boxOf(drag) {
    const f0 = Math.min(drag.from.frame, drag.to.frame);
    const f1 = Math.max(drag.from.frame, drag.to.frame) + 1;
    if (!this.frequencyBand) return { f0, f1, b0: 0, b1: this.info.n_mels - 1, band: false };
    const b0 = Math.min(drag.from.bin, drag.to.bin);
    const b1 = Math.max(drag.from.bin, drag.to.bin);
    return { f0, f1, b0, b1, band: true };
  }

  // The boxes as the API takes them: seconds (frame edges, the last one clamped to the audio's
  // end) and inclusive mel bins for band boxes.
  apiBoxes() {
    const { hop_length: hop, sample_rate: rate, num_samples: samples } = this.info;
    return this.boxes.map((box) => {
      const out = { start: (box.f0 * hop) / rate, end: Math.min(box.f1 * hop, samples) / rate };
      if (box.band) { out.low_bin = box.b0; out.high_bin = box.b1; }
      return out;
    });
  }

  draw() {
    const { ctx, canvas } = this;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image) return;
    ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    const shapes = this.drag ? [...this.boxes, this.boxOf(this.drag)] : this.boxes;
    for (const box of shapes) {
      const x = box.f0 * this.sx;
      const w = (box.f1 - box.f0) * this.sx;
      const y = (this.info.n_mels - 1 - box.b1) * this.sy;
      const h = (box.b1 - box.b0 + 1) * this.sy;
      ctx.fillStyle = "rgba(255, 255, 255, 0.45)";
      ctx.fillRect(x, y, w, h);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 1, y + 1, Math.max(0, w - 2), Math.max(0, h - 2));
    }
  }
}

window.MaskCanvas = MaskCanvas;
