// The page's entry point: the key form, the tabs, and the views' set-up. Loaded as a module
// from this origin (the CSP allows no inline script).

import { ApiError, callJson, describeError, forgetKey, getKey, setKey, showIn } from "./api.js";
import { setUpChat } from "./chat.js";
import { keyChanged, showMonitor } from "./monitor.js";
import { setUpTasks } from "./tasks.js";

const byId = (id) => document.getElementById(id);

function showKeyError(message) {
  showIn("key-error", message);
}

function setKeyStatus(text) {
  byId("key-status").textContent = text;
}

// Every call reports a refused key (api.js): one clear message, whichever view made the call.
document.addEventListener("gptapi:key-refused", (event) => {
  const error = event.detail;
  if (error.status === 401) {
    showKeyError(`The server refused this key: ${error.message}. Enter a valid key above.`);
    setKeyStatus("Key refused.");
  } else {
    showKeyError(error.message);
  }
});
document.addEventListener("gptapi:key-accepted", () => showKeyError(null));

// Asks the server whether it takes the key (a cheap keyed call), and what it serves.
async function checkKey() {
  setKeyStatus("Checking the key…");
  try {
    const { data } = await callJson("/monitor/stats");
    const serving = data.model ? `serving ${data.model}` : "the model is still loading";
    setKeyStatus(`Key accepted (kept in this tab only); ${serving}.`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      setKeyStatus(describeError(error));
    }
  }
}

function saveKey(event) {
  event.preventDefault();
  const input = byId("api-key");
  const key = input.value.trim();
  if (key === "") {
    showKeyError("Enter a key first.");
    return;
  }
  setKey(key);
  input.value = ""; // not left in the page: sessionStorage holds it for this tab
  checkKey();
  keyChanged();
}

function dropKey() {
  forgetKey();
  byId("api-key").value = "";
  showKeyError(null);
  setKeyStatus("No key: enter one above.");
  keyChanged();
}

function selectTab(tab) {
  for (const other of document.querySelectorAll(".tab")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    byId(other.getAttribute("aria-controls")).hidden = !selected;
  }
  showMonitor(tab.getAttribute("aria-controls") === "monitor");
}

function setUp() {
  byId("key-form").addEventListener("submit", saveKey);
  byId("forget-key").addEventListener("click", dropKey);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => selectTab(tab));
  }
  // Forms never submit (the CSP says form-action 'none'): each is handled by its script.
  byId("sampling").addEventListener("submit", (event) => event.preventDefault());
  setUpChat();
  setUpTasks();
  if (getKey()) {
    checkKey();
  }
  document.body.dataset.ready = "true"; // for tests: the handlers are in place
}

setUp();
