// The live view: the MJPEG stream in an <img>, and /api/status polled every second.
// Relative URLs, so the page also works behind a reverse proxy under a sub-path.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const RETRY_MS = 2000;

// The stream runs only while the page is visible: a hidden tab (or a phone's locked screen) closes it,
// so the device copies and encodes nothing for nobody.
const image = $("stream");
let streaming = false;

function attachStream() {
  if (streaming || document.hidden || document.body.classList.contains("multi")) return;
  streaming = true;
  image.src = "stream.mjpg?t=" + Date.now();
}

function detachStream() {
  streaming = false;
  image.src = "data:,";  // closes the connection
  image.parentElement.classList.remove("live");
}

image.addEventListener("load", () => { if (streaming) image.parentElement.classList.add("live"); });
image.addEventListener("error", () => {
  if (!streaming) return;
  streaming = false;
  image.parentElement.classList.remove("live");
  setTimeout(attachStream, RETRY_MS);
});
document.addEventListener("visibilitychange", () => (document.hidden ? detachStream() : attachStream()));

function text(id, value) {
  $(id).textContent = value;
}

function percent(score) {
  return (100 * score).toFixed(1) + " %";
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + " d " : "") + (d || h ? h + " h " : "") + (d || h || m ? m + " min " : "") + (s % 60) + " s";
}

function showTop(top) {
  const list = $("top");
  const items = top.map((entry) => {
    const li = document.createElement("li");
    const name = document.createElement("div");
    name.className = "name";
    const label = document.createElement("span");
    label.textContent = entry.label;
    const score = document.createElement("span");
    score.className = "muted";
    score.textContent = percent(entry.score);
    name.append(label, score);
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = Math.max(0, Math.min(100, 100 * entry.score)) + "%";
    track.append(fill);
    li.append(name, track);
    return li;
  });
  list.replaceChildren(...items);
}

function show(status) {
  const result = status.result;
  const stats = status.stats || {};
  if (result && result.top.length) {
    text("label", result.top[0].label);
    text("score", percent(result.top[0].score));
    showTop(result.top);
  } else {
    text("label", result ? "nothing above the threshold" : "no result yet");
    text("score", "");
    showTop([]);
  }
  text("fps", stats.fps !== undefined ? Number(stats.fps).toFixed(1) : "–");
  const inference = stats.inference_ms;
  text("inference", inference ? inference.p50.toFixed(2) + " ms (p95 " + inference.p95.toFixed(2) + ")" : "–");
  text("dropped", stats.dropped_frames !== undefined ? String(stats.dropped_frames) : "–");
  text("temperature", stats.cpu_temp_c !== undefined ? stats.cpu_temp_c.toFixed(1) + " °C" : "not reported");
  if (stats.throttled) {
    const now = Object.keys(stats.throttled).filter((flag) => stats.throttled[flag] && !flag.endsWith("_occurred"));
    const past = Object.keys(stats.throttled).filter((flag) => stats.throttled[flag] && flag.endsWith("_occurred"));
    text("throttled", now.length ? now.join(", ").replaceAll("_", " ")
      : past.length ? "none now (" + past.length + " since the service started)" : "none");
  } else {
    text("throttled", "not reported");
  }
  const source = stats.source;
  if (status.cameras) {
    const live = status.cameras.filter((camera) => camera.streaming).length;
    text("source", status.cameras.length + " cameras, " + live + " live");
  } else {
    text("source", source ? source.state + (source.outages ? " (" + source.outages + " outages)" : "") : "file/images");
  }
  text("mqtt", status.mqtt_connected === null ? "not used" : status.mqtt_connected ? "connected" : "disconnected");
  text("model", status.model);
  text("backend", status.backend);
  text("uptime", stats.uptime_s !== undefined ? duration(stats.uptime_s) : "–");
}

// A `cameras:` run: a card per camera with its own stream; each region's newest label under it.
const cards = new Map();

function cameraCard(camera) {
  const card = document.createElement("article");
  card.className = "camera";
  card.dataset.camera = camera.name;
  const title = document.createElement("h3");
  const name = document.createElement("span");
  name.textContent = camera.name;
  const state = document.createElement("span");
  state.className = "pill";
  title.append(name, state);
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = "Camera " + camera.name + ", with its regions and their labels drawn on";
  const waiting = document.createElement("p");
  waiting.className = "nostream";
  waiting.textContent = "waiting for the picture…";
  frame.append(img, waiting);
  img.addEventListener("load", () => frame.classList.add("live"));
  img.addEventListener("error", () => {
    frame.classList.remove("live");
    setTimeout(() => { if (!document.hidden) img.src = streamUrl(camera.name); }, RETRY_MS);
  });
  const regions = document.createElement("ul");
  regions.className = "regions";
  card.append(title, frame, regions);
  const entry = { card, state, img, regions };
  if (!document.hidden) img.src = streamUrl(camera.name);
  return entry;
}

function streamUrl(name) {
  return "stream.mjpg?camera=" + encodeURIComponent(name) + "&t=" + Date.now();
}

function showCameras(cameras) {
  document.body.classList.add("multi");
  const grid = $("cameras");
  grid.hidden = false;
  for (const camera of cameras) {
    let entry = cards.get(camera.name);
    if (!entry) {
      entry = cameraCard(camera);
      cards.set(camera.name, entry);
      grid.append(entry.card);
    }
    entry.state.textContent = camera.streaming ? "live" : "reconnecting";
    entry.state.className = "pill " + (camera.streaming ? "ok" : "bad");
    entry.regions.replaceChildren(...camera.regions.map((region) => {
      const li = document.createElement("li");
      const where = document.createElement("span");
      where.className = "muted";
      where.textContent = region.name === null ? "whole frame" : region.name;
      const label = document.createElement("span");
      label.className = "label";
      const top = region.result && region.result.top.length ? region.result.top[0] : null;
      label.textContent = top ? top.label + " " : region.result ? "nothing above the threshold" : "no result yet";
      if (top) {
        const score = document.createElement("span");
        score.className = "muted";
        score.textContent = percent(top.score);
        label.append(score);
      }
      li.append(where, label);
      return li;
    }));
  }
}

// Hidden page: no streams at all (the device copies and encodes nothing for nobody); visible again: reattach.
document.addEventListener("visibilitychange", () => {
  for (const [name, entry] of cards) entry.img.src = document.hidden ? "data:," : streamUrl(name);
});

function setState(label, kind) {
  const pill = $("state");
  pill.textContent = label;
  pill.className = "pill " + kind;
}

async function poll() {
  try {
    const response = await fetch("api/status", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const status = await response.json();
    show(status);
    if (status.cameras) {
      showCameras(status.cameras);  // each camera's card has its own stream
    } else {
      attachStream();  // the single view's, once the status says there is one camera
    }
    const up = status.cameras ? status.cameras.some((camera) => camera.streaming)
      : !status.stats.source || status.stats.source.state === "streaming";
    setState(up ? "live" : "source reconnecting", up ? "ok" : "bad");
  } catch (error) {
    setState("no connection", "bad");
  }
  setTimeout(poll, POLL_MS);
}

poll();
