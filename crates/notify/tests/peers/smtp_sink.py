"""SMTP sink for the portcullis-notify tests (run with Debian's /usr/bin/python3).

aiosmtpd (Debian package python3-aiosmtpd) in one of three modes: plain,
STARTTLS required, or implicit TLS; optionally with AUTH. Each received
message is parsed with Python's email package and written to OUT/N.json
(atomically), so the test checks what a real mail reader would see.
Prints READY once the server accepts connections, then runs until killed.
"""

import argparse
import email
import json
import os
import ssl
import sys
import threading
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--auth", help="user:password that AUTH accepts")
args = parser.parse_args()


class Handler:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            text = part.get_content() if part.get_content_maintype() == "text" else None
            parts.append(
                {"content_type": part.get_content_type(), "filename": part.get_filename(), "text": text}
            )
        auth = getattr(session, "auth_data", None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]) if msg["message-id"] is not None else None,
            "date": str(msg["date"]) if msg["date"] is not None else None,
            # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "login": auth.login.decode() if isinstance(auth, LoginPassword) else None,
            "parts": parts,
        }
        with self.lock:
            self.count += 1
            path = os.path.join(args.out, f"{self.count}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, _, password = (args.auth or "").partition(":")
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


kwargs = {}
if args.mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if args.mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    else:
        kwargs.update(ssl_context=ctx)
if args.auth:
    # aiosmtpd only counts STARTTLS as TLS for this check; with implicit
    # TLS the whole session is encrypted anyway.
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.mode == "starttls")

controller = Controller(Handler(), hostname="127.0.0.1", port=args.port, ready_timeout=10, **kwargs)
controller.start()
print("READY", flush=True)
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
    sys.exit(0)
