// facefeat web page: enrol (index-build / index-add) from a photo or the camera (getUserMedia),
// people (face-recognition-persons, thumbnails, person-remove / index-remove), recognise
// (face-recognition-infer) with boxes and names drawn on a canvas and the operating point shown,
// verify two photos (face-verify). Galleries are shown by the name given when they were built
// (indexName); the index key stays internal. No build step, no CDN.
"use strict";

const KEY_STORE = "facefeat.indexKey";
const API_KEY_STORE = "facefeat.apiKey"; // asked once (when the server has keys), kept for the tab
const MAX_SIDE = 1280; // photos are scaled down in the browser before upload
const $ = (id) => document.getElementById(id);

let indexKey = localStorage.getItem(KEY_STORE) || "";
let chooseNew = false; // "(new gallery)" picked: the next enrolment builds a new index

function setStatus(el, text, kind) {
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

// The server's API key: asked once when /health says keys are required, sent with every call.
function apiKey(ask) {
  let key = sessionStorage.getItem(API_KEY_STORE) || "";
  if (!key && ask) {
    key = (window.prompt("This server needs an API key:") || "").trim();
    if (key) sessionStorage.setItem(API_KEY_STORE, key);
  }
  return key;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  const key = apiKey(false);
  if (key) opts.headers["X-API-Key"] = key;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp, data;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error("cannot reach the server (" + e.message + ")");
  }
  try {
    data = await resp.json();
  } catch (e) {
    throw new Error("server answered " + resp.status + " without a JSON body");
  }
  if (resp.status === 401) sessionStorage.removeItem(API_KEY_STORE); // asked again on the next load
  if (!resp.ok || data.errorCode !== 0) {
    const err = new Error(data.errorMsg || ("HTTP " + resp.status));
    err.code = data.errorCode || resp.status;
    throw err;
  }
  return data.result;
}

// An API error about enrolling one photo of `name`, in plain words. The service names the
// request field and the pair's position (for API clients); the page sends one photo at a time,
// so it keeps only the reason and says what to do about it.
function plainEnrolError(err, name) {
  const code = err.code;
  if (code === 401 || code === 403) return "this server needs an admin API key to change galleries (reload the page to enter one)";
  if (code === 413) return "the photo is too large for this server; use a smaller one";
  const msg = String(err.message || "");
  const m = msg.match(/imageLabelPairs\[\d+\](?:\.image)? ?(?:\('[^]*?'\))?:? ?(.*)$/);
  const reason = m ? m[1] : msg;
  let r;
  if (/no face detected/.test(reason)) {
    return "no face was found in this photo. Use a photo where " + name + "'s face is clearly visible, facing the camera.";
  }
  if (/face too small/.test(reason) && !/^quality/.test(reason)) {
    return "the face in this photo is too small. Use a closer photo of " + name + ".";
  }
  if ((r = reason.match(/^(\d+) faces of similar size/))) {
    return "this photo shows " + r[1] + " faces of about the same size, so it is not clear which one is " + name +
      ". Use a photo of " + name + " alone.";
  }
  if ((r = reason.match(/^quality: (.*)$/))) {
    return "the photo did not pass the quality check (" + r[1] + "). Use a sharper, well-lit photo of " + name +
      " looking at the camera, or set the quality check to \"off\".";
  }
  if (/not an image|cannot decode|cannot read|base64/i.test(reason)) {
    return "this file cannot be read as an image (" + reason + ").";
  }
  return reason;
}

// The name shown for a gallery: the one given when it was built, else a numbered fallback.
function galleryName(x, i) {
  return x.indexName || ("Unnamed gallery " + (i + 1));
}

// A sample's thumbnail (the aligned face) as an object URL: fetched with the API key, cached.
const thumbs = new Map();
async function thumbUrl(id) {
  const k = indexKey + ":" + id;
  if (thumbs.has(k)) return thumbs.get(k);
  const headers = {};
  const key = apiKey(false);
  if (key) headers["X-API-Key"] = key;
  const resp = await fetch("/face-recognition-thumbnail?indexKey=" + encodeURIComponent(indexKey) + "&id=" + id,
                           { headers });
  if (!resp.ok) return "";
  const url = URL.createObjectURL(await resp.blob());
  thumbs.set(k, url);
  return url;
}

function thumbImg(id, alt) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = alt;
  img.width = 48;
  img.height = 48;
  thumbUrl(id).then((u) => { if (u) img.src = u; else img.classList.add("none"); });
  return img;
}

function describeOp(op) {
  if (!op) return "";
  let text = "threshold " + Number(op.threshold).toFixed(3) + " (" + op.source;
  if (op.operating_point && op.operating_point !== "fixed") text += ", " + op.operating_point;
  const m = op.measured || {};
  if (m.gallery_size) text += ", gallery " + m.gallery_size;
  if (op.data) text += ", measured on " + op.data;
  return text + ")";
}

// Read a File into an <img>, scale to at most MAX_SIDE, return {canvas, base64}.
function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error(file.name + " is not an image this browser can read")); };
    img.src = url;
  });
}

async function prepareImage(file, canvas) {
  const img = await loadImage(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  const w = Math.max(1, Math.round(img.naturalWidth * scale));
  const h = Math.max(1, Math.round(img.naturalHeight * scale));
  const c = canvas || document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, w, h);
  const dataUrl = c.toDataURL("image/jpeg", 0.92);
  return { canvas: c, base64: dataUrl.slice(dataUrl.indexOf(",") + 1), width: w, height: h };
}

function canvasBase64(c) {
  const dataUrl = c.toDataURL("image/jpeg", 0.92);
  return dataUrl.slice(dataUrl.indexOf(",") + 1);
}

function labelColor(label) {
  if (!label) return "#9aa0a6";
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return "hsl(" + (h % 360) + ", 75%, 45%)";
}

// -- gallery ---------------------------------------------------------------------------------------
function useIndex(key) {
  indexKey = key || "";
  if (indexKey) chooseNew = false;
  if (indexKey) localStorage.setItem(KEY_STORE, indexKey);
  else localStorage.removeItem(KEY_STORE);
}

async function refreshIndexList() {
  const sel = $("index-select");
  let indexes = [];
  try {
    indexes = (await api("GET", "/face-recognition-index-list")).indexes;
  } catch (e) { /* the gallery panel reports errors */ }
  if (indexKey && !indexes.some((x) => x.indexKey === indexKey)) useIndex("");
  if (!indexKey && !chooseNew && indexes.length) useIndex(indexes[indexes.length - 1].indexKey);
  sel.innerHTML = "";
  indexes.forEach((x, i) => {
    const o = document.createElement("option");
    o.value = x.indexKey; // internal: never shown
    o.textContent = galleryName(x, i) + " (" + x.imageCount + " photo" + (x.imageCount === 1 ? "" : "s") + ")";
    sel.appendChild(o);
  });
  const fresh = document.createElement("option");
  fresh.value = "";
  fresh.textContent = "+ new gallery";
  sel.appendChild(fresh);
  sel.value = indexKey;
  galleryCount = indexes.length;
  $("gallery-name-label").hidden = !!indexKey;
  const current = indexes.find((x) => x.indexKey === indexKey);
  currentGalleryName = current ? galleryName(current, indexes.indexOf(current)) : "";
}

let galleryCount = 0;
let currentGalleryName = "";

let galleryGen = 0; // refreshes may overlap: only the latest one draws

async function refreshGallery() {
  const gen = ++galleryGen;
  await refreshIndexList();
  if (gen !== galleryGen) return;
  const tbody = $("gallery");
  const table = $("gallery-table");
  const summary = $("gallery-summary");
  tbody.innerHTML = "";
  $("people").innerHTML = "";
  if (!indexKey) {
    table.hidden = true;
    summary.textContent = "No gallery yet: enrol someone to create one.";
    return;
  }
  let info;
  try {
    info = await api("GET", "/face-recognition-index-info?indexKey=" + encodeURIComponent(indexKey));
  } catch (e) {
    if (gen !== galleryGen) return;
    table.hidden = true;
    summary.textContent = "Cannot read the gallery: " + e.message;
    return;
  }
  if (gen !== galleryGen) return;
  tbody.innerHTML = "";
  const people = new Set(info.entries.map((e) => e.label));
  summary.textContent = currentGalleryName + ": " + info.imageCount + " image(s) of " + people.size + " person(s); model " + info.model +
    ", " + info.backend + " " + info.indexType + " index";
  for (const e of info.entries) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(e.id);
    const tdId = document.createElement("td");
    tdId.textContent = String(e.id);
    const tdFace = document.createElement("td");
    tdFace.appendChild(thumbImg(e.id, e.label));
    const tdName = document.createElement("td");
    tdName.className = "label";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = labelColor(e.label);
    tdName.appendChild(sw);
    tdName.appendChild(document.createTextNode(e.label));
    const tdBtn = document.createElement("td");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "small";
    btn.textContent = "remove";
    btn.addEventListener("click", () => removeEntry(e.id, e.label));
    tdBtn.appendChild(btn);
    tr.append(tdId, tdFace, tdName, tdBtn);
    tbody.appendChild(tr);
  }
  table.hidden = info.entries.length === 0;
  await refreshPeople(gen);
}

// One card per person: the thumbnail of their first sample, the sample count, remove.
async function refreshPeople(gen) {
  const ul = $("people");
  if (!indexKey) return;
  let res;
  try {
    res = await api("GET", "/face-recognition-persons?indexKey=" + encodeURIComponent(indexKey));
  } catch (e) {
    return;
  }
  if (gen !== galleryGen) return;
  ul.innerHTML = "";
  for (const p of res.persons) {
    const li = document.createElement("li");
    li.className = "person";
    li.dataset.label = p.label;
    li.appendChild(thumbImg(p.sampleIds[0], p.label));
    const name = document.createElement("span");
    name.className = "person-name";
    name.textContent = p.label;
    const count = document.createElement("span");
    count.className = "muted count";
    count.textContent = p.sampleCount + " sample" + (p.sampleCount === 1 ? "" : "s");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "small remove-person";
    btn.textContent = "remove person";
    btn.addEventListener("click", () => removePerson(p.label, p.sampleCount));
    li.append(name, count, btn);
    ul.appendChild(li);
  }
}

async function removePerson(label, count) {
  const st = $("enrol-status");
  const photos = count + " photo" + (count === 1 ? "" : "s");
  if (!window.confirm("Remove " + label + " and their " + photos + " from the gallery \"" + currentGalleryName +
                      "\"? This cannot be undone.")) {
    setStatus(st, label + " was not removed.");
    return;
  }
  try {
    const res = await api("POST", "/face-recognition-person-remove", { indexKey, label });
    setStatus(st, "Removed " + label + " (" + res.removed.length + " sample(s)).", "ok");
  } catch (e) {
    setStatus(st, "Remove failed: " + e.message, "error");
  }
  await refreshGallery();
}

async function removeEntry(id, label) {
  const st = $("enrol-status");
  try {
    await api("POST", "/face-recognition-index-remove", { ids: [id], indexKey });
    setStatus(st, "Removed " + label + " (id " + id + ").", "ok");
  } catch (e) {
    setStatus(st, "Remove failed: " + e.message, "error");
  }
  await refreshGallery();
}

// -- enrol -----------------------------------------------------------------------------------------
async function enrol(ev) {
  ev.preventDefault();
  const file = $("enrol-file").files[0];
  if (!file) return setStatus($("enrol-status"), "Choose a photo (or use the camera).", "error");
  await enrolImage(async () => (await prepareImage(file)).base64);
}

async function enrolImage(getBase64) {
  const st = $("enrol-status");
  const btn = $("enrol-btn");
  const name = $("enrol-name").value.trim();
  if (!name) return setStatus(st, "Enter the person's name.", "error");
  btn.disabled = true;
  setStatus(st, "Enrolling " + name + "...");
  try {
    const base64 = await getBase64();
    const pairs = [{ image: base64, label: name }];
    const quality = $("enrol-quality").value;
    let res;
    if (indexKey) {
      try {
        res = await api("POST", "/face-recognition-index-add", { imageLabelPairs: pairs, indexKey, quality });
      } catch (e) {
        if (e.code !== 404) throw e;
        useIndex(""); // the gallery went away: start a new one
      }
    }
    if (!res) {
      const indexName = $("gallery-name").value.trim() || (galleryCount ? "Gallery " + (galleryCount + 1) : "My gallery");
      res = await api("POST", "/face-recognition-index-build", { imageLabelPairs: pairs, quality, indexName });
      useIndex(res.indexKey);
      $("gallery-name").value = "";
    }
    if (res.rejected && res.rejected.length) {
      setStatus(st, "Not enrolled: " + res.rejected[0].reason, "error");
    } else {
      setStatus(st, "Enrolled " + name + " (id " + res.ids.join(", ") + ").", "ok");
      $("enrol-form").reset();
    }
  } catch (e) {
    setStatus(st, name + " was not enrolled: " + plainEnrolError(e, name), "error");
  } finally {
    btn.disabled = false;
    await refreshGallery();
  }
}

// -- recognise -------------------------------------------------------------------------------------
function drawFaces(canvas, faces) {
  const ctx = canvas.getContext("2d");
  const lw = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 150));
  const fontPx = Math.max(12, Math.round(Math.min(canvas.width, canvas.height) / 18));
  ctx.font = "bold " + fontPx + "px system-ui, 'DejaVu Sans', sans-serif";
  ctx.textBaseline = "top";
  for (const f of faces) {
    const [x0, y0, x1, y1] = f.bbox;
    const top = f.recResults.length ? f.recResults[0] : null;
    const color = labelColor(top ? top.label : null);
    ctx.lineWidth = lw;
    ctx.strokeStyle = color;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = top ? top.label + " " + top.score.toFixed(2) : "Unknown";
    const tw = ctx.measureText(text).width + 8;
    const th = fontPx + 6;
    const ty = y0 - th >= 0 ? y0 - th : y1;
    ctx.fillStyle = color;
    ctx.fillRect(x0 - lw / 2, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x0 + 4 - lw / 2, ty + 3);
  }
}

async function recognise(ev) {
  ev.preventDefault();
  const file = $("recog-file").files[0];
  if (!file) return setStatus($("recog-status"), "Choose a photo.", "error");
  await recogniseImage(async (canvas) => (await prepareImage(file, canvas)).base64);
}

async function recogniseImage(fillCanvas) {
  const st = $("recog-status");
  const btn = $("recog-btn");
  const list = $("recog-results");
  btn.disabled = true;
  list.innerHTML = "";
  document.body.dataset.recognised = "";
  setStatus(st, "Recognising...");
  $("recog-op").textContent = "";
  try {
    const canvas = $("recog-canvas");
    const base64 = await fillCanvas(canvas);
    const body = { image: base64, topk: 3, visualize: false }; // boxes are drawn here
    if (indexKey) body.indexKey = indexKey;
    const res = await api("POST", "/face-recognition-infer", body);
    drawFaces(canvas, res.faces);
    if (indexKey) $("recog-op").textContent = "Named when the score is above the " + describeOp(res.operatingPoint);
    for (const f of res.faces) {
      const li = document.createElement("li");
      const top = f.recResults.length ? f.recResults[0] : null;
      li.className = top ? "known" : "unknown";
      li.dataset.label = top ? top.label : "";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = labelColor(top ? top.label : null);
      li.appendChild(sw);
      li.appendChild(document.createTextNode(
        top ? top.label + " (" + top.score.toFixed(2) + ")" : "Unknown"));
      list.appendChild(li);
      if (top && window.correctionButtons) window.correctionButtons(li, f, canvas, top.label); // gallery-life.js
    }
    const n = res.faces.length;
    const named = res.faces.filter((f) => f.recResults.length).map((f) => f.recResults[0].label);
    setStatus(st, n === 0 ? "No face found." :
      "Found " + n + " face(s)" + (named.length ? ": " + named.join(", ") : ", none recognised") + ".", "ok");
  } catch (e) {
    setStatus(st, "Recognition failed: " + e.message, "error");
  } finally {
    btn.disabled = false;
    document.body.dataset.recognised = "done";
  }
}

// -- camera ----------------------------------------------------------------------------------------
let camStream = null;

async function toggleCamera() {
  const video = $("cam");
  const st = $("cam-status");
  if (camStream) {
    camStream.getTracks().forEach((t) => t.stop());
    camStream = null;
    video.hidden = true;
    st.textContent = "off";
    $("cam-btn").textContent = "Start camera";
  } else {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      st.textContent = "this browser gives no camera access (it needs https or localhost)";
      return;
    }
    try {
      camStream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (e) {
      st.textContent = "no camera: " + e.message;
      return;
    }
    video.srcObject = camStream;
    video.hidden = false;
    await video.play().catch(() => {});
    st.textContent = "on";
    $("cam-btn").textContent = "Stop camera";
  }
  $("enrol-cam-btn").disabled = !camStream;
  $("recog-cam-btn").disabled = !camStream;
  document.body.dataset.camera = camStream ? "on" : "off";
}

// The current camera frame drawn on a canvas; returns its base64 JPEG.
async function grabFrame(canvas) {
  const video = $("cam");
  if (!camStream || !video.videoWidth) throw new Error("the camera is not running");
  const c = canvas || document.createElement("canvas");
  c.width = video.videoWidth;
  c.height = video.videoHeight;
  c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
  return canvasBase64(c);
}

// -- verify ----------------------------------------------------------------------------------------
async function verifyPhotos(ev) {
  ev.preventDefault();
  const st = $("verify-status");
  const f1 = $("verify-file1").files[0];
  const f2 = $("verify-file2").files[0];
  if (!f1 || !f2) return setStatus(st, "Choose two photos.", "error");
  $("verify-btn").disabled = true;
  document.body.dataset.verified = "";
  setStatus(st, "Verifying...");
  try {
    const a = await prepareImage(f1, $("verify-canvas1"));
    const b = await prepareImage(f2, $("verify-canvas2"));
    const res = await api("POST", "/face-verify", { image1: a.base64, image2: b.base64 });
    const verdict = $("verify-verdict");
    verdict.textContent = res.verified ? "Same person" : "Different people";
    verdict.className = "verdict " + (res.verified ? "same" : "different");
    $("verify-score").textContent = res.score.toFixed(3);
    $("verify-threshold").textContent = res.threshold.toFixed(3);
    $("verify-op").textContent = describeOp(res.operatingPoint) +
      (res.far != null ? "; false accept rate " + res.far : "");
    $("verify-result").hidden = false;
    setStatus(st, "Score " + res.score.toFixed(3) + (res.verified ? " above " : " below ") + "the threshold " +
      res.threshold.toFixed(3) + ".", "ok");
  } catch (e) {
    $("verify-result").hidden = true;
    setStatus(st, "Verify failed: " + e.message, "error");
  } finally {
    $("verify-btn").disabled = false;
    document.body.dataset.verified = "done";
  }
}

async function checkHealth() {
  const pill = $("health");
  try {
    const h = await api("GET", "/health");
    if (h.auth) apiKey(true);
    pill.textContent = "ready: " + h.models.join(", ") + " / " + h.indexBackend;
    pill.className = "pill ready";
  } catch (e) {
    pill.textContent = "not ready: " + e.message;
    pill.className = "pill down";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("enrol-form").addEventListener("submit", enrol);
  $("recog-form").addEventListener("submit", recognise);
  $("verify-form").addEventListener("submit", verifyPhotos);
  $("cam-btn").addEventListener("click", toggleCamera);
  $("enrol-cam-btn").addEventListener("click", () => enrolImage(() => grabFrame(null)));
  $("recog-cam-btn").addEventListener("click", () => recogniseImage(grabFrame));
  $("refresh-btn").addEventListener("click", refreshGallery);
  $("index-select").addEventListener("change", (ev) => {
    chooseNew = !ev.target.value;
    useIndex(ev.target.value);
    refreshGallery();
  });
  checkHealth().then(refreshGallery).then(() => { document.body.dataset.loaded = "1"; });
});
