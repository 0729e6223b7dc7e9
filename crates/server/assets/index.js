"use strict";
const H = { "x-portcullis-ui": "1" };
async function get(path) {
  const r = await fetch(path, { headers: H });
  if (r.status === 401) { location.href = "/admin/login?next=" + encodeURIComponent(location.pathname); return null; }
  return r.json();
}
(async () => {
  const s = await get("/api/v1/session");
  if (!s) return;
  document.getElementById("who").textContent = s.user + " (" + s.group + ")";
  document.getElementById("settings").textContent = JSON.stringify(await get("/api/v1/webserver"), null, 2);
  document.getElementById("status").textContent = JSON.stringify(await get("/api/v1/config/status"), null, 2);
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/v1/session", { method: "DELETE", headers: { ...H, "x-csrf-token": s.csrf_token || "" } });
    location.href = "/admin/login";
  });
})();
