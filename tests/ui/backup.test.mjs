// Browser test of the admin menu's Backup and restore section: export
// (passphrase twice) downloads the file, import brings its settings back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { withUi, shot, login } from "./harness.mjs";

const PASSPHRASE = "correct horse battery staple";

test("backup: export with the passphrase twice downloads the file; importing it brings the settings back", () =>
  withUi("14-backup", async (server, { page }) => {
    const ws = (await server.api("GET", "/api/v1/webserver")).json;
    ws.intrusion_detection.notification_threshold = 7;
    assert.equal((await server.api("PUT", "/api/v1/webserver", ws)).status, 200);
    assert.equal((await server.api("POST", "/api/v1/config/store")).status, 200);
    await login(page, server, "/admin/");

    const exportForm = page.locator("#backup-export");
    await exportForm.locator("[data-field=passphrase]").fill(PASSPHRASE);
    await exportForm.locator("[data-field=passphrase2]").fill(PASSPHRASE + "x");
    await page.locator("#backup-export-btn").click();
    await exportForm.locator("[data-field=passphrase2][aria-invalid=true]").waitFor();
    assert.match(await exportForm.locator(".err[role=alert]").allInnerTexts().then((t) => t.join(" ")), /differ/);
    await exportForm.locator("[data-field=passphrase2]").fill(PASSPHRASE);
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#backup-export-btn").click()]);
    assert.match(download.suggestedFilename(), /^portcullis-backup-.*\.age$/);
    const file = await download.path();
    assert.ok(readFileSync(file).subarray(0, 22).toString() === "age-encryption.org/v1\n", "an age file");
    await page.waitForFunction(() => /Backup downloaded/.test(document.getElementById("page-status").textContent));

    // Changed and stored after the backup; the import puts it back, running.
    ws.intrusion_detection.notification_threshold = 9;
    assert.equal((await server.api("PUT", "/api/v1/webserver", ws)).status, 200);
    assert.equal((await server.api("POST", "/api/v1/config/store")).status, 200);
    const importForm = page.locator("#backup-import");
    await importForm.locator("input[type=file]").setInputFiles(file);
    await importForm.locator("[data-field=passphrase]").fill("not the passphrase");
    await page.locator("#backup-import-btn").click();
    await page.locator("dialog[open]").getByRole("button", { name: "Import backup" }).click();
    await importForm.locator("[data-field=passphrase][aria-invalid=true]").waitFor();
    assert.match(await importForm.locator(".err[role=alert]").allInnerTexts().then((t) => t.join(" ")), /passphrase does not open this backup/);
    assert.equal((await server.api("GET", "/api/v1/webserver")).json.intrusion_detection.notification_threshold, 9, "nothing changed");

    await importForm.locator("[data-field=passphrase]").fill(PASSPHRASE);
    await page.locator("#backup-import-btn").click();
    await page.locator("dialog[open]").getByRole("button", { name: "Import backup" }).click();
    await page.waitForSelector("#backup-imported");
    assert.match(await page.locator("#backup-imported").innerText(), /imported\. Store the configuration/);
    assert.equal((await server.api("GET", "/api/v1/webserver")).json.intrusion_detection.notification_threshold, 7);
    // Running, not stored, as after a Set: the status above says so.
    await page.waitForFunction(() => /not stored/.test(document.getElementById("unsaved").textContent));
    const events = (await server.api("GET", "/api/v1/events")).json.events.map((e) => e.kind);
    assert.ok(events.includes("config_exported") && events.includes("config_imported"), events.join(", "));
    await shot(page, "14-backup-imported");
  }));
