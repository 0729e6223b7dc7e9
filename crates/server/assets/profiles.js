// Notification profiles (e-mail, IP Notify, phone): list, edit, delete, send
// a test. Secrets are never shown; an empty password field keeps the stored one.
import { api, h, field, inputOf, clearErrors, showError, formAlert, announce, pageAlert, ask, busy, refreshPending, section, note, table, t, built, kindFeature } from "./common.js";

const KINDS = [
  ["email", "email", "pr.email"],
  ["ip-notify", "ip_notify", "pr.ipnotify"],
  ["phone", "phone", "pr.phone"],
];

const lines = (s) => s.split(/[\n,]+/).map((x) => x.trim()).filter(Boolean);
const num = (s) => { s = String(s).trim(); return s === "" ? null : /^\d+$/.test(s) ? Number(s) : s; };
const opt = (s) => (s.trim() === "" ? null : s.trim());

// The editor's fields per kind: [key, field options, to form value, from form value].
function fieldsFor(kind) {
  if (kind === "email") return [
    ["server", { label: t("pr.server"), attrs: { autocomplete: "off" } }],
    ["port", { label: t("pr.port"), hint: t("pr.port.hint"), attrs: { inputmode: "numeric" } }, (v) => v ?? "", num],
    ["security", { label: t("pr.security"), type: "select", options: [["none", t("pr.sec.none")], ["starttls", "STARTTLS"], ["tls", "TLS"]] }],
    ["username", { label: t("pr.username"), hint: t("pr.username.hint"), attrs: { autocomplete: "off" } }, (v) => v ?? "", opt],
    ["password", { label: t("pr.password"), type: "password", attrs: { autocomplete: "new-password" } }],
    ["from", { label: t("pr.from"), type: "email" }],
    ["to", { label: t("pr.to"), type: "textarea", rows: 2, hint: t("pr.to.hint") }, (v) => (v || []).join("\n"), lines],
    ["subject", { label: t("pr.subject"), wide: true }],
    ["body", { label: t("pr.body"), type: "textarea", rows: 6, hint: t("pr.placeholders"), wide: true }],
    ["ca_pem", { label: t("pr.ca"), type: "textarea", rows: 3, hint: t("pr.ca.hint"), wide: true }, (v) => v ?? "", opt],
  ];
  if (kind === "ip-notify") return [
    ["destinations", { label: t("pr.destinations"), type: "textarea", rows: 3, hint: t("pr.destinations.hint") }, (v) => (v || []).join("\n"), lines],
    ["protocol", { label: t("pr.protocol"), type: "select", options: [["tcp", t("pr.tcp")], ["http", "HTTP"], ["https", "HTTPS"]] }],
    ["mode", { label: t("pr.mode"), type: "select", options: [["parallel", t("pr.mode.parallel")], ["sequential", t("pr.mode.sequential")], ["next_on_error", t("pr.mode.next")]] }],
    ["method", { label: t("pr.method") }],
    ["path", { label: t("pr.path") }],
    ["username", { label: t("pr.username"), hint: t("pr.username.hint"), attrs: { autocomplete: "off" } }, (v) => v ?? "", opt],
    ["password", { label: t("pr.password"), type: "password", attrs: { autocomplete: "new-password" } }],
    ["content_type", { label: t("pr.contenttype") }],
    ["body", { label: t("pr.body"), type: "textarea", rows: 5, hint: t("pr.placeholders"), wide: true }],
    ["ca_pem", { label: t("pr.ca"), type: "textarea", rows: 3, hint: t("pr.ca.hint"), wide: true }, (v) => v ?? "", opt],
  ];
  return [
    ["uri", { label: t("pr.uri"), hint: t("pr.uri.hint"), attrs: { placeholder: "sip:100@pbx.example" } }],
    ["transport", { label: t("pr.transport"), type: "select", options: [["udp", "UDP"], ["tcp", "TCP"]] }],
    ["registrar", { label: t("pr.registrar"), hint: t("pr.registrar.hint") }, (v) => v ?? "", opt],
    ["username", { label: t("pr.username"), hint: t("pr.username.hint"), attrs: { autocomplete: "off" } }, (v) => v ?? "", opt],
    ["password", { label: t("pr.password"), type: "password", attrs: { autocomplete: "new-password" } }],
    ["ring_timeout_seconds", { label: t("pr.ring") , attrs: { inputmode: "numeric" } }, (v) => v ?? "", num],
    ["audio", { label: t("pr.audio"), type: "file", hint: t("pr.audio.hint"), attrs: { accept: ".wav,audio/wav" } }],
  ];
}

export async function renderProfiles(root) {
  const lists = h("div", {});
  const editor = h("div", { id: "editor" });
  root.replaceChildren(note(t("pr.text")), lists, editor);
  let all = null;

  async function load() {
    const r = await api("GET", "/api/v1/profiles");
    if (r.status === 404) { lists.replaceChildren(note(t("pr.unavailable"))); return; }
    if (!r.ok) { pageAlert(r.error.message); return; }
    all = r.data;
    // Only the channels this build carries.
    lists.replaceChildren(...KINDS.filter(([kind]) => built(kindFeature(kind))).map(([kind, key, title]) => {
      const names = Object.keys(all[key] || {});
      const rows = names.length ? names.map((name) => {
        const result = h("span", { class: "test-result", id: `test-${kind}-${name}`, role: "status" });
        const testBtn = h("button", { type: "button", class: "small", "aria-label": t("pr.testn", { name }), onclick: async () => {
          result.textContent = t("pr.testing");
          result.className = "test-result";
          const x = await busy(testBtn, t("working"), () => api("POST", `/api/v1/profiles/${kind}/${encodeURIComponent(name)}/test`));
          if (!x.ok) { result.textContent = x.error.message; result.className = "test-result bad"; return; }
          result.textContent = (x.data.ok ? t("pr.test.ok") : t("pr.test.failed")) + " " + x.data.message;
          result.className = "test-result " + (x.data.ok ? "good" : "bad");
        } }, t("pr.test"));
        return h("tr", {}, h("td", { text: name }), h("td", { text: summary(kind, all[key][name]) }),
          h("td", {},
            h("button", { type: "button", class: "small", "aria-label": t("pr.editn", { name }), onclick: () => edit(kind, name, all[key][name]) }, t("pr.edit")), " ",
            testBtn, " ",
            h("button", { type: "button", class: "small danger", "aria-label": t("pr.deleten", { name }), onclick: () => del(kind, name) }, t("pr.delete")), " ",
            result));
      }) : [h("tr", {}, h("td", { colspan: 3, text: t("pr.none") }))];
      return section(t(title), table([t("pr.name"), t("pr.summary"), t("actions")], rows),
        h("button", { type: "button", class: "small", id: "new-" + kind, onclick: () => edit(kind, null, null) }, t("pr.new")));
    }));
  }

  function summary(kind, p) {
    if (kind === "email") return `${p.server}${p.port ? ":" + p.port : ""} → ${(p.to || []).join(", ")}`;
    if (kind === "ip-notify") return `${p.protocol} ${(p.destinations || []).join(", ")}`;
    return `${p.uri} (${p.transport})`;
  }

  async function del(kind, name) {
    const v = await ask(t("pr.delete.title"), t("pr.delete.text", { name }), [{ label: t("pr.delete"), value: "delete", danger: true }, { label: t("btn.cancel"), value: "cancel" }]);
    if (v !== "delete") return;
    const x = await api("DELETE", `/api/v1/profiles/${kind}/${encodeURIComponent(name)}`);
    if (!x.ok) { pageAlert(x.error.message); return; }
    announce(t("pr.deleted", { name }));
    editor.replaceChildren();
    await load();
  }

  function edit(kind, name, profile) {
    const defs = fieldsFor(kind);
    const f = h("form", { id: "profile-form", novalidate: true, class: "grid" });
    const nameField = field({ label: t("pr.name"), path: "name", id: "pf-name", value: name || "", attrs: name ? { readonly: true } : { required: true, autocomplete: "off" } });
    f.append(nameField);
    const inputs = {};
    for (const [key, o, to] of defs) {
      let value = profile ? profile[key] : undefined;
      if (to) value = to(value);
      if (key === "password" || key === "audio") value = "";
      const fe = field({ ...o, path: key, id: "pf-" + key, value: value ?? (o.type === "select" ? o.options[0][0] : "") ,
        hint: key === "password" && name ? t("pr.password.keep") : key === "audio" && profile && profile.audio ? t("pr.audio.keep") : o.hint });
      inputs[key] = inputOf(fe);
      f.append(fe);
    }
    if (!profile) {
      // New profile: the server's defaults for templates and the like.
      if (inputs.subject) inputs.subject.value = "[{device}] {event}: {message}";
      if (inputs.body && kind === "email") inputs.body.value = t("pr.default.body");
      if (kind === "email") inputs.security.value = "starttls";
      if (kind === "ip-notify") {
        inputs.protocol.value = "http";
        inputs.method.value = "POST";
        inputs.path.value = "/";
        inputs.content_type.value = "application/json";
        inputs.body.value = '{"device":"{device}","event":"{event}","message":"{message}","client_ip":"{client_ip}","user":"{user}","count":{count},"time":"{time}"}';
      }
      if (kind === "phone") inputs.ring_timeout_seconds.value = "30";
    }
    f.append(h("div", { class: "wide" }, note(t("pr.test.note")), formAlert(), h("div", { class: "buttons" },
      h("button", { type: "submit", class: "primary", id: "profile-save" }, t("btn.set")),
      h("button", { type: "button", onclick: () => editor.replaceChildren() }, t("btn.cancel")))));
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(f);
      const pname = inputOf(nameField).value.trim();
      if (!pname) { showError(f, { field: "name", message: t("pr.namerequired") }); return; }
      const body = { ...(profile || {}) };
      for (const [key, o, , from] of defs) {
        const el = inputs[key];
        if (key === "password") { if (el.value) body.password = el.value; else delete body.password; continue; }
        if (key === "audio") {
          const file = el.files[0];
          if (file) body.audio = await toBase64(file); else if (!profile) delete body.audio;
          continue;
        }
        body[key] = from ? from(el.value) : el.value;
      }
      const x = await api("PUT", `/api/v1/profiles/${kind}/${encodeURIComponent(pname)}`, { json: body });
      if (!x.ok) { showError(f, x.error); return; }
      editor.replaceChildren();
      announce(t("pr.saved", { name: pname }));
      await load();
      refreshPending();
    });
    editor.replaceChildren(section(name ? t("pr.editing", { name }) : t("pr.creating", { kind: t(KINDS.find((k) => k[0] === kind)[2]) }), f));
    (name ? f.querySelectorAll("input,select,textarea")[1] : inputOf(nameField)).focus();
  }

  await load();
}

function toBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = reject;
    r.readAsDataURL(file);
  });
}
