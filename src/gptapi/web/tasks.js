// The three task routes as forms. Each answer is one JSON body (no stream) carrying the text,
// finish_reason, usage and the server's own timings, all shown as text.

import { callJson, describeError, formatNumber } from "./api.js";
import { readControls, samplingFields } from "./sampling.js";

const byId = (id) => document.getElementById(id);

// form id -> [route, prefix of its elements' ids, the body's own fields, sampling route]
const TASKS = {
  "task-generate": [
    "/generate-text",
    "generate",
    () => ({ prompt: byId("generate-prompt").value }),
    "generate",
  ],
  "task-summarize": [
    "/summarize-text",
    "summarize",
    () => {
      const maxWords = byId("summarize-max-words").value.trim();
      return {
        text: byId("summarize-text").value,
        ...(maxWords ? { max_words: Number(maxWords) } : {}),
      };
    },
    "task",
  ],
  "task-answer": [
    "/answer-question",
    "answer",
    () => {
      const context = byId("answer-context").value;
      return {
        question: byId("answer-question").value,
        ...(context.trim() ? { context } : {}),
      };
    },
    "task",
  ],
};

function describeAnswer(answer, requestId) {
  const { usage, timings } = answer;
  const parts = [
    `finish ${answer.finish_reason}`,
    `prompt ${usage.prompt_tokens} tokens (${usage.cached_tokens} cached)`,
    `completion ${usage.completion_tokens}`,
    `total ${usage.total_tokens} tokens`,
    `queue ${formatNumber(timings.queue_ms)} ms`,
  ];
  if (timings.time_to_first_token_ms !== null) {
    parts.push(`first token ${formatNumber(timings.time_to_first_token_ms)} ms`);
  }
  parts.push(
    `total ${formatNumber(timings.total_ms)} ms`,
    `${formatNumber(timings.tokens_per_s, 1)} tokens/s`,
    `request ${answer.id || requestId}`,
  );
  return parts.join(" · ");
}

async function run(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const [route, prefix, ownFields, samplingRoute] = TASKS[form.id];
  const output = byId(`${prefix}-output`);
  const usage = byId(`${prefix}-usage`);
  const button = byId(`${prefix}-run`);
  const body = readControls(() => ({ ...samplingFields(samplingRoute), ...ownFields() }));
  if (body === null) {
    return;
  }
  button.disabled = true;
  usage.classList.remove("failed");
  output.textContent = "…";
  usage.textContent = "";
  try {
    const { data, requestId } = await callJson(route, { method: "POST", body });
    output.textContent = data.text;
    usage.textContent = describeAnswer(data, requestId);
  } catch (error) {
    output.textContent = "";
    usage.textContent = describeError(error);
    usage.classList.add("failed");
  } finally {
    button.disabled = false;
  }
}

export function setUpTasks() {
  for (const id of Object.keys(TASKS)) {
    byId(id).addEventListener("submit", run);
  }
}
