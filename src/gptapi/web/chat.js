// The chat view: /v1/chat/completions with "stream": true, read as Server-Sent Events from
// fetch's ReadableStream; Stop aborts the fetch (the server then cancels the generation).
// Model output only ever reaches the page as textContent: it is shown, never interpreted.

import { call, describeError, formatNumber, showIn, sseEvents } from "./api.js";
import { readControls, samplingFields } from "./sampling.js";

const byId = (id) => document.getElementById(id);

// The conversation as sent back to the model: completed turns only.
const history = [];
let controller = null;
// Bumped by "New chat": an answer still streaming then belongs to a conversation that is gone.
let conversation = 0;

function addMessage(role, text) {
  const message = document.createElement("div");
  message.className = `message ${role}`;
  message.textContent = text;
  const log = byId("chat-log");
  log.append(message);
  log.scrollTop = log.scrollHeight;
  return message;
}

function showError(message) {
  showIn("chat-error", message);
}

function setStreaming(streaming) {
  byId("chat-send").disabled = streaming;
  byId("chat-stop").disabled = !streaming;
}

// What the stream carried (usage, in its last chunk) and what this browser measured (the
// stream has no timings object; the task routes' answers do).
function describeAnswer({ usage, finish, requestId, startedAt, firstAt, endedAt, stopped }) {
  const parts = [];
  if (usage) {
    const cached = usage.prompt_tokens_details ? usage.prompt_tokens_details.cached_tokens : 0;
    parts.push(
      `prompt ${usage.prompt_tokens} tokens (${cached} cached)`,
      `completion ${usage.completion_tokens}`,
      `total ${usage.total_tokens} tokens`,
    );
  }
  if (firstAt !== null) {
    parts.push(`first token ${formatNumber(firstAt - startedAt)} ms`);
  }
  parts.push(`total ${formatNumber(endedAt - startedAt)} ms`);
  if (usage && firstAt !== null && usage.completion_tokens > 1 && endedAt > firstAt) {
    const rate = ((usage.completion_tokens - 1) * 1000) / (endedAt - firstAt);
    parts.push(`${formatNumber(rate, 1)} tokens/s`);
  }
  parts.push(stopped ? "stopped" : `finish ${finish || "?"}`);
  if (requestId) {
    parts.push(`request ${requestId}`);
  }
  return `${parts.join(" · ")} (times measured in this browser)`;
}

async function send(event) {
  event.preventDefault();
  const input = byId("chat-input");
  const text = input.value;
  if (controller !== null || text.trim() === "") {
    return;
  }
  const fields = readControls(() => samplingFields("chat"));
  if (fields === null) {
    return;
  }
  showError(null);
  const system = byId("chat-system").value.trim();
  const messages = [
    ...(system ? [{ role: "system", content: system }] : []),
    ...history,
    { role: "user", content: text },
  ];
  const question = addMessage("user", text);
  input.value = "";
  const answer = addMessage("assistant", "");
  answer.classList.add("streaming");
  byId("chat-usage").textContent = "";

  const mine = conversation;
  controller = new AbortController();
  setStreaming(true);
  const startedAt = performance.now();
  const outcome = { usage: null, finish: null, requestId: null, startedAt, firstAt: null };
  let reply = "";
  let stopped = false;
  let failed = false;
  try {
    const response = await call("/v1/chat/completions", {
      method: "POST",
      body: { ...fields, messages, stream: true, stream_options: { include_usage: true } },
      signal: controller.signal,
    });
    outcome.requestId = response.headers.get("x-request-id");
    for await (const chunk of sseEvents(response)) {
      if (chunk.usage) {
        outcome.usage = chunk.usage;
      }
      for (const choice of chunk.choices || []) {
        const piece = choice.delta ? choice.delta.content : null;
        if (piece) {
          if (outcome.firstAt === null) {
            outcome.firstAt = performance.now();
          }
          reply += piece;
          answer.textContent = reply;
          byId("chat-log").scrollTop = byId("chat-log").scrollHeight;
        }
        if (choice.finish_reason) {
          outcome.finish = choice.finish_reason;
        }
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      stopped = true;
    } else {
      failed = true;
      showError(describeError(error));
    }
  } finally {
    controller = null;
    setStreaming(false);
    answer.classList.remove("streaming");
  }
  if (mine !== conversation) {
    return;
  }
  if (reply === "") {
    // Nothing came back: forget the turn (two user turns in a row break many chat templates)
    // and give the text back to edit or resend.
    question.remove();
    answer.remove();
    input.value = text;
  } else {
    history.push({ role: "user", content: text }, { role: "assistant", content: reply });
    answer.classList.toggle("stopped", stopped);
  }
  const endedAt = performance.now();
  byId("chat-usage").textContent = failed ? "" : describeAnswer({ ...outcome, endedAt, stopped });
}

function stop() {
  if (controller !== null) {
    controller.abort();
  }
}

function clear() {
  stop();
  conversation += 1;
  history.length = 0;
  byId("chat-log").replaceChildren();
  byId("chat-usage").textContent = "";
  showError(null);
}

export function setUpChat() {
  byId("chat-form").addEventListener("submit", send);
  byId("chat-stop").addEventListener("click", stop);
  byId("chat-clear").addEventListener("click", clear);
  // Enter sends, Shift+Enter starts a new line.
  byId("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      byId("chat-form").requestSubmit();
    }
  });
}
