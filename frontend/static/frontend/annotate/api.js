// Thin wrapper over the Chisel API for the judging page: session auth with the CSRF header.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class HttpError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
}

async function request(method, url, body) {
  return fetch(url, {
    method,
    credentials: "same-origin",
    headers: {
      "Accept": "application/json",
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      ...(method !== "GET" ? { "X-CSRFToken": csrfToken() } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
}

async function payloadOf(response) {
  if (response.status === 204) return null;
  let payload = null;
  try { payload = await response.json(); } catch { payload = null; }
  if (!response.ok) throw new HttpError(response.status, payload);
  return payload;
}

export async function call(method, url, body) {
  return payloadOf(await request(method, url, body));
}

// The next pairs; when there are none, why (the X-Chisel-Waiting header of the 204).
async function next(taste, prefetch) {
  const response = await request("GET", `/api/v1/assignments/next/?taste=${encodeURIComponent(taste)}&prefetch=${prefetch}`);
  const items = (await payloadOf(response)) || [];
  const waiting = response.status === 204 ? response.headers.get("X-Chisel-Waiting") || "nothing_left" : null;
  return { items, waiting };
}

export const api = {
  next,
  submit: (body) => call("POST", "/api/v1/judgements/", body),
  amend: (assignment, body) => call("PUT", `/api/v1/assignments/${assignment}/judgement/`, body),
  skip: (assignment) => call("POST", `/api/v1/assignments/${assignment}/skip/`),
  me: () => call("GET", "/api/v1/me/"),
};
