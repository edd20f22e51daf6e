// The outbox: judgements, amendments and skips wait in localStorage until the server has them,
// so a network blip, a server restart or a page reload loses nothing.
import { api, HttpError } from "./api.js";

const RETRY_MAX_MS = 10000;

// Answers that will never succeed however often they are retried: report them and drop the entry.
function isFinal(error) {
  return error instanceof HttpError && error.status >= 400 && error.status < 500
    && ![401, 403, 408, 429].includes(error.status);
}

// 401, and 403 for a lost session or CSRF cookie: keep the entry and ask for a new login.
function needsLogin(error) {
  return error instanceof HttpError && (error.status === 401 || (error.status === 403 && !error.code));
}

export class Outbox {
  constructor({ storageKey, onChange, onDropped, onLoginNeeded }) {
    this.storageKey = storageKey;
    this.onChange = onChange;
    this.onDropped = onDropped;
    this.onLoginNeeded = onLoginNeeded;
    this.entries = JSON.parse(localStorage.getItem(storageKey) || "[]");
    this.inFlight = null;
    this.sending = null; // the request of the entry in flight, until it is answered
    this.paused = false;
    this.pumping = false;
    this.acknowledged = new Set(); // assignment ids whose judgement the server holds
    this.delivered = new Set(); // every assignment this page sent a judgement or skip for
  }

  get size() { return this.entries.length; }

  // Submissions of `taste` (and `round`, if given) that the server does not have yet.
  waitingSubmits(taste, round = undefined) {
    return this.entries.filter((e) => e.kind === "submit" && e.taste === taste && (round === undefined || e.round === round)).length;
  }

  // Run `read` (a request whose answer counts judgements) with nothing in flight, so that every entry is
  // either counted by the server or still here, never both: wait for the request in flight (3 s at most),
  // send nothing more until `read` is answered.
  async between(read) {
    this.paused = true;
    try {
      if (this.sending) await Promise.race([this.sending.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
      return await read();
    } finally {
      this.paused = false;
      this.pump();
    }
  }

  // Never show these again: a `next` answered while their entry was in flight may still list them.
  pendingAssignments() { return new Set([...this.entries.map((e) => e.assignment), ...this.delivered]); }

  push(entry) {
    this.entries.push({ ...entry, attempts: 0 });
    this.save();
    this.pump();
  }

  // Undo, then a new verdict: rewrite a submission still waiting to be sent, if there is one.
  rewriteWaiting(assignment, body) {
    const waiting = this.entries.find((e) => e.assignment === assignment && e.kind === "submit" && e !== this.inFlight);
    if (!waiting) return false;
    Object.assign(waiting.body, body);
    this.save();
    return true;
  }

  save() {
    localStorage.setItem(this.storageKey, JSON.stringify(this.entries));
    this.onChange(this.entries.length);
  }

  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    let delay = 500;
    try {
      while (this.entries.length && !this.paused) {
        const entry = this.entries[0];
        this.inFlight = entry;
        try {
          this.sending = this.send(entry);
          await this.sending;
          this.delivered.add(entry.assignment);
          if (entry.kind !== "skip") this.acknowledged.add(entry.assignment);
          delay = 500;
        } catch (error) {
          if (isFinal(error)) {
            this.onDropped(entry, error);
          } else {
            entry.attempts += 1;
            this.save();
            if (needsLogin(error)) this.onLoginNeeded();
            await new Promise((resolve) => setTimeout(resolve, delay));
            delay = Math.min(delay * 2, RETRY_MAX_MS);
            continue;
          }
        } finally {
          this.inFlight = null;
          this.sending = null;
        }
        this.entries.shift();
        this.save();
      }
    } finally {
      this.pumping = false;
    }
  }

  send(entry) {
    if (entry.kind === "submit") return api.submit(entry.body);
    if (entry.kind === "amend") return api.amend(entry.assignment, entry.body);
    return api.skip(entry.assignment);
  }
}
