// The public REST API, called with the key the user signed in with (kept in session storage:
// it lasts as long as the tab and is never written to disk by the page).

const KEY = "ftserve.key";

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
  }
}

function headers(extra) {
  return { authorization: `Bearer ${key.get()}`, ...extra };
}

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, body);
}

export async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "content-type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(`/v1${path}`, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const del = (path) => api("DELETE", path);

export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

export const enc = encodeURIComponent;

// Every item of a cursor-paged list, following `after` (at most `max` items).
export async function all(path, params, max = 10000) {
  const items = [];
  let after;
  for (;;) {
    const page = await get(path + qs({ ...params, after }));
    items.push(...page.data);
    if (!page.has_more || !page.data.length || items.length >= max) return items;
    after = page.data[page.data.length - 1].id;
  }
}

// The raw response of a GET, for streamed bodies (file previews).
export async function raw(path, init) {
  const response = await fetch(`/v1${path}`, { ...init, headers: headers(init && init.headers) });
  if (!response.ok) throw await failure(response);
  return response;
}

// Server-sent events of a POST or GET, with the key: `onEvent({id, event, data})` per event.
// EventSource cannot send an Authorization header, hence fetch and a parser of our own.
export async function sse(path, { method = "GET", body, lastEventId, signal, onOpen, onEvent }) {
  const extra = { accept: "text/event-stream" };
  if (body !== undefined) extra["content-type"] = "application/json";
  if (lastEventId) extra["last-event-id"] = lastEventId;
  const response = await fetch(`/v1${path}`, {
    method, headers: headers(extra), signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  if (!(response.headers.get("content-type") || "").startsWith("text/event-stream")) {
    return { streamed: false, response };
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\n|\r/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (event.data.length) onEvent({ id: event.id, event: event.event || "message", data: event.data.join("\n") });
        event = { data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(val);
        else if (field === "id") event.id = val;
        else if (field === "event") event.event = val;
      }
    }
  }
  return { streamed: true };
}

// A POST of multipart form data with upload progress (fetch cannot report it; XMLHttpRequest can).
export function postForm(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1${path}`);
    xhr.setRequestHeader("authorization", `Bearer ${key.get()}`);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => (xhr.status < 300 ? resolve(xhr.response) : reject(new ApiError(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new Error("The upload failed: the connection was lost."));
    xhr.send(form);
  });
}
