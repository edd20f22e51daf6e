// The judging page: keys and clicks to verdicts, verdicts to the outbox, and the next pair on screen at once.
import { api } from "./api.js";
import { PairBuffer } from "./buffer.js";
import { Outbox } from "./queue.js";
import { Stage } from "./stage.js";

const config = JSON.parse(document.getElementById("chisel-config").textContent);
const FLAG_KEYS = ["q", "w", "e", "r", "t", "y", "u"];
const POLL_EMPTY_MS = 4000;
const UNDO_DEPTH = 20;

const flags = config.flags.map((flag, index) => ({ ...flag, key: FLAG_KEYS[index] }));
const elements = {
  progress: document.getElementById("progress"),
  pending: document.getElementById("pending"),
  empty: document.getElementById("empty"),
  toast: document.getElementById("toast"),
  help: document.getElementById("help"),
  guidelines: document.getElementById("guidelines"),
};

// What the page says while there is nothing to judge, by the reason `next` gave (X-Chisel-Waiting).
const WAITING = {
  sampling: ["Waiting for the worker: new pairs are being sampled.", "This page checks again every few seconds and carries on by itself."],
  training: ["Waiting for the worker: the round is training.", "Its evaluation pairs come next; this page carries on by itself."],
  paused: ["The round is paused.", "Your research lead paused it; judging carries on here when it resumes."],
  quota_reached: ["Quota reached.", "This round has all the judgements it needs; thank you. It trains next."],
  nothing_left: ["Nothing left for you in this round.", "The pairs left are with other annotators, or no round is open. This page checks again every few seconds."],
  offline: ["Cannot reach the server.", "Your judgements are kept in this browser; this page tries again every few seconds."],
};

// Measurements for bench/ui_latency.py: key press to the next pair painted, in ms.
window.chiselMetrics = { latencies: [], shown: 0 };

let current = null; // { pair, flags: {left: Set, right: Set}, shownAt, redo }
const history = []; // judged pairs, newest last, for undo
const seen = new Set(); // assignments judged or skipped on this page
const progress = { today: 0, round: null };

const outbox = new Outbox({
  storageKey: `chisel.outbox.${config.username}`,
  onChange: (size) => {
    elements.pending.hidden = size === 0;
    elements.pending.textContent = `${size} waiting`;
  },
  onDropped: (entry, error) => toast(error.code === "round_closed"
    ? "That judgement came too late: its round no longer takes labels. On to the next pair."
    : `Not stored: ${error.message}`),
  onLoginNeeded: () => toast("Your session ended: log in again in another tab; your judgements are kept here.", 0),
});
const buffer = new PairBuffer({
  taste: config.taste,
  ahead: config.ahead,
  held: () => new Set([...outbox.pendingAssignments(), ...(current ? [current.pair.id] : [])]),
  seen,
});
const stage = new Stage({ flags, onFlag: toggleFlag });

function toast(message, ms = 4000, kind = "") {
  elements.toast.textContent = message;
  elements.toast.dataset.kind = kind;
  elements.toast.hidden = false;
  clearTimeout(toast.timer);
  if (ms) toast.timer = setTimeout(() => { elements.toast.hidden = true; }, ms);
}

function renderProgress() {
  const round = progress.round ? ` · ${progress.round.judged} in round ${progress.round.number}` : "";
  elements.progress.textContent = `${progress.today} today${round}`;
}

// The server's counts plus the submissions still in the outbox (after a reload, say), read while nothing
// is in flight so that none is counted twice or missed.
async function refreshProgress() {
  try {
    const me = await outbox.between(() => api.me());
    const taste = me.tastes.find((t) => t.slug === config.taste);
    progress.today = (taste ? taste.judged_today : 0) + outbox.waitingSubmits(config.taste);
    progress.round = taste ? taste.round : null;
    if (progress.round) progress.round.judged += outbox.waitingSubmits(config.taste, progress.round.id);
    renderProgress();
  } catch { /* progress is a nicety; judging goes on */ }
}

function show(pair, { redo = false, flagged = null, pressedAt = null } = {}) {
  current = { pair, flags: flagged || { left: new Set(), right: new Set() }, shownAt: 0, redo };
  elements.empty.hidden = true;
  stage.show(pair, current.flags);
  const shown = current;
  // Two frames later the pair is on screen: the annotator's clock starts there.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    shown.shownAt = performance.now();
    window.chiselMetrics.shown += 1;
    if (pressedAt !== null) window.chiselMetrics.latencies.push(shown.shownAt - pressedAt);
  }));
}

function advance(pressedAt = null) {
  const next = buffer.take();
  if (next) {
    show(next, { pressedAt });
  } else {
    current = null;
    stage.clear();
    waitForPairs(pressedAt);
  }
  buffer.fill()?.catch(() => {});
}

// The buffer ran dry: poll until pairs come; the key press that found it empty is still timed.
async function waitForPairs(pressedAt = null) {
  if (waitForPairs.running) return;
  waitForPairs.running = true;
  try {
    while (!current) {
      let reason;
      try { await buffer.fill(); reason = buffer.waiting; } catch { reason = "offline"; }
      if (buffer.ready.length) { advance(pressedAt); break; }
      showWaiting(reason);
      await new Promise((resolve) => setTimeout(resolve, POLL_EMPTY_MS));
    }
  } finally {
    waitForPairs.running = false;
  }
}

function showWaiting(reason) {
  const [title, detail] = WAITING[reason] || WAITING.nothing_left;
  elements.empty.dataset.waiting = reason || "";
  document.getElementById("empty-title").textContent = title;
  document.getElementById("empty-detail").textContent = detail;
  elements.empty.hidden = false;
}

function verdict(choice) {
  return {
    choice,
    flags_left: [...current.flags.left],
    flags_right: [...current.flags.right],
    duration_ms: Math.round(performance.now() - (current.shownAt || performance.now())),
  };
}

function choose(choice, pressedAt) {
  if (!current) return;
  const { pair } = current;
  const body = verdict(choice);
  if (elements.toast.dataset.kind === "undo") elements.toast.hidden = true; // the undone pair is judged again
  if (current.redo) {
    if (!outbox.rewriteWaiting(pair.id, body)) outbox.push({ kind: "amend", assignment: pair.id, body });
  } else {
    outbox.push({
      // The API does not say which round a pair is from (eval pairs must look like any other): the header counts
      // it in the taste's running round, the one /api/v1/me/ reports.
      kind: "submit", assignment: pair.id, taste: config.taste, round: progress.round ? progress.round.id : null,
      body: { ...body, assignment: pair.id, client_uuid: crypto.randomUUID() },
    });
    progress.today += 1;
    if (progress.round) progress.round.judged += 1;
    renderProgress();
  }
  history.push({ pair, flags: current.flags, choice });
  if (history.length > UNDO_DEPTH) history.shift();
  seen.add(pair.id);
  stage.flicker(false);
  advance(pressedAt);
}

function skip(pressedAt) {
  if (!current) return;
  if (current.redo) {
    toast("This pair is judged already: choose again to change it.");
    return;
  }
  outbox.push({ kind: "skip", assignment: current.pair.id });
  seen.add(current.pair.id);
  advance(pressedAt);
}

function undo() {
  const last = history.at(-1);
  if (!last) {
    toast("Nothing to undo.");
    return;
  }
  if (Date.parse(last.pair.lease_expires_at) <= Date.now()) {
    toast("Too late to change that judgement: its lease has ended.");
    return;
  }
  history.pop();
  if (current) buffer.putBack(current.pair);
  const flagged = { left: new Set(last.flags.left), right: new Set(last.flags.right) };
  show(last.pair, { redo: true, flagged });
  toast(`Undone (${last.choice.replace("_", " ")}): choose again.`, 4000, "undo");
}

function toggleFlag(side, flag) {
  if (!current) return;
  const set = current.flags[side];
  if (set.has(flag)) set.delete(flag); else set.add(flag);
  stage.renderFlags(current.flags);
}

function toggleHelp(force) {
  elements.help.hidden = force === undefined ? !elements.help.hidden : !force;
}

// The taste's guidelines: shown by themselves on the first visit (and when they change), then on `g`.
const guidelinesSeenKey = `chisel.guidelines.${config.username}.${config.taste}`;
function toggleGuidelines(force) {
  elements.guidelines.hidden = force === undefined ? !elements.guidelines.hidden : !force;
  if (elements.guidelines.hidden && config.guidelines) localStorage.setItem(guidelinesSeenKey, config.guidelines);
}

const CHOICE_KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right", "3": "tie", "0": "both_bad" };

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if ((event.key === "g" && elements.help.hidden) || (event.key === "Escape" && !elements.guidelines.hidden)) {
    toggleGuidelines(event.key === "g" ? undefined : false);
    event.preventDefault();
    return;
  }
  if (!elements.guidelines.hidden) return;
  if (event.key === "?" || (event.key === "Escape" && !elements.help.hidden)) {
    toggleHelp(event.key === "?" ? undefined : false);
    event.preventDefault();
    return;
  }
  if (!elements.help.hidden) return;
  const pressedAt = performance.now();
  if (CHOICE_KEYS[event.key] && !event.repeat) {
    choose(CHOICE_KEYS[event.key], pressedAt);
  } else if (event.key === "s" && !event.repeat) {
    skip(pressedAt);
  } else if (event.key === "Backspace") {
    undo();
  } else if (event.key === "z") {
    if (!event.repeat) stage.loupe(true);
  } else if (event.key === "f" && !event.repeat) {
    stage.flicker(!stage.flickering);
  } else if (FLAG_KEYS.includes(event.key.toLowerCase()) && !event.repeat) {
    toggleFlag(event.shiftKey ? "right" : "left", flags[FLAG_KEYS.indexOf(event.key.toLowerCase())].value);
  } else {
    return;
  }
  event.preventDefault();
});
document.addEventListener("keyup", (event) => { if (event.key === "z" || event.key === "Z") stage.loupe(false); });
window.addEventListener("blur", () => stage.loupe(false));

for (const side of ["left", "right"]) {
  document.getElementById(`frame-${side}`).addEventListener("click", () => choose(side, performance.now()));
}
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", (event) => {
    event.currentTarget.blur();
    const action = button.dataset.action;
    if (action === "skip") skip(performance.now());
    else if (action === "undo") undo();
    else choose(action, performance.now());
  });
}
document.getElementById("help-button").addEventListener("click", () => toggleHelp());
elements.help.addEventListener("click", () => toggleHelp(false));
document.getElementById("guidelines-button").addEventListener("click", (event) => { event.currentTarget.blur(); toggleGuidelines(); });
document.getElementById("guidelines-close").addEventListener("click", () => toggleGuidelines(false));
// Logging out keeps the outbox in this browser; say so when something is still waiting in it.
document.getElementById("logout").addEventListener("submit", (event) => {
  if (outbox.size && !window.confirm(`${outbox.size} judgement(s) have not reached the server yet. They stay in this browser and are sent when you log in here again. Log out?`)) {
    event.preventDefault();
  }
});
document.getElementById("help-flags").innerHTML = "Defect flags, left image / right image: " + flags
  .map((f) => `<kbd>${f.key}</kbd>/<kbd>⇧${f.key.toUpperCase()}</kbd> ${f.label.toLowerCase()}`).join(", ");
window.addEventListener("online", () => outbox.pump());

outbox.onChange(outbox.size);
outbox.pump();
if (config.guidelines && localStorage.getItem(guidelinesSeenKey) !== config.guidelines) toggleGuidelines(true);
renderProgress();
refreshProgress();
setInterval(refreshProgress, 60000);
waitForPairs();
