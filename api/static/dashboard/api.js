// Talking to /v1: the key lives in sessionStorage and travels only in the X-API-Key header.
const KEY = "tickwatch.apiKey";

export class AuthError extends Error {}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  save: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  return { "X-API-Key": session.key() || "", ...extra };
}

// GET a /v1 path with query parameters; AuthError on 401, Error with the body's detail otherwise.
export async function getJson(path, params = {}) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null),
  );
  const url = query.size ? `${path}?${query}` : path;
  const resp = await fetch(url, { headers: headers(), cache: "no-store" });
  if (resp.status === 401) throw new AuthError("wrong or missing API key");
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new Error(body.message || body.detail || `${resp.status} ${resp.statusText}`);
  }
  return resp.json();
}

// Server-sent events read with fetch (EventSource cannot send a header): calls onEvent(name, data)
// per event until `signal` aborts; returns when the server ends the stream.
export async function readEvents(path, onEvent, signal, onOpen = () => {}) {
  const resp = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
  if (resp.status === 401) throw new AuthError("wrong or missing API key");
  if (!resp.ok) throw new Error(`stream: ${resp.status}`);
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}
