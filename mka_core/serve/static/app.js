// The mka serve page: builds its controls from /api/info (so a pip-installed plugin's
// conditioners and tasks appear by themselves), uploads files, submits jobs, polls progress
// and shows results and the session's history. Text from the server is only ever set as
// textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, inputUpload: null, initUpload: null, job: null, recorder: null, mask: null };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `The server answered ${response.status}.`);
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

const task = () => state.info.tasks.find((t) => t.name === $("task").value);
const conditioner = () => state.info.conditioners.find((c) => c.name === $("cond").value);

// -- building the controls --------------------------------------------------------------------

function buildControls(info) {
  const model = info.model;
  $("model-line").textContent = `model ${model.name} · ${model.conditioner} · ${model.vocoder} · ${model.device} ${model.dtype} · mka ${info.mka_version}`;
  for (const t of info.tasks) $("task").append(el("option", { value: t.name, text: t.name }));
  $("task").value = info.defaults.task;
  for (const c of info.conditioners) {
    const option = el("option", { value: c.name, text: c.fits ? `${c.name} (${c.input_kind})` : `${c.name} (other embedding space)` });
    if (!c.fits) option.disabled = true;
    $("cond").append(option);
  }
  $("cond").value = model.conditioner;
  for (const s of info.samplers) $("sampler").append(el("option", { value: s, text: s }));
  $("sampler").value = info.defaults.sampler;
  $("steps").placeholder = info.defaults.steps;
  $("steps").max = info.limits.steps;
  $("guidance").placeholder = info.defaults.guidance;
  $("candidates").max = info.limits.candidates;
  $("duration").max = info.geometry.max_duration;
  $("init-file").accept = info.accept.audio;
  fillPluginTables(info);
}

function fillPluginTables(info) {
  const from = (item) => `${item.distribution} ${item.version}`;
  const condRows = $("conditioner-table").querySelector("tbody");
  for (const c of info.conditioners) {
    condRows.append(el("tr", {}, [el("td", { text: c.name }), el("td", { text: c.input_kind }),
      el("td", { text: c.fits ? (c.own ? "yes (its own)" : "yes") : "no" }), el("td", { text: from(c) }), el("td", { text: c.summary })]));
  }
  const taskRows = $("task-table").querySelector("tbody");
  for (const t of info.tasks) {
    taskRows.append(el("tr", {}, [el("td", { text: t.name }), el("td", { text: t.condition }), el("td", { text: t.init_audio }),
      el("td", { text: t.mask }), el("td", { text: from(t) }), el("td", { text: t.summary })]));
  }
}

function onTaskChange() {
  const t = task();
  $("task-summary").textContent = t.summary;
  $("condition-block").hidden = t.condition === "unused";
  $("init-block").hidden = t.init_audio === "unused";
  $("mask-tools").hidden = t.mask === "unused";
  state.mask.editable = t.mask !== "unused";
  $("spectrogram-block").hidden = !state.initUpload;
  buildTaskOptions(t);
}

function onCondChange() {
  const c = conditioner();
  $("cond-summary").textContent = c.summary;
  const text = c.input_kind === "text";
  $("input-text").hidden = !text;
  $("input-file").hidden = text;
  if (!text) {
    $("input-file-label").textContent = { image: "Image", video: "Video", audio: "Audio" }[c.input_kind] || "File";
    $("input-file-picker").accept = state.info.accept[c.input_kind] || "";
    if (!state.inputUpload || state.inputUpload.kind !== c.input_kind) resetInputFile();
  }
}

function resetInputFile() {
  state.inputUpload = null;
  $("input-file-picker").value = "";
  $("input-file-status").textContent = "";
  $("input-image-preview").hidden = true;
  $("input-video-preview").hidden = true;
}

// A task's options (sdedit's strength, inpaint's variant, a plugin's own) as form fields.
function buildTaskOptions(t) {
  const box = $("task-options");
  box.replaceChildren();
  for (const field of t.options) {
    const id = `option-${field.name}`;
    let input;
    if (field.kind === "choice") {
      input = el("select", { id });
      if (field.nullable || field.default === null) input.append(el("option", { value: "", text: "(default)" }));
      for (const choice of field.choices) input.append(el("option", { value: String(choice), text: String(choice) }));
      if (field.default !== null && field.default !== undefined) input.value = String(field.default);
    } else if (field.kind === "boolean") {
      input = el("input", { id, type: "checkbox" });
      input.checked = Boolean(field.default);
    } else if (field.kind === "number" || field.kind === "integer") {
      input = el("input", { id, type: "number", step: field.kind === "integer" ? "1" : "any" });
      const low = field.minimum ?? field.exclusiveMinimum;
      const high = field.maximum ?? field.exclusiveMaximum;
      if (low !== undefined) input.min = low;
      if (high !== undefined) input.max = high;
      if (field.default !== null && field.default !== undefined) input.value = field.default;
    } else {
      input = el("input", { id, type: "text" });
      if (field.default !== null && field.default !== undefined) input.value = field.default;
    }
    input.dataset.option = field.name;
    input.dataset.kind = field.kind;
    input.title = field.description || "";
    box.append(el("label", { for: id, text: field.label, title: field.description || "" }), input);
  }
}

function taskOptionValues() {
  const values = {};
  for (const input of $("task-options").querySelectorAll("[data-option]")) {
    const kind = input.dataset.kind;
    if (kind === "boolean") values[input.dataset.option] = input.checked;
    else if (input.value === "") continue;
    else if (kind === "number" || kind === "integer") values[input.dataset.option] = Number(input.value);
    else values[input.dataset.option] = input.value;
  }
  return values;
}

// -- uploads ----------------------------------------------------------------------------------

async function upload(kind, blob, filename) {
  const query = new URLSearchParams({ kind, filename: filename || "" });
  return api(`/api/uploads?${query}`, { method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
}

async function onInputFile() {
  const file = $("input-file-picker").files[0];
  if (!file) return;
  const kind = conditioner().input_kind;
  showError("");
  state.inputUpload = null;
  $("input-file-status").textContent = `uploading ${file.name}...`;
  try {
    state.inputUpload = await upload(kind, file, file.name);
    $("input-file-status").textContent = `${state.inputUpload.label}: ${state.inputUpload.format}, uploaded`;
    const preview = kind === "image" ? $("input-image-preview") : kind === "video" ? $("input-video-preview") : null;
    if (preview) { preview.src = state.inputUpload.url; preview.hidden = false; }
  } catch (error) {
    $("input-file-status").textContent = "";
    showError(error.message);
  }
}

async function useInitAudio(blob, filename) {
  showError("");
  state.initUpload = null;
  $("spectrogram-block").hidden = true;
  $("init-status").textContent = `uploading ${filename}...`;
  try {
    const info = await upload("audio", blob, filename);
    state.initUpload = info;
    $("init-player").src = info.url;
    $("init-player").hidden = false;
    $("spectrogram-block").hidden = false;
    await state.mask.load(info);
    $("init-status").textContent = `${info.label}: ${info.duration.toFixed(2)} s, ${info.format}`;
  } catch (error) {
    $("init-status").textContent = "Upload or record the sound to edit.";
    showError(error.message);
  }
}

async function onRecord() {
  const button = $("record");
  if (!state.recorder) {
    if (!WavRecorder.available()) {
      showError("Recording needs a secure page (https, or this machine as localhost) and a microphone.");
      return;
    }
    state.recorder = new WavRecorder();
    try {
      await state.recorder.start();
    } catch (error) {
      state.recorder = null;
      showError(`The microphone could not be opened (${error.message}).`);
      return;
    }
    button.textContent = "Stop";
    button.classList.add("recording");
    $("record-status").textContent = "recording...";
    return;
  }
  const blob = await state.recorder.stop();
  state.recorder = null;
  button.textContent = "Record";
  button.classList.remove("recording");
  $("record-status").textContent = "";
  await useInitAudio(blob, "recording.wav");
}

function showMaskBoxes(boxes) {
  const list = $("mask-list");
  list.replaceChildren();
  if (!state.mask.info) return;
  const { hop_length: hop, sample_rate: rate } = state.mask.info;
  boxes.forEach((box, index) => {
    const seconds = `${((box.f0 * hop) / rate).toFixed(2)}-${((box.f1 * hop) / rate).toFixed(2)} s`;
    const band = box.band ? `, mel bins ${box.b0}-${box.b1}` : ", all frequencies";
    const remove = el("button", { type: "button", text: "remove" });
    remove.addEventListener("click", () => state.mask.remove(index));
    list.append(el("li", {}, [el("span", { text: seconds + band }), remove]));
  });
}

// -- generating -------------------------------------------------------------------------------

function buildRequest() {
  const t = task();
  const c = conditioner();
  const body = { task: t.name, task_options: taskOptionValues() };
  if (t.condition !== "unused") {
    body.cond = c.name;
    if (c.input_kind === "text") {
      const prompt = $("prompt").value.trim();
      body.inputs = prompt ? [prompt] : [];
    } else {
      body.inputs = state.inputUpload ? [{ upload: state.inputUpload.id }] : [];
    }
  }
  if (t.init_audio !== "unused" && state.initUpload) body.init_audio = state.initUpload.id;
  if (t.mask !== "unused" && state.initUpload) body.mask = state.mask.apiBoxes();
  const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  body.steps = number("steps");
  body.guidance = number("guidance");
  body.duration = number("duration");
  body.sampler = $("sampler").value || undefined;
  body.n = number("candidates") || 1;
  body.seed = $("seed-random").checked ? "random" : number("seed");
  return body;
}

async function onGenerate() {
  showError("");
  const body = buildRequest();
  const t = task();
  if (t.condition === "required" && (!body.inputs || !body.inputs.length)) {
    showError(conditioner().input_kind === "text" ? "Write a prompt first." : `Upload ${conditioner().input_kind === "image" ? "an image" : "a file"} first.`);
    return;
  }
  if (t.init_audio === "required" && !body.init_audio) { showError("Upload or record an init audio first."); return; }
  if (t.mask === "required" && (!body.mask || !body.mask.length)) { showError("Drag over the spectrogram to mark what to regenerate."); return; }
  $("generate").disabled = true;
  try {
    const job = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.job = job.id;
    $("cancel").hidden = false;
    await follow(job);
  } catch (error) {
    showError(error.message);
  } finally {
    $("generate").disabled = false;
    $("cancel").hidden = true;
    $("progress-block").hidden = true;
    state.job = null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(job) {
  $("progress-block").hidden = false;
  while (!["done", "failed", "cancelled"].includes(job.status)) {
    showProgress(job);
    await sleep(250);
    job = await api(job.url);
  }
  if (job.status === "done") {
    $("current").replaceChildren(renderJob(job, true));
  } else {
    showError(job.error || `The job was ${job.status}.`);
  }
  await refreshHistory();
}

function showProgress(job) {
  const bar = $("progress-bar");
  if (job.status === "queued") {
    bar.removeAttribute("value");
    $("progress-text").textContent = job.position ? `waiting: ${job.position} job(s) ahead` : "starting...";
  } else if (job.total) {
    bar.max = job.total;
    bar.value = job.step;
    $("progress-text").textContent = job.phase === "finishing" ? "decoding and writing..." : `sampling: step ${job.step} of ${job.total}`;
  } else {
    bar.removeAttribute("value");
    $("progress-text").textContent = "encoding the condition...";
  }
}

async function onCancel() {
  if (state.job) await api(`/api/jobs/${state.job}`, { method: "DELETE" }).catch(() => {});
}

// -- results ----------------------------------------------------------------------------------

function renderJob(job, large) {
  const s = job.summary;
  const wrap = el("div", { class: large ? "current-job" : "job" });
  const what = s.inputs && s.inputs.length ? s.inputs.join(" | ") : s.init_audio || "(unconditional)";
  const boxes = s.mask ? s.mask.split(",").length : 0;
  const mask = boxes ? ` · mask of ${boxes} box${boxes > 1 ? "es" : ""}` : "";
  wrap.append(el("p", { class: "meta", text: `#${job.number} ${s.task} · ${s.cond} · ${what}${mask}`, title: s.mask || "" }));
  job.frames.forEach((urls, j) => {
    if (!urls.length) return;
    const row = el("div", { class: "frames", "aria-label": `frames picked from input ${j + 1}` });
    urls.forEach((url, k) => row.append(el("img", { src: url, alt: `frame ${k + 1} the conditioner used`, class: "picked-frame" })));
    wrap.append(el("p", { class: "hint", text: "Frames the conditioner used:" }), row);
  });
  for (const output of job.outputs) wrap.append(renderOutput(output, large));
  if (job.status !== "done") wrap.append(el("p", { class: "hint", text: job.error || job.status }));
  return wrap;
}

function renderOutput(output, large) {
  const title = `${output.input ?? "(no input)"} · seed ${output.seed}${output.candidate ? ` · candidate ${output.candidate + 1}` : ""} · ${output.duration.toFixed(2)} s`;
  const card = el("div", { class: "output" }, [el("h3", { text: title })]);
  card.append(el("audio", { controls: "", preload: "metadata", src: output.urls.audio, class: "result-audio" }));
  if (large) card.append(el("img", { class: "mel", src: output.urls.spectrogram, alt: "mel spectrogram of the result" }));
  card.append(el("div", { class: "links" }, [
    el("a", { href: output.urls.download_audio, download: output.name, text: "WAV" }),
    el("a", { href: output.urls.download_sidecar, download: `${output.name}.json`, text: "sidecar JSON" }),
    el("a", { href: output.urls.bundle, text: "WAV + JSON (.zip)", class: "bundle" }),
  ]));
  return card;
}

async function refreshHistory() {
  const { jobs } = await api("/api/jobs");
  const list = $("history-list");
  const finished = jobs.filter((job) => job.status !== "queued" && job.status !== "running");
  if (!finished.length) return;
  list.replaceChildren(...finished.map((job) => renderJob(job, false)));
}

// -- start ------------------------------------------------------------------------------------

async function main() {
  state.mask = new MaskCanvas($("mask-canvas"), showMaskBoxes);
  try {
    state.info = await api("/api/info");
  } catch (error) {
    $("model-line").textContent = "";
    showError(`The server could not describe its model: ${error.message}`);
    return;
  }
  buildControls(state.info);
  $("task").addEventListener("change", onTaskChange);
  $("cond").addEventListener("change", onCondChange);
  $("input-file-picker").addEventListener("change", onInputFile);
  $("init-file").addEventListener("change", () => { const f = $("init-file").files[0]; if (f) useInitAudio(f, f.name); });
  $("record").addEventListener("click", onRecord);
  $("mask-clear").addEventListener("click", () => state.mask.clear());
  $("mask-freq").addEventListener("change", () => { state.mask.frequencyBand = $("mask-freq").checked; });
  $("seed-random").addEventListener("change", () => { $("seed").disabled = $("seed-random").checked; });
  $("generate").addEventListener("click", onGenerate);
  $("cancel").addEventListener("click", onCancel);
  onTaskChange();
  onCondChange();
  await refreshHistory();
  document.body.dataset.ready = "1";
}

main();
