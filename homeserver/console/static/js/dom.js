// Building the page: every value from the server becomes a text node or an attribute,
// never markup, so a display name or a description holding HTML is shown as text.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [event, fn] of Object.entries(v)) el.addEventListener(event, fn);
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k === "value" || k === "checked") {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function table(columns, rows, caption) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "muted" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
      h("tbody", {}, rows.length
        ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, c.cell(r)))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing to show.")))));
}

export function input(label, attrs) {
  return h("label", {}, label, h("input", attrs));
}

export function checkbox(label, attrs) {
  return h("label", { class: "check" }, h("input", { type: "checkbox", ...attrs }), label);
}

export function button(text, onClick, attrs) {
  return h("button", { type: "button", ...(attrs || {}), on: { click: onClick } }, text);
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function when(ts) {
  if (!ts) return "never";
  return new Date(ts).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

const statusEl = () => document.getElementById("status");

export function notify(text, isError) {
  const p = h("p", { class: isError ? "error" : "" }, text);
  statusEl().appendChild(p);
  setTimeout(() => p.remove(), isError ? 8000 : 4000);
}

// Run an action, report its outcome, and re-render on success.
export async function act(what, fn, after) {
  try {
    await fn();
    notify(`${what}: done`);
    if (after) await after();
  } catch (e) {
    notify(`${what}: ${e.message}`, true);
  }
}
