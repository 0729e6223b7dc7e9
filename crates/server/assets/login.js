// The login page: user name first, then password; a session cookie and a
// CSRF token come back. Errors are shown next to the field concerned. The
// server rendered the page's texts in its language; the selector changes it.
import { t, lang, setLang, LANGUAGES } from "./i18n.js";

const $ = (id) => document.getElementById(id);

const select = document.createElement("select");
select.id = "lang-select";
select.className = "lang";
select.setAttribute("aria-label", t("lang.label"));
select.title = t("lang.label");
for (const [code, name] of LANGUAGES) {
  const o = document.createElement("option");
  o.value = code;
  o.lang = code;
  o.textContent = name;
  o.selected = code === lang();
  select.append(o);
}
select.addEventListener("change", () => { setLang(select.value); location.reload(); });
$("lang-slot").replaceChildren(select);

function fail(id, message, detail) {
  const input = $(id);
  input.setAttribute("aria-invalid", "true");
  $(id + "-err").textContent = message;
  if (detail) $(id + "-err").title = detail; else $(id + "-err").removeAttribute("title");
  input.focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  for (const id of ["user", "password"]) { $(id).removeAttribute("aria-invalid"); $(id + "-err").textContent = ""; }
  const user = $("user").value.trim();
  const password = $("password").value;
  if (!user) return fail("user", t("us.namerequired"));
  const button = $("login-submit");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const r = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "content-type": "application/json", "x-portcullis-ui": "1", "accept-language": lang() },
      body: JSON.stringify({ user, password }),
    });
    if (r.ok) {
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && /^\/admin\/[\w\-/]*$/.test(next) ? next : "/admin/";
      return;
    }
    const e = await r.json().catch(() => null);
    const error = e && e.error ? e.error : null;
    const code = error ? error.code : "";
    fail("password", code === "wrong_credentials" || code === "busy" ? t("login." + code) : error ? error.message : t("login.failed", { status: r.status }), error && error.detail);
  } catch (e) {
    fail("password", t("err.unreachable"));
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});
