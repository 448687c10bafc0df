// The interactive page of a trio-dwex app's OpenAPI document: every operation, its
// parameters, body and responses, and a form that sends it. A stream operation shows its
// events as they arrive (read with fetch, so POST bodies and Authorization headers work,
// which EventSource cannot do). Everything is built with DOM calls: no text from the
// document is ever parsed as HTML.
"use strict";

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "query"];
let spec = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function resolve(schema, seen = new Set()) {
  if (!schema || typeof schema !== "object" || !schema.$ref) return schema;
  const ref = schema.$ref;
  if (seen.has(ref) || !ref.startsWith("#/")) return schema;
  seen.add(ref);
  let target = spec;
  for (const part of ref.slice(2).split("/")) target = target && target[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  const { $ref, ...rest } = schema;
  return resolve({ ...(target || {}), ...rest }, seen);
}

// A value that fits `schema`, to start the body editor with.
function example(schema, depth = 0) {
  schema = resolve(schema);
  if (!schema || depth > 6) return null;
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (Array.isArray(schema.anyOf)) return example(schema.anyOf.find((s) => resolve(s).type !== "null") || schema.anyOf[0], depth + 1);
  if (Array.isArray(schema.oneOf)) return example(schema.oneOf[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "object": {
      const out = {};
      const required = new Set(schema.required || []);
      for (const [name, sub] of Object.entries(schema.properties || {})) {
        if (required.has(name) || depth === 0) out[name] = example(sub, depth + 1);
      }
      return out;
    }
    case "array": return [];
    case "integer": case "number": return 0;
    case "boolean": return false;
    case "string": return schema.format === "date-time" ? new Date().toISOString() : "string";
    default: return null;
  }
}

function schemaBlock(schema) {
  return el("pre", { class: "schema" }, JSON.stringify(schema, null, 2));
}

function token() {
  const input = document.getElementById("token");
  return input && input.value.trim();
}

// -- the event-stream format, as a browser parses it ---------------------------------------------

class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.retry = null;
  }
  feed(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // A trailing lone CR may be the first half of CRLF: keep it with the unfinished line.
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }
  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
  dispatch() {
    if (this.data.length) {
      const item = { event: this.event || "message", data: this.data.join("\n") };
      if (this.id !== null) item.id = this.id;
      if (this.retry !== null) item.retry = this.retry;
      this.onEvent(item);
    }
    this.data = [];
    this.event = "";
    this.retry = null;
  }
}

// -- one operation --------------------------------------------------------------------------

function parameterRows(op) {
  const rows = [];
  for (const param of op.parameters || []) {
    const p = resolve(param);
    const input = el("input", {
      type: "text", name: p.name, "data-in": p.in,
      placeholder: p.schema && "default" in p.schema ? String(p.schema.default) : "",
    });
    rows.push(el("tr", {},
      el("td", {}, el("code", {}, p.name), p.required ? " *" : ""),
      el("td", { class: "muted" }, p.in),
      el("td", {}, el("code", {}, JSON.stringify(p.schema || {}))),
      el("td", {}, input)));
  }
  return rows;
}

function isStream(op) {
  const ok = op.responses && resolve(op.responses["200"]);
  return Boolean(ok && ok.content && ok.content["text/event-stream"]);
}

function responseList(op) {
  const items = [];
  for (const [status, response] of Object.entries(op.responses || {})) {
    const r = resolve(response);
    const entry = el("li", {}, el("span", { class: "status" }, status), " ", r.description || "");
    if (Number(status) >= 400) {
      // Every error has the same body; its schema is listed once, under Schemas.
      entry.append(el("span", { class: "muted" }, " (HttpError)"));
      items.push(entry);
      continue;
    }
    for (const [media, content] of Object.entries(r.content || {})) {
      entry.append(el("div", { class: "muted" }, media));
      if (content.itemSchema) {
        const item = content.itemSchema;
        for (const branch of item.oneOf || []) {
          const data = (branch.properties || {}).data || {};
          entry.append(el("h3", {}, "event: ", el("code", {}, branch.title || "")));
          entry.append(schemaBlock(data.contentSchema ? resolve(data.contentSchema) : data));
        }
        if (!item.oneOf) entry.append(schemaBlock(resolve(item)));
      } else if (content.schema) {
        entry.append(schemaBlock(resolve(content.schema)));
      }
    }
    items.push(entry);
  }
  return el("ul", {}, items);
}

// Where the operations are: the document's first server when it is a path on this origin
// (the prefix an app is mounted at), else the root. Other origins are not called from here.
function base() {
  const first = (spec.servers || [])[0];
  const onThisOrigin = first && first.url.startsWith("/") && !first.url.startsWith("//");
  return onThisOrigin ? first.url.replace(/\/+$/, "") : "";
}

async function send(method, path, op, form, output, stopButton) {
  output.replaceChildren();
  let url = base() + path;
  const query = new URLSearchParams();
  const headers = {};
  for (const input of form.querySelectorAll("input[data-in]")) {
    const value = input.value;
    if (value === "") continue;
    const where = input.getAttribute("data-in");
    if (where === "path") url = url.replace(`{${input.name}}`, encodeURIComponent(value));
    else if (where === "query") query.append(input.name, value);
    else if (where === "header") headers[input.name] = value;
  }
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const init = { method: method.toUpperCase(), headers };
  const bodyInput = form.querySelector("textarea[name=body]");
  if (bodyInput && bodyInput.value.trim() !== "") {
    init.body = bodyInput.value;
    headers["Content-Type"] = "application/json";
  }
  const stream = isStream(op);
  if (stream) headers.Accept = "text/event-stream";
  const controller = new AbortController();
  init.signal = controller.signal;
  const full = query.toString() ? `${url}?${query}` : url;
  output.append(el("div", { class: "muted" }, `${init.method} ${full}`));
  let response;
  try {
    response = await fetch(full, init);
  } catch (error) {
    output.append(el("div", { class: "status" }, `failed: ${error}`));
    return;
  }
  output.append(el("div", { class: "status", "data-status": response.status },
    `${response.status} ${response.statusText}`));
  const type = response.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) {
    let text = await response.text();
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
    output.append(el("pre", { class: "response-body" }, text));
    return;
  }
  const list = el("ul", { class: "events" });
  const count = el("div", { class: "muted event-count" }, "0 events");
  output.append(count, list);
  let received = 0;
  const parser = new EventStreamParser((item) => {
    received += 1;
    count.textContent = `${received} event${received === 1 ? "" : "s"}`;
    let data = item.data;
    try { data = JSON.stringify(JSON.parse(data)); } catch (e) { /* text data */ }
    list.append(el("li", { class: "event", "data-event": item.event },
      el("strong", {}, item.event), item.id !== undefined ? ` id=${item.id}` : "", " ", el("code", {}, data)));
    list.scrollTop = list.scrollHeight;
  });
  stopButton.hidden = false;
  stopButton.onclick = () => controller.abort();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
    count.append(" (the stream ended)");
  } catch (error) {
    count.append(controller.signal.aborted ? " (stopped)" : ` (failed: ${error})`);
  } finally {
    stopButton.hidden = true;
  }
}

function operationBlock(method, path, op) {
  const stream = isStream(op);
  const form = el("form", { onsubmit: (event) => event.preventDefault() });
  const rows = parameterRows(op);
  if (rows.length) {
    form.append(el("h3", {}, "Parameters"),
      el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "schema"), el("th", {}, "value")), rows));
  }
  const body = op.requestBody && resolve(op.requestBody);
  if (body && body.content && body.content["application/json"]) {
    const schema = body.content["application/json"].schema;
    form.append(el("h3", {}, "Body", body.required ? " *" : ""), schemaBlock(resolve(schema)),
      el("textarea", { name: "body" }, JSON.stringify(example(schema), null, 2)));
  }
  const output = el("div", { class: "output" });
  const stop = el("button", { type: "button", class: "stop", hidden: true }, "Stop");
  const go = el("button", { type: "submit", class: "send" }, stream ? "Connect" : "Send");
  go.addEventListener("click", () => send(method, path, op, form, output, stop));
  form.append(go, stop, output);
  return el("details", { class: "operation", id: op.operationId || `${method} ${path}`, "data-method": method, "data-path": path },
    el("summary", {},
      el("span", { class: `method ${method}` }, method),
      el("span", { class: "path" }, path),
      stream ? el("span", { class: "badge" }, "event stream") : null,
      el("span", { class: "muted" }, op.summary || "")),
    el("div", { class: "body" },
      op.description ? el("p", {}, op.description) : null,
      op.security ? el("p", { class: "muted" }, "Needs: ", op.security.map((s) => Object.keys(s).join(" + ")).join(" or ")) : null,
      el("h3", {}, "Responses"), responseList(op),
      el("h3", {}, "Try it"), form));
}

function render() {
  document.title = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("title").textContent = spec.info.title;
  document.getElementById("version").textContent = `version ${spec.info.version} · OpenAPI ${spec.openapi}`;
  if (spec.info.description) document.getElementById("description").append(el("p", {}, spec.info.description));
  const schemes = Object.values((spec.components || {}).securitySchemes || {});
  if (schemes.some((s) => s.type === "http" && String(s.scheme).toLowerCase() === "bearer")) {
    document.getElementById("auth").hidden = false;
  }
  const byTag = new Map();
  for (const tag of spec.tags || []) byTag.set(tag.name, { tag, ops: [] });
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const name = (op.tags || ["default"])[0];
      if (!byTag.has(name)) byTag.set(name, { tag: { name }, ops: [] });
      byTag.get(name).ops.push(operationBlock(method, path, op));
    }
  }
  const main = document.getElementById("operations");
  for (const { tag, ops } of byTag.values()) {
    if (!ops.length) continue;
    main.append(el("section", { class: "tag" }, el("h2", {}, tag.name),
      tag.description ? el("p", { class: "muted" }, tag.description) : null, ops));
  }
  const schemas = (spec.components || {}).schemas || {};
  if (Object.keys(schemas).length) {
    document.getElementById("schemas-section").hidden = false;
    for (const [name, schema] of Object.entries(schemas)) {
      document.getElementById("schemas").append(el("details", { id: `schema-${name}` },
        el("summary", {}, el("code", {}, name)), schemaBlock(schema)));
    }
  }
  document.body.setAttribute("data-ready", "");
}

async function main() {
  const url = document.body.getAttribute("data-openapi");
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    spec = await response.json();
  } catch (error) {
    document.getElementById("title").textContent = `Could not load ${url}: ${error}`;
    return;
  }
  render();
}

main();
