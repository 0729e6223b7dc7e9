// The "Web Server" dialog, section by section as in the device's online help:
// general interface setup, HTTPS, the certificate in use, replacing it,
// generating one, intrusion detection; then automatic certificates (ACME),
// which the help does not have; the bar of Set, Factory, Restore, Close,
// Reboot stays at the window's bottom.
import {
  api, h, field, inputOf, clearErrors, showError, formAlert, announce, pageAlert, ask, fmtTime, saveBlob, busy,
  addressesFor, refreshPending, section, note, warning, session, sectionNames, t, built, setChildren,
} from "./common.js";

// ---- actions shared with other pages -------------------------------------

// Close: checks the whole configuration for unsaved changes and offers to
// store it; then leaves for the admin menu (or runs `after`).
export async function closeAction(dirty) {
  const st = await api("GET", "/api/v1/config/status");
  if (!st.ok) { pageAlert(st.error.message); return; }
  const body = [];
  if (dirty) body.push(h("p", { class: "warning", text: t("close.dirty") }));
  if (st.data.unsaved_changes) {
    body.push(h("p", { text: t("close.unsaved", { sections: sectionNames(st.data.changed_sections) }) }));
    body.push(h("p", { text: t("close.question") }));
    const v = await ask(t("close.title"), body, [
      { label: t("btn.store"), value: "store", primary: true },
      { label: t("btn.nostore"), value: "leave" },
      { label: t("btn.cancel"), value: "cancel" },
    ]);
    if (v === "store") {
      const r = await api("POST", "/api/v1/config/store");
      if (!r.ok) { pageAlert(r.error.message); return; }
      sessionStorage.setItem("portcullis-flash", t("store.done"));
    } else if (v !== "leave") return;
  } else if (dirty) {
    const v = await ask(t("close.title"), body, [
      { label: t("btn.leave"), value: "leave", primary: true },
      { label: t("btn.cancel"), value: "cancel" },
    ]);
    if (v !== "leave") return;
  }
  location.href = "/admin/";
}

// Reboot: a soft restart (running := stored); offers to store first when
// the running configuration has unsaved changes.
export async function rebootAction(after) {
  const st = await api("GET", "/api/v1/config/status");
  const unsaved = st.ok && st.data.unsaved_changes;
  const body = [h("p", { text: t("reboot.text") })];
  const buttons = [];
  if (unsaved) {
    body.push(h("p", { class: "warning", text: t("reboot.unsaved", { sections: sectionNames(st.data.changed_sections) }) }));
    buttons.push({ label: t("btn.storereboot"), value: "store", primary: true });
    buttons.push({ label: t("btn.rebootnostore"), value: "reboot", danger: true });
  } else buttons.push({ label: t("btn.reboot"), value: "reboot", primary: true });
  buttons.push({ label: t("btn.cancel"), value: "cancel" });
  const v = await ask(t("reboot.title"), body, buttons);
  if (v !== "store" && v !== "reboot") return;
  if (v === "store") {
    const s = await api("POST", "/api/v1/config/store");
    if (!s.ok) { pageAlert(s.error.message); return; }
  }
  announce(t("reboot.working"));
  const r = await api("POST", "/api/v1/reboot");
  if (!r.ok) { pageAlert(r.error.message); return; }
  const port = Number(location.port || (location.protocol === "https:" ? 443 : 80));
  const tls = location.protocol === "https:";
  const still = r.data.listeners.some((l) => l.port === port && l.tls === tls);
  if (!still) {
    const ws = await api("GET", "/api/v1/webserver");
    const links = ws.ok ? addressesFor(ws.data) : [];
    pageAlert(t("reboot.moved") + " " + links.join("  "));
  }
  announce(t("reboot.done", { listeners: r.data.listeners.map((l) => l.port + (l.tls ? " (HTTPS)" : " (HTTP)")).join(", ") }));
  if (after) await after();
  refreshPending();
}

export const rebootButton = (after) => h("button", { type: "button", id: "reboot", class: "danger", onclick: () => rebootAction(after) }, t("btn.reboot"));

// ---- the dialog ------------------------------------------------------------

export async function renderWebServer(root) {
  const [wsR, certR, profR, acR, acmeR] = await Promise.all([
    api("GET", "/api/v1/webserver"),
    api("GET", "/api/v1/certificate"),
    api("GET", "/api/v1/profiles"),
    api("GET", "/api/v1/access-control"),
    built("acme") ? api("GET", "/api/v1/certificate/acme") : Promise.resolve({ ok: false, absent: true }),
  ]);
  if (!wsR.ok) { pageAlert(wsR.error.message); return; }
  let loaded = wsR.data;
  const profiles = profR.ok ? profR.data : null;
  const accessControl = acR.ok ? acR.data : null;
  const flash = sessionStorage.getItem("portcullis-flash");
  if (flash) { sessionStorage.removeItem("portcullis-flash"); announce(flash); }

  // The form holds only the action bar (Set, Factory, Restore, Close,
  // Reboot); the fields of the sections belong to it through their `form`
  // attribute, so Enter in a field sets too.
  const form = h("form", { id: "ws-form", class: "actionbar", novalidate: true, "aria-label": t("ws.actions") });
  const F = (o) => { const f = field(o); inputOf(f).setAttribute("form", "ws-form"); return f; };

  // General interface setup
  const portsBox = h("div", { class: "ports", role: "group", "aria-labelledby": "ports-label" });
  // One row per HTTP port: the number, the addresses it listens on (empty:
  // every address), its redirect to HTTPS (default: the HTTPS section's
  // switch) and whether the admin UI and API answer there.
  const portRow = (entry) => {
    const e = typeof entry === "object" && entry !== null ? entry : { port: entry };
    const row = h("div", { class: "port-row" });
    const idx = () => [...portsBox.children].indexOf(row);
    const f = F({ label: "", path: "http_ports[]", type: "text", value: e.port ?? "", attrs: { inputmode: "numeric", autocomplete: "off", class: "port" } });
    f.querySelector("label").remove();
    const addrs = F({ label: t("ws.port.addresses"), path: "http_ports[].addresses", type: "text", value: (e.addresses || []).join(", "),
      attrs: { autocomplete: "off", spellcheck: "false", placeholder: t("ws.port.alladdresses"), class: "port-addresses" } });
    const redir = F({ label: t("ws.port.redirect"), path: "http_ports[].redirect_to_https", type: "select",
      value: e.redirect_to_https === true ? "yes" : e.redirect_to_https === false ? "no" : "",
      options: [["", t("ws.port.redirect.default")], ["yes", t("yes")], ["no", t("no")]], attrs: { class: "port-redirect" } });
    const admin = F({ label: t("ws.port.admin"), path: "http_ports[].admin", type: "checkbox", value: e.admin !== false, attrs: { class: "port-admin" } });
    const remove = h("button", { type: "button", class: "small", onclick: () => { row.remove(); renumber(); portsBox.querySelector("input")?.focus(); } }, t("ws.removeport"));
    // The port and its Remove button on the first line, its addresses and
    // policy below.
    row.append(f, remove, h("div", { class: "port-options" }, addrs, redir, admin));
    row.renumber = () => {
      const i = idx();
      const input = inputOf(f);
      input.dataset.field = "http_ports[" + i + "]";
      inputOf(addrs).dataset.field = "http_ports[" + i + "].addresses";
      inputOf(redir).dataset.field = "http_ports[" + i + "].redirect_to_https";
      inputOf(admin).dataset.field = "http_ports[" + i + "].admin";
      input.setAttribute("aria-label", t("ws.portn", { n: i + 1 }));
      remove.setAttribute("aria-label", t("ws.removeportn", { n: i + 1 }));
    };
    // What collect() sends for this row: a bare number unless it names
    // addresses or a policy of its own (the API's two forms of an entry).
    row.entry = () => {
      const port = num(inputOf(f).value);
      if (port === "") return null;
      const addresses = inputOf(addrs).value.split(/[\s,]+/).filter((v) => v !== "");
      const r = inputOf(redir).value;
      const redirect_to_https = r === "yes" ? true : r === "no" ? false : null;
      const allowAdmin = inputOf(admin).checked;
      if (!addresses.length && redirect_to_https === null && allowAdmin) return port;
      return { port, addresses, redirect_to_https, admin: allowAdmin };
    };
    return row;
  };
  const renumber = () => [...portsBox.children].forEach((r) => r.renumber());
  const addPort = h("button", { type: "button", id: "add-port", class: "small", onclick: () => {
    const r = portRow(""); portsBox.append(r); renumber(); r.querySelector("input").focus();
  } }, t("ws.addport"));
  const httpEnabled = F({ label: t("ws.http_enabled"), path: "http_enabled", type: "checkbox", hint: t("ws.http_enabled.hint") });
  const allowedHosts = F({ label: t("ws.allowed_hosts"), path: "allowed_hosts", type: "text", hint: t("ws.allowed_hosts.hint"), attrs: { autocomplete: "off", spellcheck: "false" } });
  const confirmTimeout = F({ label: t("ws.confirm_timeout"), path: "confirm_timeout_seconds", type: "number", hint: t("ws.confirm_timeout.hint"), attrs: { min: 30, max: 3600 } });
  const protoWarn = h("p", { class: "warning live", role: "status", id: "proto-warning" });

  const general = section(t("ws.general"),
    warning(t("ws.general.warning")),
    h("div", { class: "field" },
      h("span", { class: "label", id: "ports-label", text: t("ws.ports") }),
      portsBox, addPort,
      h("p", { class: "hint", id: "ports-hint", text: t("ws.ports.hint") }),
      h("p", { class: "err", id: "http_ports-err", role: "alert" }),
      h("input", { type: "hidden", id: "http_ports", "data-field": "http_ports" })),
    httpEnabled, confirmTimeout, allowedHosts, protoWarn);

  // HTTPS
  const httpsEnabled = F({ label: t("ws.https_enabled"), path: "https_enabled", type: "checkbox", hint: t("ws.https_enabled.hint") });
  const httpsPort = F({ label: t("ws.https_port"), path: "https_port", type: "text", hint: t("ws.https_port.hint"), attrs: { inputmode: "numeric", placeholder: "443", autocomplete: "off" } });
  const httpsAddresses = F({ label: t("ws.https_addresses"), path: "https_addresses", type: "text", hint: t("ws.https_addresses.hint"), attrs: { autocomplete: "off", spellcheck: "false", placeholder: t("ws.port.alladdresses") } });
  const httpsAdmin = F({ label: t("ws.https_admin"), path: "https_admin", type: "checkbox", hint: t("ws.https_admin.hint") });
  const redirect = F({ label: t("ws.redirect"), path: "http_redirect_to_https", type: "checkbox", hint: t("ws.redirect.hint") });
  const hsts = F({ label: t("ws.hsts"), path: "hsts_enabled", type: "checkbox", hint: t("ws.hsts.hint") });
  const hstsAge = F({ label: t("ws.hsts_age"), path: "hsts_max_age_seconds", type: "number", attrs: { min: 0 } });
  const dlCert = h("button", { type: "button", id: "download-cert", onclick: () => download("/api/v1/certificate/download", "certificate-and-key.pem", dlCert) }, t("cert.download"));
  const dlReq = h("button", { type: "button", id: "download-request", onclick: () => download("/api/v1/certificate/request", "certificate-request.csr", dlReq) }, t("cert.downloadreq"));
  const https = section(t("ws.https"), httpsEnabled, httpsPort, httpsAddresses, httpsAdmin, redirect, hsts, hstsAge,
    h("div", { class: "field" }, dlCert, h("p", { class: "hint", text: t("cert.download.hint") })),
    h("div", { class: "field" }, dlReq, h("p", { class: "hint", text: t("cert.downloadreq.hint") })));

  async function download(path, name, button) {
    pageAlert("");
    const r = await api("GET", path, { blob: true });
    if (!r.ok) { pageAlert(r.error.message); return; }
    saveBlob(r.data, name);
    announce(t("cert.downloaded", { name }));
    button.focus();
  }

  // Certificate in use
  const certBox = h("div", { id: "cert-info" });
  const certInUse = section(t("cert.inuse"), note(t("cert.inuse.text")), certBox);

  // Replace
  const delBtn = h("button", { type: "button", id: "cert-delete", class: "danger", onclick: async () => {
    const v = await ask(t("cert.delete.title"), t("cert.delete.text"), [
      { label: t("cert.delete"), value: "delete", danger: true }, { label: t("btn.cancel"), value: "cancel" }]);
    if (v !== "delete") return;
    const r = await api("DELETE", "/api/v1/certificate");
    if (!r.ok) { pageAlert(r.error.message); return; }
    showCert(r.data);
    announce(t("cert.deleted"));
  } }, t("cert.delete"));

  const upForm = h("form", { id: "upload-form", novalidate: true },
    field({ label: t("cert.file"), path: "certificate", type: "file", id: "up-cert", hint: t("cert.file.hint"), attrs: { accept: ".pem,.crt,.cer,.key,.txt" } }),
    field({ label: t("cert.keyfile"), path: "private_key", type: "file", id: "up-key", hint: t("cert.keyfile.hint"), attrs: { accept: ".pem,.key,.txt" } }),
    field({ label: t("cert.passphrase"), path: "passphrase", type: "password", id: "up-pass", hint: t("cert.passphrase.hint"), attrs: { autocomplete: "off" } }),
    formAlert(),
    h("button", { type: "submit", id: "upload-submit" }, t("cert.upload")));
  upForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(upForm);
    const fd = new FormData();
    const c = upForm.querySelector("#up-cert").files[0];
    const k = upForm.querySelector("#up-key").files[0];
    const p = upForm.querySelector("#up-pass").value;
    if (c) fd.append("certificate", c);
    if (k) fd.append("private_key", k);
    if (p) fd.append("passphrase", p);
    const r = await busy(upForm.querySelector("#upload-submit"), t("working"), () => api("POST", "/api/v1/certificate/upload", { form: fd }));
    if (!r.ok) { showError(upForm, r.error); return; }
    upForm.reset();
    showCert(r.data);
    announce(t("cert.uploaded", { fp: r.data.certificate.fingerprint_sha256 }));
  });

  const upCertForm = h("form", { id: "upload-cert-form", novalidate: true },
    field({ label: t("cert.file"), path: "certificate", type: "file", id: "upc-cert", hint: t("cert.onlycert.hint"), attrs: { accept: ".pem,.crt,.cer,.txt" } }),
    formAlert(),
    h("button", { type: "submit", id: "upload-cert-submit" }, t("cert.uploadcert")));
  upCertForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(upCertForm);
    const fd = new FormData();
    const c = upCertForm.querySelector("#upc-cert").files[0];
    if (c) fd.append("certificate", c);
    const r = await busy(upCertForm.querySelector("#upload-cert-submit"), t("working"), () => api("POST", "/api/v1/certificate/upload-certificate", { form: fd }));
    if (!r.ok) { showError(upCertForm, r.error); return; }
    upCertForm.reset();
    showCert(r.data);
    announce(t("cert.uploaded", { fp: r.data.certificate.fingerprint_sha256 }));
  });

  const replace = section(t("cert.replace"),
    h("div", { class: "field" }, delBtn, h("p", { class: "hint", text: t("cert.delete.hint") })),
    h("h3", { text: t("cert.upload.title") }), note(t("cert.upload.text")), upForm,
    h("h3", { text: t("cert.uploadcert.title") }), note(t("cert.uploadcert.text")), upCertForm);

  // Generate
  const genStatus = h("p", { class: "working", role: "status", id: "gen-status" });
  const genForm = h("form", { id: "generate-form", novalidate: true, class: "grid" },
    field({ label: t("gen.cn"), path: "common_name", id: "gen-cn", hint: t("gen.cn.hint"), attrs: { required: true, autocomplete: "off", placeholder: "camera.example.com" } }),
    field({ label: t("gen.c"), path: "country", id: "gen-c", hint: t("gen.c.hint"), attrs: { maxlength: 2, autocomplete: "country" } }),
    field({ label: t("gen.st"), path: "state", id: "gen-st" }),
    field({ label: t("gen.l"), path: "locality", id: "gen-l" }),
    field({ label: t("gen.o"), path: "organization", id: "gen-o", attrs: { autocomplete: "organization" } }),
    field({ label: t("gen.ou"), path: "organizational_unit", id: "gen-ou" }),
    field({ label: t("gen.email"), path: "email", id: "gen-email", type: "email", attrs: { autocomplete: "email" } }),
    field({ label: t("gen.keytype"), path: "key_type", id: "gen-key", type: "select", value: "rsa2048", options: [["rsa2048", t("gen.rsa")], ["ecdsa-p256", t("gen.ecdsa")]] }),
    field({ label: t("gen.validity"), path: "validity_days", id: "gen-days", type: "number", value: 3650, hint: t("gen.validity.hint"), attrs: { min: 1, max: 3650 } }),
    h("div", { class: "wide" }, formAlert(), h("button", { type: "submit", id: "generate-submit", class: "primary" }, t("gen.submit")), genStatus));
  genForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(genForm);
    const v = (id) => genForm.querySelector(id).value.trim();
    const body = { common_name: v("#gen-cn"), key_type: v("#gen-key") };
    for (const [k, id] of [["country", "#gen-c"], ["state", "#gen-st"], ["locality", "#gen-l"], ["organization", "#gen-o"], ["organizational_unit", "#gen-ou"], ["email", "#gen-email"]]) {
      if (v(id)) body[k] = v(id);
    }
    const days = v("#gen-days");
    if (days) body.validity_days = /^\d+$/.test(days) ? Number(days) : days;
    genForm.setAttribute("aria-busy", "true");
    genStatus.classList.add("active");
    genStatus.textContent = body.key_type === "rsa2048" ? t("gen.working.rsa") : t("gen.working");
    const r = await busy(genForm.querySelector("#generate-submit"), t("working"), () => api("POST", "/api/v1/certificate/generate", { json: body }));
    genForm.removeAttribute("aria-busy");
    genStatus.classList.remove("active");
    genStatus.textContent = "";
    if (!r.ok) { showError(genForm, r.error); return; }
    showCert(r.data);
    announce(t("gen.done", { fp: r.data.certificate.fingerprint_sha256 }));
  });
  const generate = section(t("gen.title"), note(t("gen.text")), genForm, note(t("gen.note")));

  // Automatic certificates (ACME): settings, status, enrol now.
  const lines = (s) => s.split(/[\n,]+/).map((x) => x.trim()).filter((x) => x !== "");
  const acmeStatus = h("div", { id: "acme-status" });
  const acmeWorking = h("p", { class: "working", role: "status", id: "acme-working" });
  const acmeEnabled = field({ label: t("acme.enabled"), path: "enabled", type: "checkbox", id: "acme-enabled", hint: t("acme.enabled.hint") });
  const acmeDir = field({ label: t("acme.directory"), path: "directory_url", id: "acme-directory", type: "url", hint: t("acme.directory.hint"), wide: true, attrs: { autocomplete: "off", placeholder: "https://acme-v02.api.letsencrypt.org/directory" } });
  const acmeIds = field({ label: t("acme.identifiers"), path: "identifiers", id: "acme-identifiers", type: "textarea", rows: 3, hint: t("acme.identifiers.hint"), attrs: { autocomplete: "off", spellcheck: "false" } });
  const acmeContact = field({ label: t("acme.contact"), path: "contact", id: "acme-contact", type: "textarea", rows: 3, hint: t("acme.contact.hint"), attrs: { autocomplete: "off", spellcheck: "false" } });
  const acmeChallenge = field({ label: t("acme.challenge"), path: "challenge", id: "acme-challenge", type: "select", value: "http-01", hint: t("acme.challenge.hint"),
    options: [["http-01", t("acme.http01")], ["tls-alpn-01", t("acme.tlsalpn01")]] });
  const acmeKey = field({ label: t("acme.keytype"), path: "key_type", id: "acme-key-type", type: "select", value: "rsa2048", options: [["rsa2048", t("gen.rsa")], ["ecdsa-p256", t("gen.ecdsa")]] });
  const acmeEabId = field({ label: t("acme.eab_id"), path: "eab_key_id", id: "acme-eab-id", hint: t("acme.eab_id.hint"), attrs: { autocomplete: "off" } });
  const acmeEabKey = field({ label: t("acme.eab_key"), path: "eab_hmac_key", id: "acme-eab-key", type: "password", hint: t("acme.eab_key.hint"), attrs: { autocomplete: "new-password" } });
  const acmeCa = field({ label: t("acme.ca"), path: "ca_bundle_pem", id: "acme-ca", type: "textarea", rows: 4, wide: true, hint: t("acme.ca.hint"), attrs: { spellcheck: "false", placeholder: "-----BEGIN CERTIFICATE-----" } });
  const acmeSave = h("button", { type: "submit", id: "acme-save", class: "primary" }, t("acme.save"));
  const acmeEnrol = h("button", { type: "button", id: "acme-enrol", onclick: () => enrol() }, t("acme.enrol"));
  const acmeForm = h("form", { id: "acme-form", novalidate: true, class: "grid", "aria-label": t("acme.title") },
    h("div", { class: "wide" }, acmeEnabled), acmeDir, acmeIds, acmeContact, acmeChallenge, acmeKey, acmeEabId, acmeEabKey, acmeCa,
    h("div", { class: "wide" }, formAlert(), acmeSave, acmeEnrol, acmeWorking, h("p", { class: "hint", id: "acme-enrol-hint", text: t("acme.enrol.hint") })));
  acmeEnrol.setAttribute("aria-describedby", "acme-enrol-hint");
  const acme = section(t("acme.title"), note(t("acme.text")), acmeStatus, acmeForm);

  function fillAcme(view) {
    const s = view.settings || {};
    inputOf(acmeEnabled).checked = !!s.enabled;
    inputOf(acmeDir).value = s.directory_url || "";
    inputOf(acmeIds).value = (s.identifiers || []).join("\n");
    inputOf(acmeContact).value = (s.contact || []).map((c) => c.replace(/^mailto:/i, "")).join("\n");
    inputOf(acmeChallenge).value = s.challenge || "http-01";
    inputOf(acmeKey).value = s.key_type || "rsa2048";
    inputOf(acmeEabId).value = s.eab_key_id || "";
    inputOf(acmeEabKey).value = "";
    inputOf(acmeCa).value = s.ca_bundle_pem || "";
    showAcmeStatus(view.status || {});
  }

  function showAcmeStatus(st) {
    const row = (label, value, idv) => [h("dt", { text: label }), h("dd", { id: idv, text: value })];
    setChildren(acmeStatus,
      h("dl", { class: "cert" },
        row(t("acme.status.managed"), st.managed ? t("acme.managed") : t("acme.notmanaged"), "acme-managed"),
        st.not_after ? row(t("acme.status.notafter"), fmtTime(st.not_after), "acme-not-after") : null,
        row(t("acme.status.next"), st.next_renewal ? fmtTime(st.next_renewal) : t("acme.none"), "acme-next"),
        row(t("acme.status.error"), st.last_error || t("acme.none"), "acme-last-error"),
        st.failures ? row(t("acme.status.failures"), String(st.failures), "acme-failures") : null),
      st.last_error ? warning(t("acme.failed", { n: st.failures || 1 })) : null);
  }

  function collectAcme() {
    const v = (f) => inputOf(f).value.trim();
    const body = {
      enabled: inputOf(acmeEnabled).checked,
      directory_url: v(acmeDir),
      contact: lines(inputOf(acmeContact).value),
      identifiers: lines(inputOf(acmeIds).value),
      challenge: v(acmeChallenge),
      key_type: v(acmeKey),
      eab_key_id: v(acmeEabId) || null,
      ca_bundle_pem: v(acmeCa) || null,
    };
    // Empty keeps the stored HMAC key: the field is omitted then.
    if (v(acmeEabKey)) body.eab_hmac_key = v(acmeEabKey);
    return body;
  }

  acmeForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(acmeForm);
    const r = await busy(acmeSave, t("working"), () => api("PUT", "/api/v1/certificate/acme", { json: collectAcme() }));
    if (!r.ok) { showError(acmeForm, r.error); return; }
    fillAcme(r.data);
    announce(t("acme.saved"));
  });

  async function enrol() {
    clearErrors(acmeForm);
    acmeForm.setAttribute("aria-busy", "true");
    acmeSave.disabled = true;
    acmeWorking.classList.add("active");
    acmeWorking.textContent = t("acme.working");
    const r = await busy(acmeEnrol, t("working"), () => api("POST", "/api/v1/certificate/acme/enrol"));
    acmeForm.removeAttribute("aria-busy");
    acmeSave.disabled = false;
    acmeWorking.classList.remove("active");
    acmeWorking.textContent = "";
    const [a, c] = await Promise.all([api("GET", "/api/v1/certificate/acme"), api("GET", "/api/v1/certificate")]);
    if (a.ok) showAcmeStatus(a.data.status || {});
    if (c.ok) showCert(c.data);
    if (!r.ok) {
      // 502: the CA's (or the connection's) error, as the server words it.
      const alert = acmeForm.querySelector(".form-alert");
      // The CA's own words are what the operator can act on: shown too.
      if (r.status === 502) alert.textContent = t("acme.enrolfailed", { message: r.error.message }) + (r.error.detail ? " " + t("err.detail", { detail: r.error.detail }) : "");
      else showError(acmeForm, r.error);
      acmeEnrol.focus();
      return;
    }
    announce(t("acme.enrolled", { time: fmtTime(r.data.next_renewal) }));
  }

  // Intrusion detection
  const profileOptions = (kind, current) => {
    const names = profiles ? Object.keys(profiles[kind] || {}) : [];
    if (current && !names.includes(current)) names.push(current);
    return [["", t("id.noprofile")], ...names.map((n) => [n, n])];
  };
  const id = loaded.intrusion_detection || {};
  const idEnabled = F({ label: t("id.enabled"), path: "intrusion_detection.enabled", type: "checkbox", hint: t("id.enabled.hint") });
  const threshold = F({ label: t("id.threshold"), path: "intrusion_detection.notification_threshold", type: "number", id: "id-threshold", hint: t("id.threshold.hint"), attrs: { min: 5 } });
  const timeout = F({ label: t("id.timeout"), path: "intrusion_detection.timeout_minutes", type: "number", hint: t("id.timeout.hint"), attrs: { min: 1, max: 10080 } });
  const deadtime = F({ label: t("id.deadtime"), path: "intrusion_detection.deadtime_minutes", type: "number", hint: t("id.deadtime.hint"), attrs: { min: 0, max: 10080 } });
  const lockT = F({ label: t("id.lock"), path: "intrusion_detection.account_lockout_threshold", type: "number", hint: t("id.lock.hint"), attrs: { min: 0 } });
  const lockM = F({ label: t("id.lockmin"), path: "intrusion_detection.account_lockout_minutes", type: "number", attrs: { min: 1, max: 10080 } });
  const blockIp = F({ label: t("id.block"), path: "intrusion_detection.block_ip", type: "checkbox", hint: t("id.block.hint") });
  const blockFor = F({ label: t("id.block_duration"), path: "intrusion_detection.block_duration_seconds", type: "number", hint: t("id.block_duration.hint"), attrs: { min: 0 } });
  const blockGrow = F({ label: t("id.block_increment"), path: "intrusion_detection.block_duration_increment", type: "checkbox", hint: t("id.block_increment.hint") });
  const blockMax = F({ label: t("id.block_max"), path: "intrusion_detection.block_duration_max_seconds", type: "number", hint: t("id.block_max.hint"), attrs: { min: 0 } });
  const blockKeep = F({ label: t("id.block_survive"), path: "intrusion_detection.blocks_survive_reboot", type: "checkbox", hint: t("id.block_survive.hint") });
  const blockWarn = h("p", { class: "warning live", role: "status", id: "block-warning" });
  const emailP = F({ label: t("id.email"), path: "intrusion_detection.email_profile", type: "select", options: profileOptions("email", id.email_profile), hint: t("id.email.hint") });
  const phoneP = F({ label: t("id.phone"), path: "intrusion_detection.phone_profile", type: "select", options: profileOptions("phone", id.phone_profile), hint: t("id.phone.hint") });
  const ipP = F({ label: t("id.ipnotify"), path: "intrusion_detection.ip_notify_profile", type: "select", options: profileOptions("ip_notify", id.ip_notify_profile), hint: t("id.ipnotify.hint") });
  emailP.hidden = !built("email");
  phoneP.hidden = !built("sip");
  ipP.hidden = !built("ip-notify");
  const intrusion = section(t("id.title"), idEnabled, threshold, note(t("id.attention")), timeout, deadtime, lockT, lockM, blockIp, blockWarn, blockFor, blockGrow, blockMax, blockKeep,
    emailP, phoneP, ipP,
    profiles ? null : note(t("id.noprofiles")),
    note(t("id.remark")),
    h("p", { class: "links" }, h("a", { href: "/admin/profiles", text: t("nav.profiles") }), " · ",
      h("a", { href: "/admin/logfile", text: t("nav.logfile") }), " · ", h("a", { href: "/admin/blocked", text: t("nav.blocked") }), " · ",
      h("a", { href: "/admin/access-control", text: t("nav.access") })));

  // Buttons
  const addrBox = h("div", { id: "new-addresses", class: "addresses", role: "status" });
  const setBtn = h("button", { type: "submit", id: "set", class: "primary" }, t("btn.set"));
  const factoryBtn = h("button", { type: "button", id: "factory", onclick: factory }, t("btn.factory"));
  const restoreBtn = h("button", { type: "button", id: "restore", onclick: restore }, t("btn.restore"));
  const closeBtn = h("button", { type: "button", id: "close", onclick: () => closeAction(isDirty()) }, t("btn.close"));
  form.append(formAlert(), addrBox,
    h("div", { class: "buttons" }, setBtn, factoryBtn, restoreBtn, closeBtn, rebootButton(reloadAll)));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); set(); });

  // The seed's sections in the seed's order (its online help: general
  // setup, HTTPS, the certificate in use and replacing it, generating one,
  // intrusion detection), then ours, ACME, which the seed does not have:
  // after all of them rather than between two of them. Last the action bar,
  // a direct child of the page's content so that it stays in view at the
  // window's bottom while the ~5,500 px page scrolls (sticky is bounded by
  // its parent). What the build left out is not shown (the ACME section,
  // the channels' profile choices).
  setChildren(root, general, https, certInUse, replace, generate, intrusion, built("acme") ? acme : null, form, note(t("ws.storenote")));
  // Whatever gets the focus scrolls into view above the bar, not behind it.
  const keepClear = () => { document.documentElement.style.scrollPaddingBottom = form.offsetHeight + 8 + "px"; };
  // A tall field (a textarea) partly behind the bar counts as in view for
  // the browser, which then does not scroll: lift it clear.
  root.addEventListener("focusin", (e) => {
    const below = e.target.getBoundingClientRect().bottom - form.getBoundingClientRect().top;
    if (!form.contains(e.target) && below > 0) scrollBy(0, below + 8);
  });
  new ResizeObserver(keepClear).observe(form);
  keepClear();

  function fill(ws) {
    portsBox.replaceChildren(...(ws.http_ports || []).map((p) => portRow(typeof p === "object" ? p : String(p))));
    renumber();
    inputOf(httpEnabled).checked = !!ws.http_enabled;
    inputOf(confirmTimeout).value = ws.confirm_timeout_seconds ?? "";
    inputOf(allowedHosts).value = (ws.allowed_hosts || []).join(", ");
    inputOf(httpsEnabled).checked = !!ws.https_enabled;
    inputOf(httpsPort).value = ws.https_port ?? "";
    inputOf(httpsAddresses).value = (ws.https_addresses || []).join(", ");
    inputOf(httpsAdmin).checked = ws.https_admin !== false;
    inputOf(redirect).checked = !!ws.http_redirect_to_https;
    inputOf(hsts).checked = !!ws.hsts_enabled;
    inputOf(hstsAge).value = ws.hsts_max_age_seconds ?? "";
    const i = ws.intrusion_detection || {};
    inputOf(idEnabled).checked = !!i.enabled;
    inputOf(threshold).value = i.notification_threshold ?? "";
    inputOf(timeout).value = i.timeout_minutes ?? "";
    inputOf(deadtime).value = i.deadtime_minutes ?? "";
    inputOf(lockT).value = i.account_lockout_threshold ?? "";
    inputOf(lockM).value = i.account_lockout_minutes ?? "";
    inputOf(blockIp).checked = !!i.block_ip;
    inputOf(blockFor).value = i.block_duration_seconds ?? 0;
    inputOf(blockGrow).checked = !!i.block_duration_increment;
    inputOf(blockMax).value = i.block_duration_max_seconds ?? 0;
    inputOf(blockKeep).checked = !!i.blocks_survive_reboot;
    inputOf(emailP).value = i.email_profile || "";
    inputOf(phoneP).value = i.phone_profile || "";
    inputOf(ipP).value = i.ip_notify_profile || "";
    liveWarnings();
  }

  const num = (s) => { s = String(s).trim(); return /^\d+$/.test(s) ? Number(s) : s; };
  function collect() {
    const ports = [...portsBox.children].map((r) => r.entry()).filter((v) => v !== null);
    const hp = inputOf(httpsPort).value.trim();
    return {
      ...loaded,
      http_ports: ports,
      http_enabled: inputOf(httpEnabled).checked,
      confirm_timeout_seconds: num(inputOf(confirmTimeout).value),
      allowed_hosts: inputOf(allowedHosts).value.split(/[\s,]+/).filter((v) => v !== ""),
      https_enabled: inputOf(httpsEnabled).checked,
      https_port: hp === "" ? null : num(hp),
      https_addresses: inputOf(httpsAddresses).value.split(/[\s,]+/).filter((v) => v !== ""),
      https_admin: inputOf(httpsAdmin).checked,
      http_redirect_to_https: inputOf(redirect).checked,
      hsts_enabled: inputOf(hsts).checked,
      hsts_max_age_seconds: num(inputOf(hstsAge).value),
      intrusion_detection: {
        ...(loaded.intrusion_detection || {}),
        enabled: inputOf(idEnabled).checked,
        notification_threshold: num(inputOf(threshold).value),
        timeout_minutes: num(inputOf(timeout).value),
        deadtime_minutes: num(inputOf(deadtime).value),
        account_lockout_threshold: num(inputOf(lockT).value),
        account_lockout_minutes: num(inputOf(lockM).value),
        block_ip: inputOf(blockIp).checked,
        block_duration_seconds: num(inputOf(blockFor).value),
        block_duration_increment: inputOf(blockGrow).checked,
        block_duration_max_seconds: num(inputOf(blockMax).value),
        blocks_survive_reboot: inputOf(blockKeep).checked,
        email_profile: inputOf(emailP).value || null,
        phone_profile: inputOf(phoneP).value || null,
        ip_notify_profile: inputOf(ipP).value || null,
      },
    };
  }
  const isDirty = () => JSON.stringify(collect()) !== JSON.stringify({ ...loaded, intrusion_detection: { ...(loaded.intrusion_detection || {}) } });

  // Warnings where a setting can cut off access, shown as it is changed.
  function liveWarnings() {
    const http = inputOf(httpEnabled).checked;
    const httpsOn = inputOf(httpsEnabled).checked;
    const tls = location.protocol === "https:";
    const port = Number(location.port || (tls ? 443 : 80));
    let w = "";
    if (!http && !httpsOn) w = t("warn.bothoff");
    else if (!tls && !http) w = t("warn.httpoff");
    else if (tls && !httpsOn) w = t("warn.httpsoff");
    else if (!tls && ![...portsBox.querySelectorAll("input.port")].some((i) => Number(i.value) === port)) w = t("warn.portgone", { port });
    else if (tls && Number(inputOf(httpsPort).value || 443) !== port) w = t("warn.portgone", { port });
    else if (!tls && [...portsBox.children].some((r) => Number(r.querySelector("input.port").value) === port && !r.querySelector("input.port-admin").checked)) w = t("warn.adminoff", { port });
    else if (tls && !inputOf(httpsAdmin).checked) w = t("warn.adminoff", { port });
    protoWarn.textContent = w;
    blockWarn.textContent = inputOf(blockIp).checked && accessControl && !accessControl.enabled ? t("warn.blocknoac") : "";
  }
  for (const el of [general, https, intrusion]) el.addEventListener("input", liveWarnings);
  for (const el of [general, https, intrusion]) el.addEventListener("change", liveWarnings);

  async function set() {
    for (const el of [general, https, intrusion, form]) clearErrors(el);
    const before = loaded;
    const r = await busy(setBtn, t("working"), () => api("PUT", "/api/v1/webserver", { json: collect() }));
    if (!r.ok) { showError(document.getElementById("main"), r.error, form.querySelector(".form-alert")); return; }
    // 202: applied provisionally (it closes the port in use); the banner
    // shows the deadline and where to confirm.
    loaded = r.status === 202 ? r.data.settings : r.data;
    fill(loaded);
    const st = await refreshPending();
    const portsChanged = JSON.stringify([before.http_ports, before.http_enabled, before.https_port, before.https_enabled, before.https_addresses]) !==
      JSON.stringify([loaded.http_ports, loaded.http_enabled, loaded.https_port, loaded.https_enabled, loaded.https_addresses]);
    if (portsChanged) {
      const links = addressesFor(loaded);
      addrBox.replaceChildren(h("p", { text: t("ws.nowat") }), h("ul", {}, links.map((u) => h("li", {}, h("a", { href: u, text: u })))));
    } else addrBox.replaceChildren();
    announce(st && st.pending ? t("ws.setpending") : t("ws.setdone"));
  }

  async function factory() {
    const r = await api("GET", "/api/v1/webserver/factory");
    if (!r.ok) { pageAlert(r.error.message); return; }
    clearErrors(document.body);
    fill(r.data);
    announce(t("ws.factoryloaded"));
  }

  async function restore() {
    const v = await ask(t("restore.title"), t("restore.text"), [
      { label: t("btn.restore"), value: "restore", primary: true }, { label: t("btn.cancel"), value: "cancel" }]);
    if (v !== "restore") return;
    const r = await api("POST", "/api/v1/config/restore");
    if (!r.ok) { pageAlert(r.error.message); return; }
    await reloadAll();
    announce(t("restore.done"));
  }

  async function reloadAll() {
    const [w, c] = await Promise.all([api("GET", "/api/v1/webserver"), api("GET", "/api/v1/certificate")]);
    if (w.ok) { loaded = w.data; fill(loaded); }
    if (c.ok) showCert(c.data);
  }

  function showCert(view) {
    const c = view.certificate;
    const row = (label, value, idv) => [h("dt", { text: label }), h("dd", { id: idv, text: value })];
    certBox.replaceChildren(
      h("dl", { class: "cert" },
        row(t("cert.source"), view.source === "individual" ? t("cert.individual") : t("cert.factory"), "cert-source"),
        row(t("cert.issuer"), c.issuer, "cert-issuer"),
        row(t("cert.subject"), c.subject, "cert-subject"),
        // 9999-12-31T23:59:59Z: no expiration date (RFC 5280), the factory certificate's.
        row(t("cert.validity"), c.not_after.startsWith("9999-12-31")
          ? t("cert.validity.noend", { from: fmtTime(c.not_before) })
          : t("cert.validity.value", { from: fmtTime(c.not_before), to: fmtTime(c.not_after), days: c.days_until_expiry }), "cert-validity"),
        row(t("cert.fingerprint"), c.fingerprint_sha256, "cert-fingerprint"),
        row(t("cert.serial"), c.serial, "cert-serial"),
        row(t("cert.key"), c.key_type + " " + c.key_bits + (c.curve ? " (" + c.curve + ")" : ""), "cert-key"),
        row(t("cert.san"), (c.subject_alt_names || []).join(", "), "cert-san"),
        row(t("cert.chain"), String(c.chain_length) + (c.self_signed ? " · " + t("cert.selfsigned") : ""), "cert-chain"),
        row(t("cert.csr"), view.csr_pending ? t("yes") : t("no"), "cert-csr")),
      ...(c.days_until_expiry < 30 ? [warning(t("cert.expiring", { days: c.days_until_expiry }))] : []),
      ...(view.warnings || []).map((w) => warning(w)));
    dlCert.disabled = !view.individual_exists;
    dlReq.disabled = !view.csr_pending;
    delBtn.disabled = !view.individual_exists;
    upCertForm.querySelector("#upload-cert-submit").disabled = false;
  }

  fill(loaded);
  if (certR.ok) showCert(certR.data); else certBox.replaceChildren(warning(certR.error.message));
  if (acmeR.ok) fillAcme(acmeR.data); else if (!acmeR.absent) acmeStatus.replaceChildren(warning(acmeR.error.message));
  if (session.group !== "admins") pageAlert(t("viewer"));
}
