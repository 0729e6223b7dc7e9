"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  const body = JSON.stringify({
    user: document.getElementById("user").value,
    password: document.getElementById("password").value,
  });
  try {
    const r = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "content-type": "application/json", "x-portcullis-ui": "1" },
      body,
    });
    if (r.ok) {
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/admin/") ? next : "/admin/";
      return;
    }
    const e = await r.json().catch(() => null);
    error.textContent = e && e.error ? e.error.message : "Login failed (" + r.status + ")";
    document.getElementById("password").setAttribute("aria-invalid", "true");
  } catch (e) {
    error.textContent = "The device cannot be reached.";
  }
});
