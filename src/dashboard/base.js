// base.js — what every part of the page uses: its own error report, element building, and number formats.

// The page's own errors are shown, not only logged: whoever looks at it sees that it is broken, and the browser
// test reads them from here.
const pageErrors = [];
window.__dashboardErrors = pageErrors;

function pageError(text) {
  pageErrors.push(String(text));
  const box = document.getElementById("page-errors");
  if (box) {
    box.hidden = false;
    box.textContent = "This page hit an error: " + text;
  }
}

window.addEventListener("error", (e) => pageError(e.message || "script error"));
window.addEventListener("unhandledrejection", (e) => pageError((e.reason && e.reason.message) || String(e.reason)));

const $ = (id) => document.getElementById(id);

// An element with a class and text. Text always goes in as textContent: event data is provider output, never markup.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// 0.4 s, 1.2 s, 12 s, 3m 05s, 1h 02m
function formatDuration(ms) {
  if (typeof ms !== "number" || !isFinite(ms) || ms < 0) return "–";
  if (ms < 10000) return (Math.floor(ms / 100) / 10).toFixed(1) + " s";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
}

function formatCost(usd) {
  if (typeof usd !== "number" || !isFinite(usd)) return null;
  return "$" + usd.toFixed(usd < 1 ? 4 : 2);
}

function formatCount(n) {
  return typeof n === "number" && isFinite(n) ? n.toLocaleString("en-US") : "–";
}

function formatBytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

// One line of at most `max` characters, for summaries of long values.
function oneLine(text, max) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > max ? flat.slice(0, max - 1) + "…" : flat;
}

function parseTime(ts) {
  const t = Date.parse(ts);
  return isNaN(t) ? null : t;
}

// A job id the API accepts (letters, digits, '-'): a version 4 UUID. crypto.randomUUID needs a secure context,
// which a gateway on a plain-http address is not; getRandomValues does not.
function newJobId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
}
