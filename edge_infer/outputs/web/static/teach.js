// The Teach panel: samples of your classes from a camera's region, a model trained on them on the device,
// and that model put in use. /api/teach says what there is; every write carries the token it gives.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const IDLE_MS = 3000;
  const TRAINING_MS = 700;
  const BURST = 10;
  const BURST_GAP_MS = 500;
  let state = null;
  let shown = "";  // what the sample list shows, so a poll redraws the thumbnails only when they changed
  let busy = false;

  const placeKey = (place) => (place.camera || "") + "/" + (place.region || "");
  const placeName = (place) => place.camera === null ? (place.region || "the whole frame")
    : place.camera + " · " + place.region;
  const selected = () => state && state.places.find((place) => placeKey(place) === $("teach-place").value);
  const percent = (value) => value === null ? "–" : Math.round(100 * value) + " %";

  function say(message, bad) {
    const line = $("teach-message");
    line.textContent = message;
    line.style.color = bad ? "var(--bad)" : "";
  }

  async function send(path, body, query) {
    const place = selected();
    const upload = body instanceof Blob;
    const response = await fetch(path + (query || ""), {
      method: "POST",
      headers: { "X-Edge-Infer-Token": state.token, "Content-Type": upload ? body.type || "application/octet-stream"
        : "application/json" },
      body: upload ? body : JSON.stringify({ camera: place.camera, region: place.region, ...body }),
    });
    const answer = await response.json().catch(() => ({ error: "HTTP " + response.status }));
    if (!response.ok) throw new Error(answer.error || "HTTP " + response.status);
    return answer;
  }

  function className() {
    const name = $("teach-class").value.trim();
    if (!/^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$/.test(name)) {
      throw new Error("type a class name first: letters, digits, spaces, - or _");
    }
    return name;
  }

  async function act(what, work) {
    if (busy) return;
    busy = true;
    try {
      say(what + "…");
      say(await work());
    } catch (error) {
      say(error.message, true);
    } finally {
      busy = false;
      refresh();
    }
  }

  const sampleUrl = (place, label, name) => "api/teach/sample?" + new URLSearchParams({
    ...(place.camera !== null && { camera: place.camera }), ...(place.region !== null && { region: place.region }),
    class: label, name }).toString();

  function showSamples(place) {
    const key = JSON.stringify([placeKey(place), place.classes]);
    if (key === shown) return;
    shown = key;
    $("teach-classes").replaceChildren(...place.classes.map((c) => Object.assign(document.createElement("option"),
      { value: c.name })));
    $("teach-samples").replaceChildren(...place.classes.map((c) => {
      const block = document.createElement("div");
      block.className = "class";
      block.dataset.class = c.name;
      const title = document.createElement("h3");
      const name = document.createElement("span");
      name.textContent = c.name;
      const count = document.createElement("span");
      count.className = "muted count";
      count.textContent = c.samples.length + " sample" + (c.samples.length === 1 ? "" : "s");
      const drop = document.createElement("button");
      drop.type = "button";
      drop.className = "delete";
      drop.textContent = "delete class";
      drop.addEventListener("click", () => {
        if (confirm("Delete the " + c.samples.length + " samples of " + c.name + "?")) {
          act("deleting", async () => `deleted ${(await send("api/teach/delete", { class: c.name })).deleted}`);
        }
      });
      title.append(name, count, drop);
      const thumbs = document.createElement("div");
      thumbs.className = "thumbs";
      thumbs.append(...c.samples.map((sample) => {
        const figure = document.createElement("figure");
        const img = document.createElement("img");
        img.loading = "lazy";
        img.alt = c.name + " sample " + sample;
        img.src = sampleUrl(place, c.name, sample);
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "delete";
        remove.title = "delete this sample";
        remove.textContent = "×";
        remove.addEventListener("click", () => act("deleting", async () => {
          await send("api/teach/delete", { class: c.name, name: sample });
          return "deleted " + sample;
        }));
        figure.append(img, remove);
        return figure;
      }));
      block.append(title, thumbs);
      return block;
    }));
  }

  function showReport(place) {
    const report = place.candidate;
    const box = $("teach-report");
    if (!report) {
      box.replaceChildren();
      return;
    }
    const heading = document.createElement("p");
    heading.textContent = `Trained on ${report.base}: ${report.method}, held-out accuracy ` +
      percent(report.held_out_accuracy);
    const table = document.createElement("table");
    table.innerHTML = "<tr><th>class</th><th>images</th><th>held-out accuracy</th></tr>";
    for (const c of report.classes) {
      const row = table.insertRow();
      for (const value of [c.name, String(c.images), percent(c.held_out_accuracy)]) {
        row.insertCell().textContent = value;
      }
    }
    const warnings = document.createElement("ul");
    warnings.replaceChildren(...report.warnings.map((w) => Object.assign(document.createElement("li"),
      { textContent: w })));
    box.replaceChildren(heading, table, warnings);
  }

  function showJob(job, place) {
    const mine = job.camera === place.camera && job.region === place.region;
    const running = job.state === "embedding" || job.state === "learning";
    const progress = $("teach-progress");
    progress.hidden = !running;
    progress.max = Math.max(1, job.total);
    progress.value = job.done;
    $("teach-job").textContent = !running && !mine ? "" : running
      ? (job.state === "embedding" ? `embedding ${job.done} of ${job.total} images` : "learning") +
        (mine ? "" : " (" + placeName(job) + ")")
      : job.state === "failed" ? "training failed: " + job.error
      : job.state === "done" ? `trained in ${job.seconds} s` : "";
    $("teach-train").disabled = running;
    $("teach-use").disabled = running || !place.candidate;
    $("teach-revert").hidden = !place.taught_in_use;
    return running;
  }

  function show() {
    const panel = $("teach");
    panel.hidden = false;
    panel.classList.toggle("readonly", !state.writable);
    $("teach-note").hidden = state.writable;
    $("teach-note").textContent = state.why_not || "";
    const select = $("teach-place");
    const keys = state.places.map(placeKey);
    if (select.options.length !== keys.length || [...select.options].some((o, i) => o.value !== keys[i])) {
      select.replaceChildren(...state.places.map((place) => Object.assign(document.createElement("option"),
        { value: placeKey(place), textContent: placeName(place) })));
    }
    const place = selected();
    showSamples(place);
    showReport(place);
    $("teach-use").title = "run it on " + placeName(place) + " (now " + place.model + ")";
    return showJob(state.job, place);
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    let running = false;
    try {
      const response = await fetch("api/teach", { cache: "no-store" });
      if (response.status === 404) return;  // not a service run with the web output: no panel, no polling
      if (!response.ok) throw new Error("HTTP " + response.status);
      state = await response.json();
      if (!state.places.length) return;
      running = show();
    } catch (error) {
      say("cannot reach the Teach panel: " + error.message, true);
    }
    timer = setTimeout(refresh, running ? TRAINING_MS : IDLE_MS);
  }

  $("teach-place").addEventListener("change", () => { shown = ""; refresh(); });
  $("teach-capture").addEventListener("click", () => act("capturing", async () => {
    const answer = await send("api/teach/capture", { class: className() });
    return "saved " + answer.name;
  }));
  $("teach-burst").addEventListener("click", () => act("capturing", async () => {
    const label = className();
    for (let taken = 1; taken <= BURST; taken++) {
      await send("api/teach/capture", { class: label });
      say(`captured ${taken} of ${BURST}`);
      if (taken < BURST) await new Promise((resolve) => setTimeout(resolve, BURST_GAP_MS));
    }
    return `saved ${BURST} samples of ${label}`;
  }));
  $("teach-upload").addEventListener("change", (event) => act("uploading", async () => {
    const label = className();
    const place = selected();
    const files = [...event.target.files];
    event.target.value = "";
    for (const file of files) {
      if (file.size > state.limits.upload_bytes) throw new Error(file.name + " is larger than the limit");
      await send("api/teach/upload", file, "?" + new URLSearchParams({
        ...(place.camera !== null && { camera: place.camera }), ...(place.region !== null && { region: place.region }),
        class: label }).toString());
    }
    return `uploaded ${files.length} photo(s) to ${label}`;
  }));
  $("teach-train").addEventListener("click", () => act("starting", async () => {
    await send("api/teach/train", {});
    return "training…";
  }));
  $("teach-use").addEventListener("click", () => act("switching", async () => {
    const answer = await send("api/teach/use", {});
    return placeName(selected()) + " now runs " + answer.model;
  }));
  $("teach-revert").addEventListener("click", () => act("switching", async () => {
    await send("api/teach/revert", {});
    return placeName(selected()) + " runs the configured model again";
  }));

  refresh();
})();
