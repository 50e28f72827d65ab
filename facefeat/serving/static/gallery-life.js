// facefeat web page, gallery care (issue 18): corrections on every recognition ("not X" / "this is X",
// undoable), the health panel (score and fixes), the review of unknown faces (groups of kept faces:
// name a group or dismiss it), export / import of the gallery. Uses app.js's api(), apiKey(), $,
// setStatus() and indexKey. Every call here needs an admin key (the server answers 403 otherwise).
"use strict";

function faceBase64(canvas, bbox) {
  // the face with a margin, cut from the recognised photo: one face per correction
  const [x0, y0, x1, y1] = bbox;
  const m = 0.4 * Math.max(x1 - x0, y1 - y0);
  const sx = Math.max(0, x0 - m), sy = Math.max(0, y0 - m);
  const sw = Math.min(canvas.width, x1 + m) - sx, sh = Math.min(canvas.height, y1 + m) - sy;
  const c = document.createElement("canvas");
  c.width = Math.round(sw);
  c.height = Math.round(sh);
  c.getContext("2d").drawImage(canvas, sx, sy, sw, sh, 0, 0, c.width, c.height);
  return c.toDataURL("image/jpeg", 0.95).split(",")[1];
}

window.correctionButtons = function (li, face, canvas, label) {
  const image = faceBase64(canvas, face.bbox);
  const note = document.createElement("span");
  note.className = "muted correction-note";
  for (const [kind, text] of [["not", "Not " + label], ["is", "This is " + label]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "fix-btn correct-" + kind;
    b.textContent = text;
    b.addEventListener("click", async () => {
      li.querySelectorAll("button").forEach((x) => { x.disabled = true; });
      try {
        const r = await api("POST", "/face-recognition-correct",
          { indexKey, image, label, kind, quality: kind === "is" ? "standard" : undefined });
        note.textContent = kind === "not" ? " noted: not " + label + " " : " added to " + label + " ";
        const undo = document.createElement("button");
        undo.type = "button";
        undo.className = "fix-btn undo";
        undo.textContent = "Undo";
        undo.addEventListener("click", async () => {
          undo.disabled = true;
          try {
            await api("POST", "/face-recognition-correct-undo", { indexKey, correctionId: r.correctionId });
            note.textContent = " undone ";
          } catch (e) {
            note.textContent = " undo failed: " + e.message;
          }
        });
        note.appendChild(undo);
        li.dataset.corrected = kind;
      } catch (e) {
        note.textContent = " correction failed: " + e.message;
        li.querySelectorAll("button").forEach((x) => { x.disabled = false; });
      }
    });
    li.appendChild(b);
  }
  li.appendChild(note);
};

function needIndex() {
  if (!indexKey) {
    setStatus($("care-status"), "Choose a gallery first.", "error");
    return false;
  }
  return true;
}

async function checkGalleryHealth() {
  if (!needIndex()) return;
  const st = $("care-status");
  setStatus(st, "Checking...");
  $("care-fixes").innerHTML = "";
  try {
    const h = await api("GET", "/face-recognition-index-health?indexKey=" + encodeURIComponent(indexKey));
    $("care-summary").textContent = "Score " + h.score + " for " + h.people + " people, " + h.samples +
      " samples (threshold " + h.threshold + "): " + h.counts.outliers + " outlier(s), " + h.counts.close_pairs +
      " close pair(s), " + h.counts.quality + " poor sample(s), " + h.counts.duplicates + " duplicate(s).";
    for (const f of h.fixes) {
      const li = document.createElement("li");
      li.className = "fix";
      const who = f.label || (f.labels || []).join(" / ");
      li.textContent = f.action.replace("_", " ") + (f.id !== undefined ? " #" + f.id : "") + " (" + who + "): " + f.why;
      $("care-fixes").appendChild(li);
    }
    setStatus(st, h.fixes.length ? h.fixes.length + " fix(es) suggested." : "Nothing to fix.", "ok");
  } catch (e) {
    setStatus(st, "Health check failed: " + e.message, "error");
  }
}

async function crop(id) {
  const headers = {};
  const key = apiKey(false);
  if (key) headers["X-API-Key"] = key;
  const r = await fetch("/face-recognition-sighting-crop?indexKey=" + encodeURIComponent(indexKey) + "&id=" + id,
    { headers });
  return r.ok ? URL.createObjectURL(await r.blob()) : "";
}

async function reviewUnknown() {
  if (!needIndex()) return;
  const st = $("care-status");
  const box = $("unknown-groups");
  box.innerHTML = "";
  setStatus(st, "Grouping unknown faces...");
  try {
    const r = await api("GET", "/face-recognition-unknown-groups?indexKey=" + encodeURIComponent(indexKey));
    for (const g of r.groups) {
      const div = document.createElement("div");
      div.className = "group";
      div.dataset.size = g.size;
      for (const id of g.ids.slice(0, 8)) {
        const img = document.createElement("img");
        img.alt = "sighting " + id;
        crop(id).then((u) => { img.src = u; });
        div.appendChild(img);
      }
      const name = document.createElement("input");
      name.type = "text";
      name.placeholder = "name (" + g.size + " faces)";
      name.maxLength = 256;
      const ok = document.createElement("button");
      ok.type = "button";
      ok.textContent = "Name";
      ok.className = "name-group";
      const no = document.createElement("button");
      no.type = "button";
      no.textContent = "Dismiss";
      no.className = "dismiss-group";
      ok.addEventListener("click", async () => {
        if (!name.value.trim()) return setStatus(st, "Type a name for the group.", "error");
        try {
          const n = await api("POST", "/face-recognition-unknown-name",
            { indexKey, sightingIds: g.ids, label: name.value });
          setStatus(st, "Named " + n.sightingIds.length + " face(s) " + n.label + ".", "ok");
          div.remove();
          if (typeof refreshGallery === "function") refreshGallery();
        } catch (e) {
          setStatus(st, "Naming failed: " + e.message, "error");
        }
      });
      no.addEventListener("click", async () => {
        try {
          const n = await api("POST", "/face-recognition-sightings-dismiss", { indexKey, sightingIds: g.ids });
          setStatus(st, "Dismissed " + n.deleted + " face(s).", "ok");
          div.remove();
        } catch (e) {
          setStatus(st, "Dismissing failed: " + e.message, "error");
        }
      });
      div.append(document.createElement("br"), name, ok, no);
      box.appendChild(div);
    }
    setStatus(st, r.groups.length ? r.groups.length + " group(s) to review." :
      "No unknown groups (is keeping unknown faces on for this gallery?).", "ok");
  } catch (e) {
    setStatus(st, "Review failed: " + e.message, "error");
  }
}

async function exportGallery() {
  if (!needIndex()) return;
  const st = $("care-status");
  setStatus(st, "Exporting...");
  const headers = {};
  const key = apiKey(false);
  if (key) headers["X-API-Key"] = key;
  try {
    const r = await fetch("/face-recognition-index-export?indexKey=" + encodeURIComponent(indexKey), { headers });
    if (!r.ok) throw new Error((await r.json()).errorMsg || "HTTP " + r.status);
    const blob = await r.blob();
    const a = $("export-link");
    a.href = URL.createObjectURL(blob);
    a.download = "gallery-" + indexKey + ".tar";
    a.hidden = false;
    a.click();
    setStatus(st, "Exported " + blob.size + " bytes.", "ok");
  } catch (e) {
    setStatus(st, "Export failed: " + e.message, "error");
  }
}

async function importGallery() {
  const st = $("care-status");
  const file = $("import-file").files[0];
  if (!file) return setStatus(st, "Choose an archive file.", "error");
  const headers = { "Content-Type": "application/x-tar" };
  const key = apiKey(false);
  if (key) headers["X-API-Key"] = key;
  const url = "/face-recognition-index-import" + (indexKey ? "?indexKey=" + encodeURIComponent(indexKey) : "");
  try {
    const r = await fetch(url, { method: "POST", headers, body: file });
    const data = await r.json();
    if (!r.ok || data.errorCode !== 0) throw new Error(data.errorMsg || "HTTP " + r.status);
    const res = data.result;
    setStatus(st, (res.mode === "restored" ? "Restored " : "Merged ") + res.samples_added + " sample(s)" +
      (res.conflicts && res.conflicts.length ? ", " + res.conflicts.length + " conflict(s) not added" : "") + ".", "ok");
    if (typeof useIndex === "function") useIndex(res.indexKey);
    if (typeof refreshIndexList === "function") refreshIndexList();
  } catch (e) {
    setStatus(st, "Import failed: " + e.message, "error");
  }
}

$("health-btn").addEventListener("click", checkGalleryHealth);
$("unknown-btn").addEventListener("click", reviewUnknown);
$("export-btn").addEventListener("click", exportGallery);
$("import-btn").addEventListener("click", importGallery);
