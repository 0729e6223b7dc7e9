// The pages the Web Server dialog leads to: the admin menu, IP-level access
// control, the web server logfile, the event log, blocked addresses, users
// (with their API tokens).
import {
  api, h, field, inputOf, clearErrors, showError, formAlert, announce, pageAlert, ask, fmtTime, saveBlob, busy,
  refreshPending, section, note, warning, table, session, sectionNames, t, built, anyChannel, setChildren,
} from "./common.js";
import { has } from "./i18n.js";
import { rebootButton, closeAction } from "./webserver.js";

// ---- admin menu --------------------------------------------------------------

export async function renderMenu(root) {
  const flash = sessionStorage.getItem("portcullis-flash");
  if (flash) { sessionStorage.removeItem("portcullis-flash"); announce(flash); }
  const statusBox = h("div", { id: "config-status" });
  const storeBtn = h("button", { type: "button", id: "store", class: "primary", onclick: async () => {
    const r = await busy(storeBtn, t("working"), () => api("POST", "/api/v1/config/store"));
    if (!r.ok) { pageAlert(r.error.message); return; }
    announce(t("store.done"));
    showStatus(r.data);
  } }, t("btn.storeconfig"));
  const items = [
    ["webserver", "nav.webserver", "menu.webserver"],
    ["access-control", "nav.access", "menu.access"],
    ["profiles", "nav.profiles", "menu.profiles"],
    ["fleet", "nav.fleet", "menu.fleet"],
    ["logfile", "nav.logfile", "menu.logfile"],
    ["events", "nav.events", "menu.events"],
    ["blocked", "nav.blocked", "menu.blocked"],
    ["users", "nav.users", "menu.users"],
  ].filter(([p]) => (p !== "profiles" || anyChannel()) && (p !== "fleet" || ["metrics", "syslog", "crowdsec"].some(built)));
  // setChildren: a viewer, or a build without the `backup` feature, has no
  // backup section, and null must not show.
  setChildren(root,
    section(t("menu.dialogs"), h("ul", { class: "menu" }, items.map(([p, k, d]) =>
      h("li", {}, h("a", { href: "/admin/" + p, text: t(k) }), h("span", { text: " – " + t(d) }))))),
    section(t("menu.config"), statusBox, h("div", { class: "buttons" }, storeBtn, rebootButton(load)), note(t("menu.config.note"))),
    session.group === "admins" && built("backup") ? backupSection(() => lastStatus, () => load()) : null);
  let lastStatus = null;
  function showStatus(s) {
    lastStatus = s;
    const lines = [h("p", { id: "unsaved", text: s.unsaved_changes ? t("menu.unsaved", { sections: sectionNames(s.changed_sections) }) : t("menu.saved") })];
    if (s.load && s.load.source !== "stored") lines.push(warning(t("menu.loadsource", { source: has("menu.source." + s.load.source) ? t("menu.source." + s.load.source) : s.load.source })));
    for (const p of (s.load && s.load.problems) || []) lines.push(warning(p));
    for (const w of s.warnings || []) lines.push(warning(w));
    statusBox.replaceChildren(...lines);
  }
  async function load() {
    const r = await api("GET", "/api/v1/config/status");
    if (r.ok) showStatus(r.data); else pageAlert(r.error.message);
  }
  await load();
}

// ---- backup and restore ---------------------------------------------------------

// Export (the passphrase twice, the certificate if chosen) downloads the
// file; import (file and passphrase) shows the answer, which is a Set's:
// 202 when provisional (the banner then asks for the confirmation).
// `status()` is the configuration status last shown, `reload()` shows it anew.
function backupSection(status, reload) {
  const exportForm = h("form", { id: "backup-export", novalidate: true });
  const p1 = field({ label: t("backup.passphrase"), path: "passphrase", type: "password", hint: t("backup.passphrase.hint"), attrs: { autocomplete: "new-password", minlength: 12 } });
  const p2 = field({ label: t("backup.passphrase2"), path: "passphrase2", type: "password", attrs: { autocomplete: "new-password" } });
  const withCert = field({ label: t("backup.includecert"), path: "include_certificate", type: "checkbox", hint: t("backup.includecert.hint") });
  const exportAlert = formAlert();
  const unsaved = h("div", {});
  const exportBtn = h("button", { type: "submit", id: "backup-export-btn", class: "primary" }, t("backup.export"));
  setChildren(exportForm, h("h3", { text: t("backup.export.title") }), unsaved, p1, p2, withCert, exportAlert, h("div", { class: "buttons" }, exportBtn));
  exportForm.addEventListener("focusin", () => {
    const s = status();
    setChildren(unsaved, s && s.unsaved_changes ? warning(t("backup.unsaved")) : null);
  });
  exportForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(exportForm);
    const passphrase = inputOf(p1).value;
    if (passphrase !== inputOf(p2).value) {
      showError(exportForm, { code: "mismatch", message: t("backup.mismatch"), field: "passphrase2" });
      return;
    }
    const r = await busy(exportBtn, t("working"), () => api("POST", "/api/v1/config/export", { json: { passphrase, include_certificate: inputOf(withCert).checked }, blob: true }));
    if (!r.ok) { showError(exportForm, r.error); return; }
    saveBlob(r.data, r.filename || "portcullis-backup.age");
    inputOf(p1).value = ""; inputOf(p2).value = "";
    announce(t("backup.exported"));
  });

  const importForm = h("form", { id: "backup-import", novalidate: true });
  const file = field({ label: t("backup.file"), path: "file", type: "file", attrs: { accept: ".age,application/octet-stream" } });
  const ip = field({ label: t("backup.passphrase"), path: "passphrase", type: "password", attrs: { autocomplete: "off" } });
  const installCert = field({ label: t("backup.installcert"), path: "include_certificate", type: "checkbox", hint: t("backup.installcert.hint") });
  const importAlert = formAlert();
  const result = h("div", { id: "backup-result", "aria-live": "polite" });
  const importBtn = h("button", { type: "submit", id: "backup-import-btn", class: "primary" }, t("backup.import"));
  setChildren(importForm, h("h3", { text: t("backup.import.title") }), file, ip, installCert, importAlert, h("div", { class: "buttons" }, importBtn), result);
  importForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(importForm);
    result.replaceChildren();
    const chosen = inputOf(file).files[0];
    // Without a file the server's refusal names the field, in the UI's language.
    if (chosen) {
      const go = await ask(t("backup.ask.title"), t("backup.ask.body"), [
        { value: "import", label: t("backup.import"), primary: true }, { value: "cancel", label: t("btn.cancel") }]);
      if (go !== "import") return;
    }
    const fd = new FormData();
    if (chosen) fd.append("file", chosen);
    fd.append("passphrase", inputOf(ip).value);
    fd.append("include_certificate", inputOf(installCert).checked ? "true" : "false");
    const r = await busy(importBtn, t("working"), () => api("POST", "/api/v1/config/import", { form: fd }));
    if (!r.ok) { showError(importForm, r.error); return; }
    inputOf(ip).value = "";
    const outcome = r.status === 202 ? r.data.settings : r.data;
    const lines = [h("p", { id: "backup-imported", text: t("backup.imported", { host: outcome.backup.host_name, created: fmtTime(outcome.backup.created) }) })];
    if (outcome.certificate === "installed") lines.push(h("p", { id: "backup-cert", text: t("backup.cert.installed") }));
    if (outcome.certificate === "skipped") lines.push(warning(t("backup.cert.skipped")));
    result.replaceChildren(...lines);
    announce(lines[0].textContent);
    // The imported settings are running, not stored: the status above says so.
    await reload();
    await refreshPending();
  });
  return section(t("backup.title"), note(t("backup.note")), exportForm, importForm);
}

// ---- IP-level access control ----------------------------------------------------

const KINDS = ["allow", "temporary_allow", "deny", "temporary_deny", "inactive"];

export async function renderAccess(root) {
  const r = await api("GET", "/api/v1/access-control");
  if (!r.ok) { pageAlert(r.error.message); return; }
  let loaded = r.data;
  const form = h("form", { id: "ac-form", novalidate: true });
  const enabled = field({ label: t("ac.enabled"), path: "enabled", type: "checkbox", hint: t("ac.enabled.hint") });
  const noMatch = field({ label: t("ac.nomatch"), path: "no_match", type: "select", options: [["allow", t("ac.allow")], ["deny", t("ac.deny")]], hint: t("ac.nomatch.hint") });
  const rulesBody = h("tbody", {});
  const rulesTable = h("table", { class: "rules" }, h("caption", { text: t("ac.rules") }),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("ac.kind") }), h("th", { scope: "col", text: t("ac.source") }), h("th", { scope: "col", text: t("actions") }))),
    rulesBody);
  const ruleRow = (rule) => {
    const tr = h("tr", {});
    const kind = field({ label: t("ac.kind"), path: "rules[]", type: "select", value: rule.kind, options: KINDS.map((k) => [k, t("ac.kind." + k)]) });
    const source = field({ label: t("ac.source"), path: "rules[]", value: rule.source, attrs: { autocomplete: "off", placeholder: "192.168.1.0/24" } });
    for (const f of [kind, source]) f.querySelector("label").classList.add("visually-hidden");
    const remove = h("button", { type: "button", class: "small", onclick: () => { tr.remove(); renumber(); } }, t("ac.remove"));
    tr.append(h("td", {}, kind), h("td", {}, source), h("td", {}, remove));
    tr.renumber = (i) => {
      inputOf(kind).dataset.field = `rules[${i}].kind`;
      inputOf(source).dataset.field = `rules[${i}].source`;
      remove.setAttribute("aria-label", t("ac.removen", { n: i + 1 }));
    };
    return tr;
  };
  const renumber = () => [...rulesBody.children].forEach((tr, i) => tr.renumber(i));
  const addRule = h("button", { type: "button", id: "add-rule", class: "small", onclick: () => {
    const tr = ruleRow({ kind: "allow", source: "" }); rulesBody.append(tr); renumber(); tr.querySelector("select").focus();
  } }, t("ac.add"));
  const proxies = field({ label: t("ac.proxies"), path: "trusted_proxies", type: "textarea", rows: 3, hint: t("ac.proxies.hint") });
  const forceBox = h("div", { id: "force-box" });
  form.append(
    warning(t("ac.warning")), enabled, noMatch,
    h("div", { class: "field", "data-field-group": "rules" }, rulesTable, addRule, h("p", { class: "err", id: "rules-err", role: "alert" }),
      h("input", { type: "hidden", id: "rules", "data-field": "rules" })),
    note(t("ac.note.allow")), proxies, formAlert(), forceBox,
    h("div", { class: "buttons" },
      h("button", { type: "submit", id: "set", class: "primary" }, t("btn.set")),
      h("button", { type: "button", id: "restore", onclick: async () => {
        const v = await ask(t("restore.title"), t("restore.text"), [{ label: t("btn.restore"), value: "restore", primary: true }, { label: t("btn.cancel"), value: "cancel" }]);
        if (v !== "restore") return;
        const x = await api("POST", "/api/v1/config/restore");
        if (!x.ok) { pageAlert(x.error.message); return; }
        const y = await api("GET", "/api/v1/access-control");
        if (y.ok) { loaded = y.data; fill(); }
        announce(t("restore.done"));
      } }, t("btn.restore")),
      h("button", { type: "button", id: "close", onclick: () => closeAction(false) }, t("btn.close"))));
  root.replaceChildren(form);
  function fill() {
    inputOf(enabled).checked = !!loaded.enabled;
    inputOf(noMatch).value = loaded.no_match || "allow";
    rulesBody.replaceChildren(...(loaded.rules || []).map(ruleRow));
    renumber();
    inputOf(proxies).value = (loaded.trusted_proxies || []).join("\n");
  }
  fill();
  function collect() {
    return {
      ...loaded,
      enabled: inputOf(enabled).checked,
      no_match: inputOf(noMatch).value,
      rules: [...rulesBody.children].map((tr) => ({ kind: tr.querySelector("select").value, source: tr.querySelector("input").value.trim() })),
      trusted_proxies: inputOf(proxies).value.split(/[\s,]+/).filter(Boolean),
    };
  }
  async function set(force) {
    clearErrors(form);
    forceBox.replaceChildren();
    const x = await api("PUT", "/api/v1/access-control" + (force ? "?force=true" : ""), { json: collect() });
    if (!x.ok) {
      showError(form, x.error);
      if (x.error.code === "would_lock_out") {
        forceBox.replaceChildren(warning(t("ac.lockout")), h("button", { type: "button", id: "force", class: "danger", onclick: () => set(true) }, t("ac.force")));
      }
      return;
    }
    // 202: applied provisionally (forced rules that deny this address); the
    // banner shows the deadline and the Confirm button.
    loaded = x.status === 202 ? x.data.settings : x.data;
    fill();
    await refreshPending();
    announce(x.status === 202 ? t("ac.setpending", { deadline: fmtTime(x.data.deadline) }) : t("ac.setdone"));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); set(false); });
}

// ---- logfile -----------------------------------------------------------------------

export async function renderLogfile(root) {
  const body = h("tbody", {});
  const refresh = h("button", { type: "button", id: "refresh", onclick: load }, t("btn.refresh"));
  const text = h("button", { type: "button", id: "download-text", onclick: async () => {
    const r = await api("GET", "/api/v1/logfile?format=text", { blob: true });
    if (r.ok) saveBlob(r.data, "logfile.txt"); else pageAlert(r.error.message);
  } }, t("log.text"));
  root.replaceChildren(note(t("log.text.note")), h("div", { class: "buttons" }, refresh, text),
    h("div", { class: "scroll" }, table([t("log.client"), t("log.user"), t("log.outcome"), t("log.count"), t("log.first"), t("log.last"), t("log.url")], body, t("log.caption"))));
  async function load() {
    const r = await api("GET", "/api/v1/logfile");
    if (!r.ok) { pageAlert(r.error.message); return; }
    const entries = [...r.data.entries].reverse();
    body.replaceChildren(...(entries.length ? entries.map((e) => h("tr", { class: e.authorized ? "" : "failed" },
      h("td", { text: e.client_ip }), h("td", { text: e.user ?? "–" }), h("td", { text: e.authorized ? t("log.ok") : t("log.failed") }),
      h("td", { class: "num", text: e.count }), h("td", { text: fmtTime(e.first) }), h("td", { text: fmtTime(e.last) }), h("td", { class: "url", text: e.last_url })))
      : [h("tr", {}, h("td", { colspan: 7, text: t("log.empty") }))]));
  }
  await load();
}

// ---- event log -------------------------------------------------------------------------

export async function renderEvents(root) {
  const body = h("tbody", {});
  const kindSel = field({ label: t("ev.filter"), path: "kind", type: "select", id: "ev-kind", value: "",
    options: [["", t("ev.all")], ...["intrusion_alert", "client_blocked", "client_unblocked", "config_changed", "config_stored", "config_restored", "config_confirmed", "config_rolled_back", "config_exported", "config_imported", "certificate_changed", "certificate_downloaded", "notification_sent", "notification_failed", "user_changed", "token_created", "token_revoked", "account_locked", "second_factor_enrolled", "second_factor_reset", "recovery_code_used", "storage_full", "syslog_dropped", "crowdsec_unreachable", "crowdsec_alert_failed", "reboot", "startup"].map((k) => [k, t("ev." + k)])] });
  let events = [];
  inputOf(kindSel).addEventListener("change", show);
  root.replaceChildren(note(t("ev.text")), h("div", { class: "toolbar" }, kindSel, h("button", { type: "button", id: "refresh", onclick: load }, t("btn.refresh"))),
    h("div", { class: "scroll" }, table([t("ev.time"), t("ev.kind"), t("ev.user"), t("ev.client"), t("ev.message")], body, t("ev.caption"))));
  function show() {
    const k = inputOf(kindSel).value;
    const list = events.filter((e) => !k || e.kind === k).reverse();
    body.replaceChildren(...(list.length ? list.map((e) => h("tr", { class: e.kind }, h("td", { text: fmtTime(e.time) }), h("td", { text: t("ev." + e.kind) }),
      h("td", { text: e.actor && e.actor.user ? e.actor.user : "–" }), h("td", { text: e.actor && e.actor.client_ip ? e.actor.client_ip : "–" }), h("td", { text: eventText(e) })))
      : [h("tr", {}, h("td", { colspan: 5, text: t("ev.empty") }))]));
  }
  // The message, with what the details add for people: the user name a
  // client tried (it is no actor), the settings a change touched.
  function eventText(e) {
    const d = e.details || {};
    const more = [];
    if (d.attempted_user) more.push(t("ev.attempted", { user: d.attempted_user }));
    if (Array.isArray(d.fields) && d.fields.length) more.push(t("ev.fields", { fields: d.fields.join(", ") + (d.more ? " …" : "") }));
    return more.length ? e.message + " (" + more.join("; ") + ")" : e.message;
  }
  async function load() {
    const r = await api("GET", "/api/v1/events?limit=1000");
    if (!r.ok) { pageAlert(r.error.message); return; }
    events = r.data.events;
    show();
  }
  await load();
}

// ---- blocked addresses ------------------------------------------------------------------

export async function renderBlocked(root) {
  const body = h("tbody", {});
  root.replaceChildren(note(t("bl.text")), h("div", { class: "buttons" }, h("button", { type: "button", id: "refresh", onclick: load }, t("btn.refresh"))),
    table([t("bl.address"), t("bl.since"), t("bl.last"), t("bl.until"), t("actions")], body, t("bl.caption")));
  async function load() {
    const r = await api("GET", "/api/v1/blocked");
    if (!r.ok) { pageAlert(r.error.message); return; }
    body.replaceChildren(...(r.data.length ? r.data.map((b) => {
      const btn = h("button", { type: "button", class: "small", "aria-label": t("bl.unblockn", { address: b.address }), onclick: async () => {
        const x = await api("DELETE", "/api/v1/blocked?address=" + encodeURIComponent(b.address.replace(/\/\d+$/, "")));
        if (!x.ok) { pageAlert(x.error.message); return; }
        announce(t("bl.done", { address: x.data.address }));
        await load();
      } }, t("bl.unblock"));
      if (b.origin === "crowdsec") return h("tr", { class: "crowdsec" }, h("td", { text: b.address }), h("td", { text: t("bl.crowdsec", { by: b.decided_by || "", until: fmtTime(b.until) }) }), h("td", { text: "" }), h("td", { text: fmtTime(b.until) }), h("td", {}));
      // A block without an end lasts until the next reboot (the factory way).
      const until = b.until ? fmtTime(b.until) : t("bl.untilreboot");
      return h("tr", {}, h("td", { text: b.address }), h("td", { text: fmtTime(b.since) }), h("td", { text: fmtTime(b.last_failure) }), h("td", { class: "until", text: until }), h("td", {}, btn));
    }) : [h("tr", {}, h("td", { colspan: 5, text: t("bl.empty") }))]));
  }
  await load();
}

// ---- users ------------------------------------------------------------------------------

export async function renderUsers(root) {
  const admin = session.group === "admins";
  const body = h("tbody", {});
  const groupOptions = [["users", t("group.users")], ["admins", t("group.admins")]];
  const addForm = h("form", { id: "user-add", novalidate: true, class: "grid" },
    field({ label: t("us.name"), path: "name", id: "nu-name", attrs: { autocomplete: "off", required: true } }),
    field({ label: t("us.group"), path: "group", id: "nu-group", type: "select", value: "users", options: groupOptions }),
    field({ label: t("us.password"), path: "password", id: "nu-pass", type: "password", attrs: { autocomplete: "new-password" }, hint: t("us.password.hint") }),
    h("div", { class: "wide" }, formAlert(), h("button", { type: "submit", class: "primary" }, t("us.add"))));
  addForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(addForm);
    const name = addForm.querySelector("#nu-name").value.trim();
    if (!name) { showError(addForm, { field: "name", message: t("us.namerequired") }); return; }
    const x = await api("PUT", "/api/v1/users/" + encodeURIComponent(name), { json: { group: addForm.querySelector("#nu-group").value, password: addForm.querySelector("#nu-pass").value } });
    if (!x.ok) { showError(addForm, x.error); return; }
    addForm.reset();
    announce(t("us.saved", { name }));
    await load();
  });

  const authBox = h("div", {});
  const tokensBox = h("div", { id: "tokens" });
  const factorBox = h("div", { id: "second-factor" });
  const totp = built("totp");
  setChildren(root,
    section(t("us.accounts"), table([t("us.name"), t("us.group"), totp ? t("tf.column") : null, t("actions")].filter(Boolean), body, t("us.caption"))),
    totp ? factorBox : null,
    admin ? section(t("us.new"), addForm) : null,
    admin ? tokensBox : null,
    admin ? authBox : null);

  async function changePassword(u) {
    // One's own password is changed only with the current one (the server insists).
    const own = u.name === session.user;
    const f = h("form", { novalidate: true },
      own ? field({ label: t("us.currentpassword"), path: "current_password", id: "cp-current", type: "password", attrs: { autocomplete: "current-password" } }) : null,
      field({ label: t("us.newpassword"), path: "password", id: "cp-pass", type: "password", attrs: { autocomplete: "new-password" } }),
      admin ? field({ label: t("us.group"), path: "group", id: "cp-group", type: "select", value: u.group, options: groupOptions }) : null,
      formAlert(),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, t("btn.save")), h("button", { type: "button", value: "cancel", onclick: () => d.close() }, t("btn.cancel"))));
    const d = h("dialog", { "aria-label": t("us.edit", { name: u.name }) }, h("h2", { text: t("us.edit", { name: u.name }) }), f);
    d.addEventListener("close", () => d.remove());
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(f);
      const body = {};
      const p = f.querySelector("#cp-pass").value;
      if (p) body.password = p;
      if (p && own) body.current_password = f.querySelector("#cp-current").value;
      if (admin && f.querySelector("#cp-group").value !== u.group) body.group = f.querySelector("#cp-group").value;
      const x = await api("PUT", "/api/v1/users/" + encodeURIComponent(u.name), { json: body });
      if (!x.ok) { showError(f, x.error); return; }
      d.close();
      announce(t("us.saved", { name: u.name }));
      await load();
    });
    document.body.append(d);
    d.showModal();
    f.querySelector("input").focus();
  }

  async function load() {
    let users;
    if (admin) {
      const r = await api("GET", "/api/v1/users");
      if (!r.ok) { pageAlert(r.error.message); return; }
      users = r.data;
    } else users = [{ name: session.user, group: session.group, second_factor: session.second_factor }];
    body.replaceChildren(...users.map((u) => h("tr", {},
      h("td", { text: u.name + (u.name === session.user ? " " + t("us.you") : "") }),
      h("td", { text: u.group === "admins" ? t("group.admins") : t("group.users") }),
      totp ? h("td", { text: u.second_factor ? t("yes") : t("no") }) : null,
      h("td", {}, h("button", { type: "button", class: "small", "aria-label": t("us.editn", { name: u.name }), onclick: () => changePassword(u) }, t("us.change")), " ",
        admin && totp && u.second_factor && u.name !== session.user ? h("button", { type: "button", class: "small danger", "aria-label": t("tf.resetn", { name: u.name }), onclick: async () => {
          const v = await ask(t("tf.reset.title"), t("tf.reset.text", { name: u.name }), [{ label: t("tf.reset"), value: "reset", danger: true }, { label: t("btn.cancel"), value: "cancel" }]);
          if (v !== "reset") return;
          const x = await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.name) + "/totp");
          if (!x.ok) { pageAlert(x.error.message); return; }
          announce(t("tf.wasreset", { name: u.name }));
          await load();
        } }, t("tf.reset")) : null, " ",
        admin ? h("button", { type: "button", class: "small danger", "aria-label": t("us.deleten", { name: u.name }), onclick: async () => {
          const v = await ask(t("us.delete.title"), t("us.delete.text", { name: u.name }), [{ label: t("us.delete"), value: "delete", danger: true }, { label: t("btn.cancel"), value: "cancel" }]);
          if (v !== "delete") return;
          const x = await api("DELETE", "/api/v1/users/" + encodeURIComponent(u.name));
          if (!x.ok) { pageAlert(x.error.message); return; }
          announce(t("us.deleted", { name: u.name }));
          await load();
        } }, t("us.delete")) : null))));
  }
  await load();
  if (totp) renderSecondFactor(factorBox, load);
  if (admin) await renderTokens(tokensBox);
  if (admin) await renderAuth(authBox);
}

// Two-step verification of one's own account: start (the QR code and the
// key), confirm with the app's first code (the recovery codes, shown once),
// or turn it off with a current code.
function renderSecondFactor(box, reload) {
  const path = "/api/v1/users/" + encodeURIComponent(session.user) + "/totp";
  const show = () => setChildren(box, section(t("tf.title"), session.second_factor ? on() : off()));
  function off() {
    const start = h("button", { type: "button", id: "tf-start", class: "primary", onclick: async () => {
      const x = await busy(start, t("working"), () => api("POST", path));
      if (!x.ok) { pageAlert(x.error.message); return; }
      setChildren(box, section(t("tf.title"), enrol(x.data)));
      box.querySelector("#tf-code").focus();
    } }, t("tf.start"));
    return [note(t("tf.off")), h("div", { class: "buttons" }, start)];
  }
  function enrol(data) {
    const f = h("form", { id: "tf-confirm-form", novalidate: true },
      field({ label: t("tf.code"), path: "code", id: "tf-code", attrs: { autocomplete: "one-time-code", inputmode: "numeric" } }),
      formAlert(),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary", id: "tf-confirm" }, t("tf.confirm")),
        h("button", { type: "button", onclick: show }, t("btn.cancel"))));
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(f);
      const x = await api("POST", path + "/confirm", { json: { code: f.querySelector("#tf-code").value.trim() } });
      if (!x.ok) { showError(f, x.error); return; }
      session.second_factor = true;
      const list = h("ol", { id: "tf-recovery", class: "codes" }, x.data.recovery_codes.map((c) => h("li", {}, h("code", { text: c }))));
      const d = h("dialog", { "aria-label": t("tf.recovery.title") }, h("h2", { text: t("tf.recovery.title") }),
        warning(t("tf.recovery.text")), list, h("div", { class: "buttons" }, h("button", { type: "button", class: "primary", onclick: () => d.close() }, t("btn.close"))));
      d.addEventListener("close", () => d.remove());
      document.body.append(d);
      d.showModal();
      announce(t("tf.enabled"));
      show();
      await reload();
    });
    const qr = h("img", { id: "tf-qr", class: "qr", alt: t("tf.qr"), width: 200, height: 200, src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(data.qr_svg) });
    return [note(t("tf.scan")), qr, h("p", {}, t("tf.secret") + ": ", h("code", { id: "tf-secret", text: data.secret })), f];
  }
  function on() {
    const f = h("form", { id: "tf-reset-form", novalidate: true },
      field({ label: t("tf.reset.code"), path: "code", id: "tf-reset-code", attrs: { autocomplete: "one-time-code" } }),
      formAlert(),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "danger", id: "tf-reset" }, t("tf.reset"))));
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(f);
      const x = await api("DELETE", path, { json: { code: f.querySelector("#tf-reset-code").value.trim() } });
      if (!x.ok) { showError(f, x.error); return; }
      session.second_factor = false;
      announce(t("tf.disabled"));
      show();
      await reload();
    });
    return [note(t("tf.on")), f];
  }
  show();
}

// API tokens: the secret is in the creation's answer only, shown once.
async function renderTokens(box) {
  const body = h("tbody", {});
  const scopes = ["read-only", "operator", "administrator"].map((s) => [s, t("tk.scope." + s)]);
  const us = await api("GET", "/api/v1/users");
  const f = h("form", { id: "token-add", novalidate: true, class: "grid" },
    field({ label: t("tk.name"), path: "name", id: "tk-name", attrs: { autocomplete: "off" } }),
    field({ label: t("tk.scope"), path: "scope", id: "tk-scope", type: "select", value: "read-only", options: scopes }),
    field({ label: t("tk.account"), path: "account", id: "tk-account", type: "select", value: session.user, options: (us.ok ? us.data : []).map((u) => [u.name, u.name]) }),
    field({ label: t("tk.days"), path: "expires_in_days", id: "tk-days", type: "number" }),
    field({ label: t("tk.sources"), path: "allowed_sources", id: "tk-sources", hint: t("tk.sources.hint"), wide: true }),
    h("div", { class: "wide" }, formAlert(), h("button", { type: "submit", class: "primary" }, t("tk.create"))));
  const val = (id) => f.querySelector(id).value.trim();
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    const json = { name: val("#tk-name"), scope: val("#tk-scope"), account: val("#tk-account") };
    if (val("#tk-days")) json.expires_in_days = Number(val("#tk-days"));
    json.allowed_sources = val("#tk-sources").split(",").map((x) => x.trim()).filter(Boolean);
    const x = await api("POST", "/api/v1/tokens", { json });
    if (!x.ok) { showError(f, x.error); return; }
    f.reset();
    const out = h("input", { id: "tk-secret", readonly: true, value: x.data.token });
    const d = h("dialog", { "aria-label": t("tk.secret.title", { name: json.name }) }, h("h2", { text: t("tk.secret.title", { name: json.name }) }),
      warning(t("tk.secret.text")), out, h("div", { class: "buttons" },
        h("button", { type: "button", onclick: () => { out.select(); navigator.clipboard?.writeText(out.value).then(() => announce(t("tk.copied")), () => {}); } }, t("tk.copy")),
        h("button", { type: "button", class: "primary", onclick: () => d.close() }, t("btn.close"))));
    // Gone from the page once closed.
    d.addEventListener("close", () => d.remove());
    document.body.append(d);
    d.showModal();
    out.select();
    await load();
  });
  box.replaceChildren(section(t("tk.title"), note(t("tk.text")),
    h("div", { class: "scroll" }, table(["tk.name", "tk.account", "tk.scope", "tk.created", "tk.lastused", "tk.expires", "tk.sources", "actions"].map((k) => t(k)), body, t("tk.title"))), f));
  async function load() {
    const r = await api("GET", "/api/v1/tokens");
    if (!r.ok) { pageAlert(r.error.message); return; }
    body.replaceChildren(...(r.data.length ? r.data.map((k) => h("tr", {}, ...[k.name, k.account, t("tk.scope." + k.scope), fmtTime(k.created),
      k.last_used ? fmtTime(k.last_used) : "–", k.expires_at ? fmtTime(k.expires_at) : t("tk.never"), k.allowed_sources.join(", ") || t("tk.any")].map((v) => h("td", { text: v })),
    h("td", {}, h("button", { type: "button", class: "small danger", "aria-label": t("tk.revoken", { name: k.name }), onclick: async () => {
      if (await ask(t("tk.revoke"), t("tk.revoke.text", { name: k.name }), [{ label: t("tk.revoke"), value: "y", danger: true }, { label: t("btn.cancel"), value: "n" }]) !== "y") return;
      const x = await api("DELETE", "/api/v1/tokens/" + encodeURIComponent(k.name));
      if (!x.ok) { pageAlert(x.error.message); return; }
      announce(t("tk.revoked", { name: k.name }));
      await load();
    } }, t("tk.revoke")))))
      : [h("tr", {}, h("td", { colspan: 8, text: t("tk.empty") }))]));
  }
  await load();
}

// Authentication schemes and the static content's login.
async function renderAuth(box) {
  const [a, w] = await Promise.all([api("GET", "/api/v1/authentication"),
    built("webroot") ? api("GET", "/api/v1/webroot") : Promise.resolve({ ok: false })]);
  const f = h("form", { id: "auth-form", novalidate: true });
  const digest = a.ok && built("digest") ? field({ label: t("auth.digest"), path: "digest", type: "checkbox", value: a.data.digest, hint: t("auth.digest.hint") }) : null;
  const login = w.ok ? field({ label: t("auth.webroot"), path: "login_required", type: "checkbox", value: w.data.login_required, hint: t("auth.webroot.hint") }) : null;
  f.append(...[digest, login].filter(Boolean), formAlert(), h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary", id: "auth-set" }, t("btn.set"))));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    if (digest) {
      const x = await api("PUT", "/api/v1/authentication", { json: { ...a.data, digest: inputOf(digest).checked } });
      if (!x.ok) { showError(f, x.error); return; }
    }
    if (login) {
      const x = await api("PUT", "/api/v1/webroot", { json: { ...w.data, login_required: inputOf(login).checked } });
      if (!x.ok) { showError(f, x.error); return; }
    }
    announce(t("auth.done"));
  });
  box.replaceChildren(section(t("auth.title"), f));
}
