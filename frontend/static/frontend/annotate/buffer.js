// Pairs claimed ahead of time, with both images already decoded, so the next pair shows at once.
import { api } from "./api.js";

const MAX_PREFETCH = 10;

async function decoded(image) {
  const element = new Image();
  element.decoding = "async";
  element.src = image.url;
  element.alt = "";
  element.draggable = false;
  try { await element.decode(); } catch { /* a broken image still shows its alt; judging goes on */ }
  return element;
}

export class PairBuffer {
  constructor({ taste, ahead, held, seen }) {
    this.taste = taste;
    this.ahead = ahead;
    this.held = held; // () => ids of leases the page holds outside this buffer (on screen, in the outbox)
    this.seen = seen; // ids judged or skipped on this page

    this.ready = [];
    this.loading = null;
    this.waiting = null; // why the server had nothing the last time it was asked (X-Chisel-Waiting)
  }

  // Claim and decode until `ahead` pairs wait ready (or the server has none left).
  fill() {
    if (this.loading || this.ready.length >= this.ahead) return this.loading;
    this.loading = this.load().finally(() => { this.loading = null; });
    return this.loading;
  }

  async load() {
    const want = this.ahead - this.ready.length;
    // The server answers the leases we hold first, so ask for that many more than we want.
    const holding = new Set([...this.held(), ...this.ids()]);
    const { items, waiting } = await api.next(this.taste, Math.min(MAX_PREFETCH, holding.size + want));
    this.waiting = waiting;
    // Read what the page holds only now: pairs may have been judged while the request was out.
    const known = new Set([...this.held(), ...this.ids(), ...this.seen]);
    const fresh = items.filter((item) => !known.has(item.id)).slice(0, want);
    const pairs = await Promise.all(fresh.map(async (item) => ({
      ...item,
      leftImage: await decoded(item.left),
      rightImage: await decoded(item.right),
    })));
    this.ready.push(...pairs);
  }

  take() { return this.ready.shift() || null; }

  putBack(pair) { this.ready.unshift(pair); }

  ids() { return this.ready.map((p) => p.id); }
}
