// mnist-zoo serve: draw a digit, send it after each stroke, show what every model reads.
// Talks only to the server that served this page (/api/info, /api/predict, /api/collect).
"use strict";

const INK = "#111111";
const PAPER = "#ffffff";
const PEN_WIDTH = 0.06; // of the pad's side: close to MNIST's stroke-to-digit ratio

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

const state = {
  strokes: [], // each: an array of [x, y] points in canvas pixels
  current: null, // the stroke being drawn
  pointerId: null,
  photo: null, // {file, bitmap} when a photo is shown
  inFlight: false,
  queued: false,
  pixels: null, // the last 28x28 input, exactly what the collect buttons save
  info: null,
};

// --- drawing ---------------------------------------------------------------------------------

function redraw() {
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (state.photo && state.photo.bitmap) {
    const { bitmap } = state.photo;
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }
  for (const stroke of state.strokes) drawStroke(stroke);
  if (state.current) drawStroke(state.current);
  $("pad-hint").hidden = !isEmpty() || state.current !== null;
}

function drawStroke(points) {
  ctx.strokeStyle = INK;
  ctx.fillStyle = INK;
  ctx.lineWidth = PEN_WIDTH * canvas.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (points.length === 1) {
    ctx.beginPath();
    ctx.arc(points[0][0], points[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function isEmpty() {
  return state.strokes.length === 0 && state.photo === null;
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) / box.width) * canvas.width,
    ((event.clientY - box.top) / box.height) * canvas.height,
  ];
}

canvas.addEventListener("pointerdown", (event) => {
  if (state.pointerId !== null || event.button > 0) return;
  event.preventDefault();
  state.pointerId = event.pointerId;
  canvas.setPointerCapture(event.pointerId);
  state.current = [canvasPoint(event)];
  redraw();
});

canvas.addEventListener("pointermove", (event) => {
  if (event.pointerId !== state.pointerId) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) state.current.push(canvasPoint(e));
  redraw();
});

function endStroke(event) {
  if (event.pointerId !== state.pointerId) return;
  state.pointerId = null;
  if (state.current && event.type === "pointerup") state.strokes.push(state.current);
  state.current = null;
  redraw();
  if (event.type === "pointerup") requestReading();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  if (state.strokes.length) state.strokes.pop();
  else state.photo = null;
  redraw();
  requestReading();
}

function clearPad() {
  state.strokes = [];
  state.photo = null;
  redraw();
  requestReading();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearPad);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clearPad();
  }
});

// --- photos: the file picker and drag-and-drop -----------------------------------------------

async function usePhoto(file) {
  if (!file) return;
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showMessage("error", [`This file is ${mb(file.size)}; the limit is ${mb(limit)}.`]);
    return;
  }
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(file);
  } catch (err) {
    bitmap = null; // the server says what is wrong with it
  }
  state.strokes = [];
  state.photo = { file, bitmap };
  redraw();
  requestReading();
}

function mb(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

$("file").addEventListener("change", (event) => {
  usePhoto(event.target.files[0]);
  event.target.value = ""; // choosing the same file again still reads it
});

// A picture dropped anywhere on the page is read (instead of the browser opening it).
const pad = $("pad");
window.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dragover");
});
window.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) pad.classList.remove("dragover");
});
window.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragover");
  usePhoto(event.dataTransfer && event.dataTransfer.files[0]);
});

// --- asking the server -----------------------------------------------------------------------

function currentPicture() {
  // A photo alone goes as the original file, exactly what `mnist-zoo predict photo.png` reads;
  // a drawing (or strokes over a photo) goes as the pad's PNG.
  if (state.photo && state.strokes.length === 0) {
    return Promise.resolve({ body: state.photo.file, type: state.photo.file.type || "application/octet-stream" });
  }
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ body: blob, type: "image/png" }), "image/png"));
}

function requestReading() {
  if (state.inFlight) {
    state.queued = true; // one request at a time; the latest picture goes next
    return;
  }
  sendReading();
}

async function sendReading() {
  state.inFlight = true;
  state.queued = false;
  setState("busy");
  try {
    if (isEmpty()) {
      showEmpty();
      return;
    }
    const picture = await currentPicture();
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": picture.type },
      body: picture.body,
    });
    const data = await response.json();
    if (state.queued) return; // the picture changed meanwhile: show the newer answer only
    if (response.ok) showReading(data);
    else showProblem(data.error || `The server answered ${response.status}.`);
  } catch (err) {
    showProblem("No answer from the server. Is `mnist-zoo serve` still running?");
  } finally {
    state.inFlight = false;
    if (state.queued) sendReading();
  }
}

function setState(name) {
  document.body.dataset.state = name;
}

// --- showing the answers ---------------------------------------------------------------------

function showReading(data) {
  state.pixels = data.pixels;
  drawSeen(data.pixels);
  const answer = data.answer;
  $("answer-digit").textContent = String(answer.label);
  $("answer-text").textContent = `${answer.name}: ${pct(answer.confidence)} sure`;
  $("answer-note").textContent = answerNote(data.models);
  renderModels(data);
  if (data.warnings.length) showMessage("warn", data.warnings);
  else if (data.models.length > 1) showMessage("ok", [`All ${data.models.length} models read a ${answer.label}.`]);
  else hideMessage();
  setLabelsEnabled(true);
  document.body.dataset.answer = String(answer.label);
  document.body.dataset.readings = String(Number(document.body.dataset.readings) + 1);
  setState("ready");
}

function answerNote(models) {
  if (models.length === 1) return "";
  const names = models.map((m) => m.name);
  const list = `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
  return `The ensemble averages the probabilities of ${list}.`;
}

function showEmpty() {
  state.pixels = null;
  drawSeen(null);
  $("answer-digit").textContent = "\u2013";
  $("answer-text").textContent = "Waiting for a digit";
  $("answer-note").textContent = "";
  renderModels(null);
  hideMessage();
  setLabelsEnabled(false);
  delete document.body.dataset.answer;
  setState("empty");
}

function showProblem(text) {
  state.pixels = null;
  drawSeen(null);
  $("answer-digit").textContent = "?";
  $("answer-text").textContent = "No reading";
  $("answer-note").textContent = "";
  renderModels(null);
  showMessage("error", [text]);
  setLabelsEnabled(false);
  delete document.body.dataset.answer;
  setState("error");
}

function pct(p) {
  return `${(100 * p).toFixed(p >= 0.995 && p < 1 ? 1 : 0)}%`;
}

function drawSeen(pixels) {
  const seen = $("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = pixels ? pixels[i] : 0;
    image.data.set([v, v, v, 255], 4 * i);
  }
  seen.putImageData(image, 0, 0);
}

function showMessage(kind, lines) {
  const box = $("message");
  box.className = `message ${kind === "warn" ? "" : kind}`.trim();
  box.replaceChildren(...lines.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  box.hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

function renderModels(reading) {
  // With several models the ensemble's row comes first, marked as the answer.
  const info = state.info || { models: [], answer: null };
  const several = info.models.length > 1;
  const rows = reading
    ? several ? [reading.answer, ...reading.models] : reading.models
    : (several ? [info.answer, ...info.models] : info.models).map((name) => ({ name, label: null, probs: null }));
  $("models").replaceChildren(...rows.map((m, i) => modelRow(m, several && i === 0)));
}

function modelRow(model, isAnswer) {
  const row = document.createElement("div");
  row.className = `model${isAnswer ? " is-answer" : ""}`;
  row.dataset.name = model.name;
  if (model.label !== null) row.dataset.label = String(model.label);

  const name = document.createElement("div");
  name.className = "model-name";
  name.textContent = model.name;
  if (isAnswer) name.append(Object.assign(document.createElement("small"), { textContent: "the answer" }));

  const bars = document.createElement("div");
  bars.className = "bars";
  for (let digit = 0; digit < 10; digit++) {
    const p = model.probs ? model.probs[digit] : 0;
    const bar = document.createElement("div");
    bar.className = `bar${model.label === digit ? " best" : ""}`;
    bar.dataset.digit = String(digit);
    bar.dataset.prob = String(p);
    bar.title = `${digit}: ${(100 * p).toFixed(1)}%`;
    const track = document.createElement("div");
    track.className = "bar-track";
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.style.height = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    bar.append(track, Object.assign(document.createElement("div"), { className: "bar-digit", textContent: String(digit) }));
    bars.append(bar);
  }

  const pick = document.createElement("div");
  pick.className = "model-pick";
  if (model.label !== null) {
    pick.append(
      Object.assign(document.createElement("strong"), { textContent: String(model.label) }),
      Object.assign(document.createElement("span"), { className: "prob", textContent: pct(model.probs[model.label]) }),
    );
  }
  row.append(name, bars, pick);
  return row;
}

// --- collecting: "this was a 7" --------------------------------------------------------------

function setLabelsEnabled(enabled) {
  for (const button of document.querySelectorAll("#labels .label")) button.disabled = !enabled;
}

async function saveAs(label) {
  if (!state.pixels) return;
  const status = $("collect-status");
  setLabelsEnabled(false);
  try {
    const response = await fetch("/api/collect", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pixels: state.pixels, label }),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
    status.className = "note saved";
    const digits = data.count === 1 ? "1 digit" : `${data.count} digits`;
    status.textContent = `Saved as a ${label}: ${digits} in ${data.folder}. Score a model on them with ` +
      `mnist-zoo evaluate minivgg --data ${data.folder}`;
    status.dataset.count = String(data.count);
    state.strokes = [];
    state.photo = null;
    redraw();
    showEmpty();
  } catch (err) {
    status.className = "note failed";
    status.textContent = `Not saved: ${err.message}`;
    setLabelsEnabled(true);
  }
}

for (const button of document.querySelectorAll("#labels .label")) {
  button.addEventListener("click", () => saveAs(Number(button.dataset.label)));
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  redraw();
  drawSeen(null);
  try {
    const response = await fetch("/api/info");
    state.info = await response.json();
    $("version").textContent = `mnist-zoo ${state.info.version}`;
    $("collect-folder").textContent = state.info.collect.folder;
    if (state.info.collect.count) {
      $("collect-status").textContent = `${state.info.collect.count} digits saved there so far.`;
    }
  } catch (err) {
    showProblem("Could not reach the server. Is `mnist-zoo serve` still running?");
    return;
  }
  renderModels(null);
  setState("empty");
}

start();
