// Talking to gptapi from the page: the key, authenticated fetches, the one error shape and
// Server-Sent Events. Every call sends the key in the Authorization header, never in a URL.

// sessionStorage: the key lives as long as this tab, is not shared with other tabs, and is
// never written to a cookie (which would go with every request, the page's own included).
const KEY_NAME = "gptapi.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

// A refusal in the server's one error shape: {"error": {"type", "message", "code",
// "request_id"}} (src/gptapi/errors.py), or a status without that body.
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

// The page reacts to a refused key in one place (playground.js): calls report it here.
function announce(name, detail) {
  document.dispatchEvent(new CustomEvent(name, { detail }));
}

async function errorOf(response) {
  const requestId = response.headers.get("x-request-id");
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a refusal from in front of the app (uvicorn's 503, a proxy).
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string") {
    return new ApiError(response.status, error.code, error.message, error.request_id || requestId);
  }
  return new ApiError(response.status, "http_error", `HTTP ${response.status}`, requestId);
}

// fetch with the key; resolves to the Response when it is a 2xx, throws ApiError otherwise.
export async function call(path, { method = "GET", body, signal } = {}) {
  const key = getKey();
  if (!key) {
    const error = new ApiError(0, "no_key", "Enter an API key first.", null);
    announce("gptapi:key-refused", error);
    throw error;
  }
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) {
      announce("gptapi:key-refused", error);
    }
    throw error;
  }
  announce("gptapi:key-accepted", null);
  return response;
}

export async function callJson(path, options) {
  const response = await call(path, options);
  return { data: await response.json(), requestId: response.headers.get("x-request-id") };
}

// The JSON payload of each `data:` event of a stream, until `data: [DONE]`. Comments (lines
// starting with ':', the server's keep-alives) are skipped. An error event, the last one a
// failing stream sends, is thrown as an ApiError.
export async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) {
          continue;
        }
        if (data === "[DONE]") {
          return;
        }
        const event = JSON.parse(data);
        if (event && event.error) {
          throw new ApiError(
            response.status, event.error.code, event.error.message, event.error.request_id,
          );
        }
        yield event;
      }
    }
  } finally {
    // Ended early (an error event, a stop): close the response rather than leave it open.
    reader.cancel().catch(() => {});
  }
}

// Shows a message in the element `id` (null or "" hides it). Text only, never markup.
export function showIn(id, message) {
  const box = document.getElementById(id);
  box.textContent = message || "";
  box.hidden = !message;
}

// Numbers for people: bytes in binary units, counts and milliseconds rounded.
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) {
    return "–";
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const sign = bytes < 0 ? "-" : "";
  return `${sign}${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return "–";
  }
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

// A message for people from whatever a call threw.
export function describeError(error) {
  if (error instanceof ApiError) {
    const id = error.requestId ? ` (request ${error.requestId})` : "";
    return error.status ? `${error.status} ${error.code}: ${error.message}${id}` : error.message;
  }
  return `Could not reach the server: ${error.message || error}`;
}
