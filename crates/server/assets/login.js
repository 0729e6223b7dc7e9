// The login page: user name first, then password; a session cookie and a
// CSRF token come back. Errors are shown next to the field concerned.
import { t, lang, setLang } from "./i18n.js";

const $ = (id) => document.getElementById(id);

function texts() {
  document.documentElement.lang = lang();
  document.title = t("title.login") + " – portcullis";
  $("login-title").textContent = t("title.login");
  $("login-intro").textContent = t("login.intro");
  $("user-label").textContent = t("login.user");
  $("password-label").textContent = t("login.password");
  $("login-submit").textContent = t("login.submit");
  const other = lang() === "de" ? "en" : "de";
  const b = document.createElement("button");
  b.type = "button";
  b.id = "lang-switch";
  b.className = "lang";
  b.lang = other;
  b.textContent = other === "de" ? "Deutsch" : "English";
  b.addEventListener("click", () => { setLang(other); texts(); });
  $("lang-slot").replaceChildren(b);
}
texts();

function fail(id, message) {
  const input = $(id);
  input.setAttribute("aria-invalid", "true");
  $(id + "-err").textContent = message;
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
      headers: { "content-type": "application/json", "x-portcullis-ui": "1" },
      body: JSON.stringify({ user, password }),
    });
    if (r.ok) {
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && /^\/admin\/[\w\-/]*$/.test(next) ? next : "/admin/";
      return;
    }
    const e = await r.json().catch(() => null);
    const code = e && e.error ? e.error.code : "";
    fail("password", code === "wrong_credentials" || code === "busy" ? t("login." + code) : e && e.error ? e.error.message : t("login.failed", { status: r.status }));
  } catch (e) {
    fail("password", t("err.unreachable"));
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
});
