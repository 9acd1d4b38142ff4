// The sampling and structured-output controls (#sampling), read into request fields.
// An empty control is not sent, so the server's own default applies: the defaults differ
// between /v1 (temperature 1, OpenAI's) and the task routes (temperature 0).

import { showIn } from "./api.js";

// [element id, field name, integer?, sent to /v1 too?] (/v1 has no top_k: with
// GPTAPI_V1_STRICT on, an unknown field is a 400).
const NUMBER_CONTROLS = [
  ["temperature", "temperature", false, true],
  ["top-p", "top_p", false, true],
  ["top-k", "top_k", true, false],
  ["max-tokens", "max_tokens", true, true],
  ["seed", "seed", true, true],
  ["presence-penalty", "presence_penalty", false, true],
  ["frequency-penalty", "frequency_penalty", false, true],
  ["repetition-penalty", "repetition_penalty", false, true],
];

class InvalidControl extends Error {}

function numberFrom(id, name, integer) {
  const input = document.getElementById(id);
  if (input.validity.badInput) {
    throw new InvalidControl(`${name} is not a number`);
  }
  const text = input.value.trim();
  if (text === "") {
    return undefined;
  }
  const value = Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new InvalidControl(`${name} must be ${integer ? "a whole number" : "a number"}`);
  }
  return value;
}

function schemaFrom() {
  const text = document.getElementById("json-schema").value.trim();
  if (text === "") {
    return undefined;
  }
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new InvalidControl(`the JSON Schema is not valid JSON: ${error.message}`);
  }
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    throw new InvalidControl("the JSON Schema must be a JSON object");
  }
  return schema;
}

// The fields for one request. ``route``: "chat" (/v1/chat/completions), "generate"
// (/generate-text, which takes stop strings) or "task" (the other two task routes).
export function samplingFields(route) {
  const v1 = route === "chat";
  const fields = {};
  for (const [id, name, integer, toV1] of NUMBER_CONTROLS) {
    if (v1 && !toV1) {
      continue;
    }
    const value = numberFrom(id, name, integer);
    if (value !== undefined) {
      fields[name] = value;
    }
  }
  if (route === "chat" || route === "generate") {
    const stop = document.getElementById("stop").value.split("\n").filter((line) => line !== "");
    if (stop.length > 0) {
      fields.stop = stop;
    }
  }
  const schema = schemaFrom();
  if (schema !== undefined) {
    // The task routes take the schema itself; /v1 takes OpenAI's response_format around it.
    if (v1) {
      fields.response_format = {
        type: "json_schema",
        json_schema: { name: "output", schema, strict: true },
      };
    } else {
      fields.json_schema = schema;
    }
  }
  return fields;
}

// What `read` returns from the controls, or null when one is invalid: then the message says
// which and why (and is hidden again once they read).
export function readControls(read) {
  try {
    const value = read();
    showIn("sampling-error", null);
    return value;
  } catch (error) {
    if (error instanceof InvalidControl) {
      showIn("sampling-error", error.message);
      return null;
    }
    throw error;
  }
}
