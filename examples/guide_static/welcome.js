// The demo's front page: it lists the app's streams from its OpenAPI document and shows each
// one live. fetch() reads the streams (not EventSource) so that the guarded ones can send the
// bearer token; a small parser turns the bytes into events, as a browser's EventSource would.
"use strict";

// Values for the parameters the guide's routes take, by name; anything else gets "demo".
const EXAMPLES = { jobId: "demo-job", userId: "user-1" };
// Bodies for the routes that publish something, so their streams have something to show.
const BODIES = {
  "/activity": { userId: "demo", activity: "opened the demo page" },
  "/notifications": { userId: "user-1", title: "Hello", body: "from the demo page" },
};
const SHOWN = 6; // events kept on each card

const demo = { streams: {}, errors: [] };
window.demo = demo; // read by the tests

function headersFor(operation) {
  const headers = { Accept: "text/event-stream" };
  if ((operation.security || []).length) {
    headers.Authorization = `Bearer ${document.getElementById("token").value}`;
  }
  return headers;
}

function urlFor(path, operation) {
  let url = path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(EXAMPLES[name] || "demo"));
  const query = (operation.parameters || [])
    .filter((parameter) => parameter.in === "query" && parameter.required)
    .map((parameter) => `${parameter.name}=${encodeURIComponent(EXAMPLES[parameter.name] || "demo")}`);
  return query.length ? `${url}?${query.join("&")}` : url;
}

// Bytes to events, by the rules of the event-stream format.
function eventParser(onEvent) {
  let buffer = "";
  let event = { type: "message", data: [], id: "" };
  return (text) => {
    buffer += text;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) onEvent({ ...event, data: event.data.join("\n") });
        event = { type: "message", data: [], id: event.id };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") event.data.push(value);
      else if (field === "event") event.type = value;
      else if (field === "id") event.id = value;
    }
  };
}

function card(path, operation) {
  const section = document.createElement("section");
  section.className = "stream";
  section.innerHTML = "<h2></h2><p class='summary'></p><p class='state'>connecting…</p><ol></ol>";
  section.querySelector("h2").textContent = `GET ${urlFor(path, operation)}`;
  section.querySelector(".summary").textContent = operation.summary || "";
  document.getElementById("streams").append(section);
  return section;
}

async function watch(path, operation) {
  const section = card(path, operation);
  const state = section.querySelector(".state");
  const list = section.querySelector("ol");
  const record = { events: 0, state: "connecting" };
  demo.streams[path] = record;
  const setState = (text, kind) => {
    record.state = kind;
    state.textContent = text;
    state.className = `state ${kind}`;
  };
  try {
    const response = await fetch(urlFor(path, operation), { headers: headersFor(operation) });
    if (!response.ok) {
      setState(`${response.status}: ${(await response.json()).message}`, "failed");
      return;
    }
    setState("live", "live");
    const parse = eventParser((event) => {
      record.events += 1;
      const item = document.createElement("li");
      item.textContent = `${event.type}${event.id ? ` #${event.id}` : ""}: ${event.data.slice(0, 120)}`;
      list.prepend(item);
      while (list.children.length > SHOWN) list.lastChild.remove();
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parse(value);
    }
    setState(`ended after ${record.events} events`, "ended");
  } catch (error) {
    demo.errors.push(String(error));
    setState(String(error), "failed");
  }
}

function button(path, operation) {
  const body = BODIES[path];
  if (!body) return;
  const action = document.createElement("button");
  action.textContent = `POST ${path}`;
  action.addEventListener("click", async () => {
    const headers = { ...headersFor(operation), "Content-Type": "application/json" };
    delete headers.Accept;
    const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    if (!response.ok) demo.errors.push(`POST ${path}: ${response.status}`);
  });
  document.getElementById("actions").append(action);
}

async function main() {
  const document_ = await (await fetch("/openapi.json")).json();
  document.getElementById("loading").remove();
  for (const [path, operations] of Object.entries(document_.paths)) {
    const get = operations.get;
    if (get && get.responses["200"]?.content?.["text/event-stream"]) watch(path, get);
    if (operations.post) button(path, operations.post);
  }
}

main().catch((error) => demo.errors.push(String(error)));
