// The fleet page: syslog export and the CrowdSec bouncer (GET/PUT
// /api/v1/syslog and /api/v1/crowdsec, Sets like the other dialogs). Secrets
// are never shown: an empty secret field keeps the stored one.
import { api, h, field, inputOf, clearErrors, showError, formAlert, announce, pageAlert, section, note, t, built } from "./common.js";
import { closeAction } from "./webserver.js";

export async function renderFleet(root) {
  const parts = [];
  if (built("syslog")) parts.push(await syslogForm());
  if (built("crowdsec")) parts.push(await crowdsecForm());
  if (built("metrics")) parts.push(section(t("fl.metrics"), note(t("fl.metrics.text"))));
  root.replaceChildren(...parts.filter(Boolean),
    h("div", { class: "buttons" }, h("button", { type: "button", id: "close", onclick: () => closeAction(false) }, t("btn.close"))));
}

async function syslogForm() {
  const r = await api("GET", "/api/v1/syslog");
  if (!r.ok) { pageAlert(r.error.message); return null; }
  let loaded = r.data;
  const form = h("form", { id: "syslog-form", novalidate: true });
  const enabled = field({ label: t("fl.syslog.enabled"), path: "enabled", type: "checkbox" });
  const logfile = field({ label: t("fl.syslog.logfile"), path: "include_logfile", type: "checkbox" });
  const body = h("tbody", {});
  const row = (d) => {
    const tr = h("tr", {});
    tr.loaded = d;
    const address = field({ label: t("fl.syslog.address"), path: "destinations[]", value: d.address, attrs: { autocomplete: "off", placeholder: "siem.example:6514" } });
    const transport = field({ label: t("fl.syslog.transport"), path: "destinations[]", type: "select", value: d.transport, options: [["udp", "UDP"], ["tcp", "TCP"], ["tls", "TLS"]] });
    const ca = field({ label: t("fl.syslog.ca"), path: "destinations[]", type: "textarea", rows: 2, value: d.ca_pem || "" });
    for (const f of [address, transport, ca]) f.querySelector("label").classList.add("visually-hidden");
    const remove = h("button", { type: "button", class: "small", onclick: () => { tr.remove(); renumber(); } }, t("ac.remove"));
    tr.append(h("td", {}, address), h("td", {}, transport), h("td", {}, ca), h("td", {}, remove));
    tr.renumber = (i) => {
      inputOf(address).dataset.field = `destinations[${i}].address`;
      inputOf(transport).dataset.field = `destinations[${i}].transport`;
      inputOf(ca).dataset.field = `destinations[${i}].ca_pem`;
    };
    tr.collect = () => ({ ...tr.loaded, address: inputOf(address).value.trim(), transport: inputOf(transport).value, ca_pem: inputOf(ca).value.trim() || null });
    return tr;
  };
  const renumber = () => [...body.children].forEach((tr, i) => tr.renumber(i));
  const table = h("table", { class: "rules" }, h("caption", { text: t("fl.syslog.destinations") }),
    h("thead", {}, h("tr", {}, ...["fl.syslog.address", "fl.syslog.transport", "fl.syslog.ca", "actions"].map((k) => h("th", { scope: "col", text: t(k) })))), body);
  const add = h("button", { type: "button", id: "add-destination", class: "small", onclick: () => {
    const tr = row({ address: "", transport: "tcp" }); body.append(tr); renumber(); tr.querySelector("input").focus();
  } }, t("fl.syslog.add"));
  form.append(note(t("fl.syslog.text")), enabled, logfile,
    h("div", { class: "field", "data-field-group": "destinations" }, table, add, h("input", { type: "hidden", "data-field": "destinations" })),
    formAlert(), h("div", { class: "buttons" }, h("button", { type: "submit", id: "set-syslog", class: "primary" }, t("btn.set"))));
  function fill() {
    inputOf(enabled).checked = !!loaded.enabled;
    inputOf(logfile).checked = !!loaded.include_logfile;
    body.replaceChildren(...(loaded.destinations || []).map(row));
    renumber();
  }
  fill();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const json = { ...loaded, enabled: inputOf(enabled).checked, include_logfile: inputOf(logfile).checked, destinations: [...body.children].map((tr) => tr.collect()) };
    const x = await api("PUT", "/api/v1/syslog", { json });
    if (!x.ok) { showError(form, { ...x.error, field: (x.error.field || "").replace(/^syslog\./, "") }); return; }
    loaded = x.data; fill(); announce(t("fl.setdone"));
  });
  return section(t("fl.syslog"), form);
}

async function crowdsecForm() {
  const r = await api("GET", "/api/v1/crowdsec");
  if (!r.ok) { pageAlert(r.error.message); return null; }
  let loaded = r.data;
  const form = h("form", { id: "crowdsec-form", novalidate: true });
  const enabled = field({ label: t("fl.cs.enabled"), path: "enabled", type: "checkbox" });
  const url = field({ label: t("fl.cs.url"), path: "lapi_url", attrs: { autocomplete: "off", placeholder: "http://lapi.example:8080" } });
  const key = field({ label: t("fl.cs.key"), path: "bouncer_key", type: "password", hint: t("fl.secret.hint"), attrs: { autocomplete: "new-password" } });
  const interval = field({ label: t("fl.cs.interval"), path: "poll_interval_seconds", type: "number", attrs: { min: 1, max: 3600 } });
  const machine = field({ label: t("fl.cs.machine"), path: "machine_id", hint: t("fl.cs.machine.hint"), attrs: { autocomplete: "off" } });
  const password = field({ label: t("fl.cs.password"), path: "machine_password", type: "password", hint: t("fl.secret.hint"), attrs: { autocomplete: "new-password" } });
  form.append(note(t("fl.cs.text")), enabled, url, key, interval, machine, password, formAlert(),
    h("div", { class: "buttons" }, h("button", { type: "submit", id: "set-crowdsec", class: "primary" }, t("btn.set"))));
  function fill() {
    inputOf(enabled).checked = !!loaded.enabled;
    inputOf(url).value = loaded.lapi_url || "";
    inputOf(key).value = "";
    inputOf(interval).value = loaded.poll_interval_seconds;
    inputOf(machine).value = loaded.machine_id || "";
    inputOf(password).value = "";
  }
  fill();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const json = {
      ...loaded,
      enabled: inputOf(enabled).checked,
      lapi_url: inputOf(url).value.trim(),
      poll_interval_seconds: Number(inputOf(interval).value),
      machine_id: inputOf(machine).value.trim() || null,
    };
    // Omitted secrets keep the stored ones.
    delete json.bouncer_key; delete json.machine_password;
    if (inputOf(key).value) json.bouncer_key = inputOf(key).value;
    if (inputOf(password).value) json.machine_password = inputOf(password).value;
    const x = await api("PUT", "/api/v1/crowdsec", { json });
    if (!x.ok) { showError(form, { ...x.error, field: (x.error.field || "").replace(/^crowdsec\./, "") }); return; }
    loaded = x.data; fill(); announce(t("fl.setdone"));
  });
  return section(t("fl.cs"), form);
}
