// Entry point of every page but the login page: loads the session and
// renders the page the path names.
import { loadSession, frame, refreshPending, t } from "./common.js";
import { renderWebServer } from "./webserver.js";
import { renderMenu, renderAccess, renderLogfile, renderEvents, renderBlocked, renderUsers } from "./pages.js";
import { renderProfiles } from "./profiles.js";
import { renderFleet } from "./fleet.js";

const PAGES = {
  "": ["title.menu", renderMenu],
  webserver: ["title.webserver", renderWebServer],
  "access-control": ["title.access", renderAccess],
  profiles: ["title.profiles", renderProfiles],
  fleet: ["title.fleet", renderFleet],
  logfile: ["title.logfile", renderLogfile],
  events: ["title.events", renderEvents],
  blocked: ["title.blocked", renderBlocked],
  users: ["title.users", renderUsers],
};

(async () => {
  if (!(await loadSession())) return;
  const name = location.pathname.replace(/^\/admin\/?/, "").replace(/\/$/, "");
  const [title, render] = PAGES[name] || PAGES[""];
  const content = frame(name in PAGES ? name : "", title);
  refreshPending();
  try {
    await render(content);
  } catch (e) {
    document.getElementById("page-alert").textContent = t("err.page") + " " + e;
  }
  document.body.dataset.ready = "1";
})();
