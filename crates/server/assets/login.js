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
  for (const id of ["user", "password", "code"]) { $(id).removeAttribute("aria-invalid"); $(id + "-err").textContent = ""; }
  const user = $("user").value.trim();
  const password = $("password").value;
  // Asked for once the server says the account has two-step verification.
  const askCode = !$("code-field").hidden;
  const code = $("code").value.trim();
  if (askCode && !code) return fail("code", t("login.second_factor_required"));
  if (!user) return fail("user", t("us.namerequired"));
  const button = $("login-submit");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const r = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "content-type": "application/json", "x-portcullis-ui": "1", "accept-language": lang() },
      body: JSON.stringify(askCode ? { user, password, code } : { user, password }),
    });
    if (r.ok) {
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && /^\/admin\/[\w\-/]*$/.test(next) ? next : "/admin/";
      return;
    }
    const e = await r.json().catch(() => null);
    const error = e && e.error ? e.error : null;
    const why = error ? error.code : "";
    if (why === "second_factor_required") {
      $("code-field").hidden = false;
      return fail("code", t("login.second_factor_required"));
    }
    if (why === "second_factor_wrong" || why === "second_factor_code_used") {
      $("code").value = "";
      return fail("code", t("login." + why), error.detail);
    }
    fail("password", why === "wrong_credentials" || why === "busy" ? t("login." + why) : error ? error.message : t("login.failed", { status: r.status }), error && error.detail);
  } catch (e) {
    fail("password", t("err.unreachable"));
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});
