// Browser test of two-step verification: a person sets it up on the Users
// page (the key read from the page, the code computed here with HMAC-SHA1
// as an authenticator app does), gets the recovery codes once, and then
// logs in with a code on the login page, which asks for it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { withUi, shot, ready } from "./harness.mjs";

const ALICE = "alice-ui-password";

// RFC 4648 base32 to bytes.
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { bits -= 8; out.push((value >>> bits) & 0xff); }
  }
  return Buffer.from(out);
}

// The TOTP code (RFC 6238: HMAC-SHA1, 6 digits, 30 s) of `secret` at Unix time `seconds`.
function totp(secret, seconds) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}

async function loginForm(page, server, user, password) {
  await page.goto(server.base + "/admin/login");
  await page.locator("#user").fill(user);
  await page.locator("#password").fill(password);
  await page.locator("#login-submit").click();
}

test("two-step verification: set up on the Users page with the app's first code, then a login asks for a code", () =>
  withUi("16-totp", async (server, { page, context }) => {
    assert.equal((await server.api("PUT", "/api/v1/users/alice", { group: "users", password: ALICE })).status, 200);
    await loginForm(page, server, "alice", ALICE);
    await page.waitForURL((u) => !u.pathname.startsWith("/admin/login"));
    await page.goto(server.base + "/admin/users");
    await ready(page);

    // Set up: the QR code and the key, then the app's first code.
    await page.locator("#tf-start").click();
    await page.locator("#tf-secret").waitFor();
    assert.ok(await page.locator("#tf-qr").evaluate((img) => img.complete && img.naturalWidth > 0), "the QR code is drawn");
    const secret = (await page.locator("#tf-secret").innerText()).trim();
    assert.match(secret, /^[A-Z2-7]{32}$/);
    await shot(page, "16-totp-enrol");
    await page.locator("#tf-code").fill(String((Number(totp(secret, Date.now() / 1000)) + 1) % 1000000).padStart(6, "0"));
    await page.locator("#tf-confirm").click();
    await page.locator("#tf-code[aria-invalid=true]").waitFor();
    assert.match(await page.locator("#tf-code-err").innerText(), /not the app's current one|wrong/i);
    const enrolled = Date.now() / 1000;
    await page.locator("#tf-code").fill(totp(secret, enrolled));
    await page.locator("#tf-confirm").click();
    const dialog = page.locator("dialog[open]");
    await dialog.locator("#tf-recovery li").first().waitFor();
    const codes = await dialog.locator("#tf-recovery li").allInnerTexts();
    assert.equal(codes.length, 10);
    assert.ok(codes.every((c) => /^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/.test(c.trim())), codes.join(" "));
    await shot(page, "16-totp-recovery");
    await dialog.getByRole("button", { name: "Close" }).click();
    await page.locator("#tf-reset-form").waitFor();
    assert.equal(await page.locator("#tf-secret").count(), 0, "the key is gone from the page");
    const users = (await server.api("GET", "/api/v1/users")).json;
    assert.equal(users.find((u) => u.name === "alice").second_factor, true);

    // A new login: the password, then the code the page asks for.
    await context.clearCookies();
    await loginForm(page, server, "alice", ALICE);
    await page.locator("#code-field:not([hidden])").waitFor();
    assert.match(await page.locator("#code-err").innerText(), /two-step verification/);
    await page.locator("#code").fill("000000" === totp(secret, enrolled + 30) ? "111111" : "000000");
    await page.locator("#login-submit").click();
    await page.waitForFunction(() => /Wrong code/.test(document.getElementById("code-err").textContent));
    assert.ok(page.url().includes("/admin/login"), "still on the login page");
    // The step after the enrolment's (one step ahead is accepted): a code not used yet.
    await page.locator("#code").fill(totp(secret, enrolled + 30));
    await page.locator("#login-submit").click();
    await page.waitForURL((u) => !u.pathname.startsWith("/admin/login"));
    await ready(page);
    await page.goto(server.base + "/admin/users");
    await ready(page);
    await page.locator("#tf-reset-form").waitFor();
    await shot(page, "16-totp-on");
    const events = (await server.api("GET", "/api/v1/events")).json.events.map((e) => e.kind);
    assert.ok(events.includes("second_factor_enrolled"), events.join(", "));
  }));
