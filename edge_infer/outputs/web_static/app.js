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
  if (streaming || document.hidden) return;
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
      : past.length ? "none now (" + past.length + " since boot)" : "none");
  } else {
    text("throttled", "not reported");
  }
  const source = stats.source;
  text("source", source ? source.state + (source.outages ? " (" + source.outages + " outages)" : "") : "file/images");
  text("mqtt", status.mqtt_connected === null ? "not used" : status.mqtt_connected ? "connected" : "disconnected");
  text("model", status.model);
  text("backend", status.backend);
  text("uptime", stats.uptime_s !== undefined ? duration(stats.uptime_s) : "–");
}

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
    const up = !status.stats.source || status.stats.source.state === "streaming";
    setState(up ? "live" : "source reconnecting", up ? "ok" : "bad");
  } catch (error) {
    setState("no connection", "bad");
  }
  setTimeout(poll, POLL_MS);
}

poll();
attachStream();
