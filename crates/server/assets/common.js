// Shared helpers of the admin UI: API calls, elements, fields and their
// errors, dialogs, the page frame (navigation, language selector, logout)
// and the banner of a change waiting for confirmation.
import { t, has, lang, locale, setLang, errorText, LANGUAGES } from "./i18n.js";

export const session = { user: "", group: "", csrf: "", second_factor: false };
// Every API call says it comes from the UI, and asks for the UI's language
// (error messages follow it).
const UI = { "x-portcullis-ui": "1", "accept-language": lang() };

// Calls the API. Never throws: answers {ok, status, data, error}, where
// error is the API's {code, message, field} (or a network error).
export async function api(method, path, opts = {}) {
  const headers = { ...UI };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = session.csrf;
  if (opts.json !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(opts.json);
  } else if (opts.form) {
    init.body = opts.form;
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, data: null, error: { code: "unreachable", message: t("err.unreachable"), field: null } };
  }
  if (r.status === 401 && !opts.noRedirect) {
    location.href = "/admin/login?next=" + encodeURIComponent(location.pathname);
    return new Promise(() => {});
  }
  let data = null;
  const type = r.headers.get("content-type") || "";
  if (opts.blob && r.ok) data = await r.blob();
  else if (type.includes("json")) data = await r.json().catch(() => null);
  else data = await r.text().catch(() => "");
  if (r.ok) {
    // An attachment's name, as the server chose it (a backup's carries the host and time).
    const m = /filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "");
    return { ok: true, status: r.status, data, error: null, filename: m ? m[1] : null };
  }
  const error = data && data.error ? data.error : { code: "http_" + r.status, message: t("err.http", { status: r.status }), field: null };
  return { ok: false, status: r.status, data, error };
}

// h("tag", {attrs}, children...): builds an element. Attributes starting
// with "on" are listeners; value/checked/disabled/selected are properties.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (["value", "checked", "disabled", "selected", "multiple"].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces the children of `el` with `children`, leaving out null, false
// and undefined (replaceChildren would show them as the text "null").
export function setChildren(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
}

let uid = 0;
export const newId = (p) => (p || "f") + "-" + ++uid;

// A labelled field with its hint and its error element (role=alert).
// o: {label, path, type, value, hint, options:[[value,label]], attrs, wide}
export function field(o) {
  const id = o.id || newId("f");
  const errId = id + "-err";
  const hintId = o.hint ? id + "-hint" : null;
  const describedBy = [hintId, errId].filter(Boolean).join(" ");
  const common = { id, name: o.name || o.path, "data-field": o.path, "aria-describedby": describedBy, ...(o.attrs || {}) };
  let input;
  if (o.type === "checkbox") {
    input = h("input", { type: "checkbox", checked: !!o.value, ...common });
    return h("div", { class: "field check" + (o.wide ? " wide" : "") }, input, h("label", { for: id, text: o.label }),
      o.hint ? h("p", { class: "hint", id: hintId, text: o.hint }) : null,
      h("p", { class: "err", id: errId, role: "alert" }));
  }
  if (o.type === "select") {
    input = h("select", common, (o.options || []).map(([v, l]) => h("option", { value: v, selected: String(o.value ?? "") === String(v), text: l })));
  } else if (o.type === "textarea") {
    input = h("textarea", { rows: o.rows || 4, ...common, value: o.value ?? "" });
  } else {
    input = h("input", { type: o.type || "text", ...common, value: o.type === "file" ? undefined : o.value ?? "" });
  }
  return h("div", { class: "field" + (o.wide ? " wide" : "") }, h("label", { for: id, text: o.label }), input,
    o.hint ? h("p", { class: "hint", id: hintId, text: o.hint }) : null,
    h("p", { class: "err", id: errId, role: "alert" }));
}

// The input of a field built by field().
export const inputOf = (fieldEl) => fieldEl.querySelector("input,select,textarea");

export function clearErrors(root) {
  for (const el of root.querySelectorAll("[aria-invalid=true]")) el.removeAttribute("aria-invalid");
  for (const el of root.querySelectorAll(".err, .form-alert")) el.textContent = "";
}

// Candidates for an API field path: itself, then without leading segments
// ("profiles.email.x.server" -> "server") and without trailing ones
// ("rules[2].source" -> "rules[2]" -> "rules").
function candidates(path) {
  const out = [];
  const segs = path.split(".");
  for (let i = 0; i < segs.length; i++) {
    let p = segs.slice(i).join(".");
    while (p) {
      out.push(p);
      const m = p.match(/^(.*)(\[\d+\]|\.[^.[\]]+)$/);
      p = m ? m[1] : "";
    }
  }
  return out;
}

// Shows an API error next to its field (aria-invalid, role=alert), or in
// the form's general alert when no field of the form matches.
// The English technical detail (when the message is translated) is the
// element's tooltip.
export function showError(root, error, fallback) {
  const msg = errorText(error);
  const show = (el) => {
    el.textContent = msg;
    if (error.detail) el.title = error.detail; else el.removeAttribute("title");
  };
  if (error.field) {
    for (const c of candidates(error.field)) {
      const input = [...root.querySelectorAll("[data-field]")].find((el) => el.dataset.field === c);
      if (!input) continue;
      input.setAttribute("aria-invalid", "true");
      const err = document.getElementById(input.id + "-err");
      if (err) show(err);
      input.focus();
      return;
    }
  }
  show(fallback || root.querySelector(".form-alert") || document.getElementById("page-alert"));
}

export const formAlert = () => h("p", { class: "form-alert", role: "alert" });

// A polite status message for the whole page.
export function announce(msg) {
  const s = document.getElementById("page-status");
  s.textContent = "";
  clearTimeout(announce.timer);
  setTimeout(() => { s.textContent = msg; }, 30);
  announce.timer = setTimeout(() => { s.textContent = ""; }, 15000);
}

export function pageAlert(msg) {
  document.getElementById("page-alert").textContent = msg || "";
}

// A modal dialog; resolves with the value of the button pressed, or null
// when it is dismissed (Escape).
export function ask(title, body, buttons) {
  return new Promise((resolve) => {
    const d = h("dialog", { "aria-labelledby": "dlg-title" },
      h("h2", { id: "dlg-title", text: title }),
      ...(Array.isArray(body) ? body : [h("p", { text: body })]),
      h("div", { class: "buttons" }, buttons.map((b) =>
        h("button", { type: "button", class: b.primary ? "primary" : b.danger ? "danger" : "", "data-value": b.value,
          onclick: () => { d.close(b.value); } }, b.label))));
    d.addEventListener("close", () => { d.remove(); resolve(d.returnValue && d.returnValue !== "" ? d.returnValue : null); });
    document.body.append(d);
    d.showModal();
    const first = d.querySelector("button.primary") || d.querySelector("button");
    first.focus();
  });
}

export function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toLocaleString(locale(), { dateStyle: "medium", timeStyle: "medium" });
}

// Saves a blob fetched from the API as a file.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Marks a button busy while `work` runs (aria-busy, disabled, label).
export async function busy(button, label, work) {
  const old = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (label) button.textContent = label;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = old;
  }
}

// The addresses the web server answers at with these settings, as links to
// the same page on this host.
export function addressesFor(ws) {
  const host = location.hostname.includes(":") && !location.hostname.startsWith("[") ? "[" + location.hostname + "]" : location.hostname;
  const out = [];
  // An entry is a port number or an object naming its addresses and policy;
  // ports that refuse the admin UI are no place to go on to.
  for (const e of ws.http_enabled ? (ws.http_ports && ws.http_ports.length ? ws.http_ports : [80]) : []) {
    const p = typeof e === "object" && e !== null ? e : { port: e };
    if (p.admin !== false) out.push(`http://${host}:${p.port}${location.pathname}`);
  }
  if (ws.https_enabled && ws.https_admin !== false) out.push(`https://${host}:${ws.https_port || 443}${location.pathname}`);
  return out;
}

export const NAV = [
  ["", "nav.menu"],
  ["webserver", "nav.webserver"],
  ["access-control", "nav.access"],
  ["profiles", "nav.profiles"],
  ["logfile", "nav.logfile"],
  ["events", "nav.events"],
  ["blocked", "nav.blocked"],
  ["users", "nav.users"],
];

// The language selector: each language named in itself; the choice is kept
// in the browser and the page loads again in it.
export function langSelect() {
  return h("select", { id: "lang-select", class: "lang", "aria-label": t("lang.label"), title: t("lang.label"),
    onchange: (ev) => { setLang(ev.target.value); location.reload(); } },
    LANGUAGES.map(([code, name]) => h("option", { value: code, lang: code, selected: code === lang(), text: name })));
}

// Builds the frame of a page: header with navigation, language switch and
// logout; the pending banner; the page's main element (returned).
export function frame(current, titleKey) {
  document.documentElement.lang = lang();
  document.title = t(titleKey) + " – portcullis";
  const header = h("header", { class: "top" },
    h("a", { class: "skip", href: "#main", text: t("skip") }),
    h("span", { class: "brand", text: "portcullis" }),
    h("nav", { "aria-label": t("nav.label") }, h("ul", {}, NAV.filter(([p]) => p !== "profiles" || anyChannel()).map(([p, k]) =>
      h("li", {}, h("a", { href: "/admin/" + p, "aria-current": p === current ? "page" : null, text: t(k) }))))),
    h("div", { class: "who" },
      h("span", { id: "who", text: session.user + " (" + (session.group === "admins" ? t("group.admins") : t("group.users")) + ")" }),
      langSelect(),
      h("button", { type: "button", id: "logout", onclick: logout }, t("logout"))));
  const main = h("main", { id: "main", tabindex: "-1" },
    h("div", { id: "pending", class: "pending", hidden: true }),
    h("h1", { text: t(titleKey) }),
    h("p", { id: "page-alert", class: "page-alert", role: "alert" }),
    h("p", { id: "page-status", class: "page-status", role: "status" }),
    h("div", { id: "content" }));
  document.body.replaceChildren(header, main);
  return main.querySelector("#content");
}

async function logout() {
  await api("DELETE", "/api/v1/session", { noRedirect: true });
  location.href = "/admin/login";
}

// Loads the session; redirects to the login page without one.
export async function loadSession() {
  const r = await api("GET", "/api/v1/session");
  if (!r.ok) return false;
  session.user = r.data.user;
  session.group = r.data.group;
  session.csrf = r.data.csrf_token || "";
  session.second_factor = !!r.data.second_factor;
  // What this build carries: the pages hide what it left out.
  const b = await api("GET", "/api/v1/build");
  if (b.ok) build.features = b.data.features;
  return true;
}

// The optional features of the server's build (GET /api/v1/build); null
// until known, and then everything counts as built.
export const build = { features: null };

// Whether the server's build has the optional feature `name` (`acme`,
// `email`, `ip-notify`, `sip`, `digest`, `webroot`, ...).
export const built = (name) => !build.features || build.features.includes(name);

// The feature of a profile kind in the API's paths.
export const kindFeature = (kind) => (kind === "phone" ? "sip" : kind);

// Whether any notification channel is built.
export const anyChannel = () => ["email", "ip-notify", "sip"].some(built);

let pendingTimer = null;

// Shows the banner of a provisional change (deadline, Confirm, the new
// addresses) while config/status reports one.
export async function refreshPending() {
  const box = document.getElementById("pending");
  if (!box) return null;
  const r = await api("GET", "/api/v1/config/status");
  clearInterval(pendingTimer);
  const p = r.ok ? r.data.pending : null;
  if (!p) {
    box.hidden = true;
    box.replaceChildren();
    return r.ok ? r.data : null;
  }
  const ws = await api("GET", "/api/v1/webserver");
  const links = ws.ok ? addressesFor(ws.data) : [];
  const deadline = new Date(p.deadline);
  const left = h("strong", { id: "pending-left" });
  const tick = () => {
    const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    left.textContent = t("pending.left", { s });
    if (s === 0) { clearInterval(pendingTimer); setTimeout(refreshPending, 1500); }
  };
  const alert = h("p", { class: "form-alert", role: "alert" });
  const confirm = h("button", { type: "button", class: "primary", id: "pending-confirm", onclick: async () => {
    alert.textContent = "";
    const c = await api("POST", "/api/v1/config/confirm");
    if (c.ok) { announce(t("pending.confirmed")); refreshPending(); } else alert.textContent = c.error.message;
  } }, t("pending.confirm"));
  const reason = (p.sections || []).includes("access_control") ? t("pending.reason.access") : t("pending.reason.port");
  setChildren(box,
    h("h2", { text: t("pending.title") }),
    h("p", {}, t("pending.text", { reason, time: fmtTime(p.deadline) }), " ", left),
    links.length ? h("p", {}, t("pending.links")) : null,
    links.length ? h("ul", {}, links.map((u) => h("li", {}, h("a", { href: u, text: u })))) : null,
    confirm, alert);
  box.hidden = false;
  tick();
  pendingTimer = setInterval(tick, 1000);
  return r.data;
}

// A table with a caption and a header row. `body` is either the tbody the
// caller fills (and refills) with its rows, taken as it is, or the rows,
// which get a tbody: a tbody wrapped in a second one would be laid out as
// a single cell of the first column.
export function table(headers, body, caption) {
  return h("table", {}, caption ? h("caption", { text: caption }) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", text: x })))),
    body instanceof HTMLTableSectionElement ? body : h("tbody", {}, body));
}

export function section(title, ...children) {
  const id = newId("sec");
  return h("section", { "aria-labelledby": id }, h("h2", { id, text: title }), ...children);
}

export const note = (text, cls) => h("p", { class: "note" + (cls ? " " + cls : ""), text });
export const warning = (text) => h("p", { class: "warning", text });

// The names of configuration sections (as config/status gives them) in the UI's language.
export const sectionNames = (sections) => sections.map((s) => (has("section." + s) ? t("section." + s) : s)).join(", ");

export { t, lang };
