#!/usr/bin/env python3
"""Measurement primitives for bench/run (standard library only).

Sub-commands:
  start   --pidfile F --log L --url U [--timeout S] -- CMD...
          start a server, print the ms until U first answers (any HTTP status)
  wait    --url U [--timeout S]          wait until U answers (any HTTP status)
  tree    PID...                         print the PIDs of these processes and their descendants
  cpu     PID...                         print CPU seconds (utime+stime) of the process trees
  pss     PID...                         print PSS in KiB summed over the process trees
  sample  --out F --interval S PID...    until SIGTERM, keep the peak PSS (KiB) in F
  rusage  --out F -- CMD...              run CMD, write the CPU seconds it used to F
  prio    [--nice N] -- CMD...           exec CMD in a session (autogroup) of its own at nice N
  timed   -- CMD...                      run CMD (bench priority), print its wall time in ms
  flood   ...                            password-guessing flood + legitimate client (see --help)
  idleconns --port P [--tls|--h2] [--count N] [--steps N,...] [--path U] PID...
          memory per idle keep-alive connection (PSS before / with N idle / after they closed), JSON
  h2json  STDOUT LOGFILE                 h2load's summary and per-request log into JSON (req/s, p50, p99)
  wrkjson FILE                           extract the JSON line our wrk script prints
  abjson  FILE                           parse ab's output into JSON
  report  RAW.jsonl OUT.json OUT.md      aggregate the raw records into the tables
"""

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------- processes

def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read().decode("latin-1")
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pids):
    kids = _children_map()
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        if p in out or not os.path.exists(f"/proc/{p}"):
            continue
        out.append(p)
        todo.extend(kids.get(p, []))
    return sorted(out)


def cpu_seconds(pids):
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                s = f.read().decode("latin-1")
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def pss_kib(pids):
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def http_answers(url, timeout=0.5):
    u = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((u.hostname, u.port or 80), timeout=timeout) as s:
            s.sendall(f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def _prio(nice):
    """A session of its own (so also its own scheduler autogroup) with the
    given nice level for the group and the process: other work on a shared
    machine then takes less CPU from it. Errors are ignored (no privilege)."""
    try:
        os.setsid()
    except OSError:
        pass
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass


def bench_nice():
    return int(os.environ.get("BENCH_NICE", "-10"))


def cmd_prio(a):
    _prio(a.nice)
    os.execvp(a.command[0], a.command)


def cmd_timed(a):
    """Runs CMD (with the bench priority); prints its wall time in ms."""
    nice = bench_nice()
    t0 = time.perf_counter()
    rc = subprocess.call(a.command, stdout=subprocess.DEVNULL, preexec_fn=lambda: _prio(nice))
    print(f"{(time.perf_counter() - t0) * 1000:.1f}")
    return rc


def cmd_start(a):
    log = open(a.log, "ab")
    nice = bench_nice()
    t0 = time.perf_counter()
    # Own session (lighttpd signals its whole process group when it stops),
    # own autogroup, same priority for every server.
    proc = subprocess.Popen(a.command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: _prio(nice))
    with open(a.pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    if a.url == "none":
        return 0
    deadline = t0 + a.timeout
    while time.perf_counter() < deadline:
        if http_answers(a.url):
            print(f"{(time.perf_counter() - t0) * 1000:.1f}")
            return 0
        if proc.poll() is not None:
            print(f"server exited with {proc.returncode} before answering", file=sys.stderr)
            return 1
        time.sleep(0.001)
    print(f"no answer from {a.url} within {a.timeout} s", file=sys.stderr)
    return 1


def cmd_rusage(a):
    """Runs a command; writes the CPU seconds it used (user+sys, with its children) to --out."""
    import resource
    rc = subprocess.call(a.command)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(a.out, "w") as f:
        f.write(f"{ru.ru_utime + ru.ru_stime:.3f}\n")
    return rc


def cmd_wait(a):
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        if http_answers(a.url):
            return 0
        time.sleep(0.01)
    return 1


def cmd_sample(a):
    peak = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        v = pss_kib(a.pids)
        if v > peak:
            peak = v
            with open(a.out + ".tmp", "w") as f:
                f.write(f"{peak}\n")
            os.replace(a.out + ".tmp", a.out)
        time.sleep(a.interval)
    return 0


# ------------------------------------------------------------------ parsing

def cmd_wrkjson(a):
    with open(a.file) as f:
        for line in f:
            if line.startswith("WRKJSON "):
                print(line[8:].strip())
                return 0
    print(json.dumps({"error": "no wrk summary"}))
    return 1


def cmd_abjson(a):
    r = {}
    keys = {
        "Complete requests:": ("complete", int),
        "Failed requests:": ("failed", int),
        "Non-2xx responses:": ("non2xx", int),
        "Time taken for tests:": ("seconds", float),
        "Requests per second:": ("rps", float),
        "SSL/TLS Protocol:": ("tls", str),
        "Server Temp Key:": ("kx", str),
    }
    with open(a.file) as f:
        for line in f:
            for k, (name, conv) in keys.items():
                if line.startswith(k):
                    v = line[len(k):].strip()
                    r[name] = conv(v.split()[0]) if conv is not str else v
    r.setdefault("non2xx", 0)
    print(json.dumps(r))
    return 0 if "complete" in r else 1


# ------------------------------------------------------- idle connections

def _fetch_once(sock, host, port, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    status, rest, keep = _read_response(sock, b"")
    if status != 200 or rest or not keep:
        raise ConnectionError(f"status {status}, keep-alive {keep}, {len(rest)} extra bytes")



def _h2_fetch_once(sock, host, path):
    """One HTTP/2 GET on a fresh connection (ALPN h2): the preface, an empty
    SETTINGS, a HEADERS frame (HPACK: indexed :method GET and :scheme https,
    :path and :authority as literals), then frames until stream 1 ends; the
    server's SETTINGS are acknowledged. The connection then stays open."""
    import struct

    def frame(ftype, flags, stream, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

    def lit(index, value):
        v = value.encode()
        if len(v) >= 127:
            raise ValueError("value too long for this small encoder")
        return bytes([index, len(v)]) + v

    block = b"\x82\x87" + lit(4, path) + lit(1, host)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    buf, got_headers, data = b"", False, 0
    while True:
        while len(buf) < 9:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("h2: closed before the answer ended")
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        while len(buf) < 9 + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("h2: closed inside a frame")
            buf += chunk
        payload, buf = buf[9:9 + length], buf[9 + length:]
        if ftype == 4 and not flags & 1:
            sock.sendall(frame(4, 1, 0))
        elif ftype in (3, 7):
            raise ConnectionError(f"h2: {'RST_STREAM' if ftype == 3 else 'GOAWAY'} {payload[:8].hex()}")
        elif stream == 1 and ftype == 1:
            got_headers = True
        elif stream == 1 and ftype == 0:
            data += length
        if stream == 1 and ftype in (0, 1) and flags & 1:
            if not got_headers:
                raise ConnectionError("h2: stream ended without headers")
            if buf:
                raise ConnectionError(f"h2: {len(buf)} bytes after the answer")
            return data


def cmd_idleconns(a):
    """PSS of the server's processes before, with --count keep-alive
    connections that each fetched --path once and then sat idle (--settle s),
    and --settle s after they all closed; the first and third from the
    outside only. JSON on stdout."""
    import resource
    import select
    import ssl
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.count + 256), hard))
    ctx = None
    if a.tls or a.h2:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"] if a.h2 else ["http/1.1"])

    def connect():
        s = socket.create_connection((a.host, a.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        if a.h2:
            if s.selected_alpn_protocol() != "h2":
                raise ConnectionError(f"ALPN chose {s.selected_alpn_protocol()!r}, not h2")
            _h2_fetch_once(s, "localhost", a.path)
        else:
            _fetch_once(s, a.host, a.port, a.path)
        return s

    # Warm-up: what the first connections of a fresh server allocate once
    # (TLS ticket keys, thread-local caches) is not a per-connection cost.
    for s in [connect() for _ in range(16)]:
        s.close()
    time.sleep(a.settle)
    before = pss_kib(a.pids)
    steps = sorted({int(x) for x in a.steps.split(",") if x} - {a.count} - {0})
    steps = [n for n in steps if n < a.count]
    conns, t0, at = [], time.time(), {}
    opened_s = 0.0
    for n in steps + [a.count]:
        t1 = time.time()
        while len(conns) < n:
            conns.append(connect())
        opened_s += time.time() - t1
        time.sleep(a.settle)
        at[n] = pss_kib(a.pids)
    idle = at[a.count]
    # Still open: the server closed none of them (an idle one it closed would be readable, at EOF).
    readable, _, _ = select.select([c.fileno() for c in conns], [], [], 0)
    still_open = a.count - len(readable)
    for c in conns:
        c.close()
    time.sleep(a.settle)
    after = pss_kib(a.pids)
    print(json.dumps({
        "count": a.count, "tls": a.tls or a.h2, "h2": a.h2, "still_open": still_open, "opened_s": round(opened_s, 2),
        "steps": {str(n): {"pss_kib": at[n], "per_conn_kib": round((at[n] - before) / n, 2)} for n in steps},
        "pss_before_kib": before, "pss_idle_kib": idle, "pss_after_close_kib": after,
        "per_conn_kib": round((idle - before) / a.count, 2),
        "kept_after_close_kib": after - before,
    }))
    return 0 if still_open == a.count else 1


# ------------------------------------------------------------------ h2load

def cmd_h2json(a):
    """h2load's printed summary and its per-request log (--log-file: start
    time in µs, status, µs until the response ended) into one JSON line."""
    import re
    text = open(a.stdout, errors="replace").read()
    r = {}
    m = re.search(r"finished in ([0-9.]+)(us|ms|s),", text)
    if m:
        r["seconds"] = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        r.update(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"), map(int, m.groups())))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        r["non2xx"] = sum(map(int, m.groups()[1:]))
    m = re.search(r"Application protocol: (\S+)", text)
    r["proto"] = m.group(1) if m else None
    m = re.search(r"traffic: .*?\((\d+)\) total", text)
    if m:
        r["bytes"] = int(m.group(1))
    lat = []
    try:
        with open(a.logfile) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]))
    except OSError:
        pass
    lat.sort()
    if lat:
        r["p50_us"] = lat[len(lat) // 2]
        r["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(json.dumps(r))
    return 0 if r.get("seconds") and r.get("succeeded") else 1


# -------------------------------------------------------------------- flood

def _request(host, port, path, auth):
    hdr = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if auth:
        hdr += "Authorization: Basic " + base64.b64encode(auth.encode()).decode() + "\r\n"
    return (hdr + "\r\n").encode()


def _read_response(sock, buf):
    """Reads one HTTP/1.1 response; returns (status, rest, keep_alive)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("closed")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    while len(rest) < length:
        d = sock.recv(65536)
        if not d:
            raise ConnectionError("closed")
        rest += d
    return status, rest[length:], not close


def _attacker(host, port, path, source, seconds, conn_id, outq):
    """One guessing connection loop: counts what the server does with each attempt."""
    end = time.time() + seconds
    events = []  # (t, outcome)
    n = 0
    sock, buf = None, b""
    while time.time() < end:
        try:
            if sock is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.settimeout(max(0.1, min(10, end - time.time())))
                sock.bind((source, 0))
                sock.connect((host, port))
                buf = b""
            n += 1
            sock.sendall(_request(host, port, path, f"admin:guess-{conn_id}-{n}"))
            status, buf, keep = _read_response(sock, buf)
            events.append((time.time(), str(status)))
            if not keep:
                sock.close()
                sock = None
        except socket.timeout:
            # Still waiting at the end of the run (password checks queue up): not an outcome.
            if time.time() < end - 0.05:
                events.append((time.time(), "timeout"))
            if sock is not None:
                sock.close()
            sock = None
        except (OSError, ConnectionError, ValueError, IndexError):
            # Connection refused, reset or closed without an answer: the block.
            events.append((time.time(), "refused"))
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    outq.put((source, events))


def _legit(host, port, paths, auth, source, seconds, pause, outq):
    end = time.time() + seconds
    lat = {p: [] for p in paths}
    errors = 0
    sock, buf = None, b""
    i = 0
    while time.time() < end:
        path = paths[i % len(paths)]
        i += 1
        try:
            t0 = time.perf_counter()
            if sock is None:
                sock = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            sock.sendall(_request(host, port, path, auth if path.startswith("/api/") else None))
            status, buf, keep = _read_response(sock, buf)
            dt = time.perf_counter() - t0
            if status == 200:
                lat[path].append(dt * 1000)
            else:
                errors += 1
            if not keep:
                sock.close()
                sock = None
        except (OSError, ConnectionError, ValueError, IndexError):
            errors += 1
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(pause)
    outq.put(("legit", {"latency_ms": lat, "errors": errors}))


def _pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def cmd_flood(a):
    import multiprocessing as mp

    outq = mp.Queue()
    procs = []
    sources = [s for s in a.sources.split(",") if s]
    legit_paths = a.legit_paths.split(",")
    # The legitimate client first pays its one password check (then cached).
    if a.legit_auth:
        for p in legit_paths:
            try:
                s = socket.create_connection((a.host, a.port), timeout=10, source_address=(a.legit_source, 0))
                s.sendall(_request(a.host, a.port, p, a.legit_auth if p.startswith("/api/") else None))
                _read_response(s, b"")
                s.close()
            except (OSError, ConnectionError, ValueError, IndexError):
                pass
    t_start = time.time()
    for src in sources:
        for c in range(a.conns_per_source):
            p = mp.Process(target=_attacker, args=(a.host, a.port, a.attack_path, src, a.seconds, f"{src}-{c}", outq))
            procs.append(p)
    if a.legit_source:
        procs.append(mp.Process(target=_legit, args=(a.host, a.port, legit_paths, a.legit_auth, a.legit_source,
                                                      a.seconds, a.legit_pause, outq)))
    for p in procs:
        p.start()
        if a.nice_attackers and p is not procs[-1]:
            try:
                os.setpriority(os.PRIO_PROCESS, p.pid, 10)
            except OSError:
                pass
    results = [outq.get(timeout=a.seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    out = {"seconds": a.seconds, "sources": sources, "conns_per_source": a.conns_per_source}
    per_source = {}
    for name, data in results:
        if name == "legit":
            lat = data["latency_ms"]
            out["legit"] = {
                p: {"n": len(v), "p50_ms": _pct(v, 50), "p99_ms": _pct(v, 99)} for p, v in lat.items()
            }
            out["legit_errors"] = data["errors"]
        else:
            per_source.setdefault(name, []).extend(data)
    # Per source: attempts answered (401/403/503) before its first refusal, and
    # attempts refused at the connection after it.
    before_n = after_n = 0
    before_t = after_t = 0.0
    outcomes = {}
    for src, ev in per_source.items():
        ev.sort()
        for _, o in ev:
            outcomes[o] = outcomes.get(o, 0) + 1
        first_block = next((t for t, o in ev if o in ("refused", "403")), None)
        if first_block is None:
            before_n += len(ev)
            before_t += a.seconds
        else:
            b = [e for e in ev if e[0] < first_block]
            before_n += len(b)
            before_t += max(first_block - t_start, 1e-3)
            after_n += len(ev) - len(b)
            after_t += max(t_start + a.seconds - first_block, 1e-3)
    nsrc = max(1, len(per_source))
    # Rates over all sources together (sum of per-source rates).
    out["outcomes"] = outcomes
    out["absorbed_before_block_per_s"] = before_n / (before_t / nsrc) if before_t else None
    out["absorbed_after_block_per_s"] = after_n / (after_t / nsrc) if after_t else None
    out["blocked_sources"] = sum(1 for ev in per_source.values() if any(o in ("refused", "403") for _, o in ev))
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------- report

HIGHER_BETTER = {"rps", "conn_per_s", "mib_per_s", "req_per_cpu_s"}


def _mmm(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}


def _fmt(x):
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _targets(summary, md):
    """The targets of issue 5, judged on the medians of this run."""
    M = summary["metrics"]
    rows = []

    def ratio(metric, peer, goal, text, higher=True):
        e = M.get(metric)
        if not e:
            rows.append((text, "not measured", "–"))
            return
        r = e["ratio_best_peer"] if peer == "best" else e["ratio"].get(peer)
        if not r:
            rows.append((text, "not measured", "–"))
            return
        ok = r["median"] >= goal if higher else r["median"] <= goal
        rows.append((text, f"{_fmt(r['median'])}× (rounds {_fmt(r['min'])}–{_fmt(r['max'])})",
                     "met" if ok else "**not met**"))

    def absolute(metric, limit, unit, text):
        e = M.get(metric)
        sm = e and e["servers"].get("portcullis", {}).get("summary")
        if not sm:
            rows.append((text, "not measured", "–"))
            return
        rows.append((text, f"{_fmt(sm['median'])} {unit} (rounds {_fmt(sm['min'])}–{_fmt(sm['max'])})",
                     "met" if sm["median"] <= limit else "**not met**"))

    ratio("http_1k_rps", "nginx", 1.0, "HTTP keep-alive req/s ≥ 1.0× nginx")
    ratio("https_1k_rps", "nginx", 1.0, "HTTPS keep-alive req/s ≥ 1.0× nginx")
    ratio("https_1k_rps", "best", 1.0, "HTTPS keep-alive req/s: aim for the best peer")
    ratio("https_1k_cpu", "best", 1.0, "HTTPS keep-alive server CPU per request vs the best peer (≤ 1.0×)",
          higher=False)
    ratio("tls_new_rsa", "best", 1.0, "new TLS connections/s, RSA-2048 ≥ 1.0× best peer")
    ratio("tls_new_ecdsa", "best", 1.0, "new TLS connections/s, ECDSA P-256 ≥ 1.0× best peer")
    ratio("tls_new_rsa_per_cpu", "best", 1.0, "RSA-2048 handshakes per server CPU-second ≥ 1.0× best peer")
    ratio("tls_new_ecdsa_per_cpu", "best", 1.0, "ECDSA P-256 handshakes per server CPU-second ≥ 1.0× best peer")
    floors = {o["metric"]: o["summary"]["median"] for o in summary.get("other", []) if o["metric"].startswith("floor_hs")}
    for k, fl in (("rsa", "floor_hs_rsa"), ("ecdsa", "floor_hs_p256")):
        e = M.get(f"tls_new_{k}_per_cpu")
        sm = e and e["servers"].get("portcullis", {}).get("summary")
        name = "RSA-2048" if k == "rsa" else "ECDSA P-256"
        if sm and floors.get(fl):
            f = sm["median"] / floors[fl]
            rows.append((f"{name} handshakes per server CPU-second ≥ 80 % of the openssl-speed floor "
                         f"({_fmt(floors[fl])}/s)", f"{f * 100:.0f} %", "met" if f >= 0.8 else "**not met**"))
    ratio("https_1m_mibps", "best", 1.0, "1 MiB over HTTPS ≥ 1.0× best peer")
    ratio("http_1m_mibps", "nginx", 0.9, "1 MiB over HTTP ≥ 0.9× nginx")
    absolute("pss_idle", 5, "MiB", "memory idle (PSS) ≤ 5 MiB")
    absolute("pss_peak", 10, "MiB", "memory under the static-file load (PSS) ≤ 10 MiB")
    kg = [o for o in summary.get("other", []) if o["metric"] == "keygen" and o["who"].startswith("portcullis")]
    for k in kg:
        if not k["summary"]:
            continue
        sm = k["summary"]
        who = k["who"].replace(" cert generate", "")
        rows.append((f"RSA-2048 key + certificate + CSR median ≤ 1 s ({who})",
                     f"{_fmt(sm['median'])} ms (rounds {_fmt(sm['min'])}–{_fmt(sm['max'])})",
                     "met" if sm["median"] <= 1000 else "**not met**"))
    # Issue 18's size targets (stripped). The minimal set's target is for the
    # aarch64 build (scripts/build-device); an x86_64 figure is shown as such.
    for r in summary.get("sizes", []):
        who, mib = r["who"], r["stripped"] / 1048576
        if who.startswith("portcullis ("):
            rows.append(("default build, stripped ≤ 6.5 MiB (issue 18)", f"{mib:.2f} MiB",
                         "met" if mib <= 6.5 else "**not met**"))
        elif who.startswith("portcullis-minimal"):
            rows.append((f"minimal build, stripped ≤ 3 MiB (issue 18; {who.split(' ')[0]})", f"{mib:.2f} MiB",
                         "met" if mib <= 3 else "**not met**"))
    for fr in summary.get("flood_ratios", []):
        if fr["phase"] == "flood" and fr["quantile"] == "p50_ms" and fr["ratio"]:
            r = fr["ratio"]
            rows.append((f"legitimate client's median latency under the flood ≤ 2× without ({fr['path']})",
                         f"{_fmt(r['median'])}× (rounds {_fmt(r['min'])}–{_fmt(r['max'])})",
                         "met" if r["median"] <= 2 else "**not met**"))
    if rows:
        md.append("## Targets of issues 5 and 18 (judged on the median over the rounds)\n")
        md.append("| target | measured | |")
        md.append("|---|---|---|")
        for t in rows:
            md.append(f"| {t[0]} | {t[1]} | {t[2]} |")
        md.append("")
        summary["targets"] = [{"target": t[0], "measured": t[1], "verdict": t[2].strip("*")} for t in rows]


def cmd_report(a):
    recs = []
    with open(a.raw) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    meta = next((r for r in recs if r.get("kind") == "meta"), {})
    meta = dict(meta)
    meta.pop("kind", None)
    meta["loadavg"] = [f"round {r['round']}: {r['value']}" for r in recs if r.get("kind") == "loadavg"]
    notes = [r["text"] for r in recs if r.get("kind") == "note"]
    figs = [r for r in recs if r.get("kind") == "figure"]
    order, servers, info = [], [], {}
    data = {}
    for r in figs:
        m, s = r["metric"], r["server"]
        if m not in data:
            order.append(m)
            data[m] = {}
            info[m] = {"unit": r["unit"], "better": r.get("better", "higher"), "title": r["title"]}
        if s not in servers:
            servers.append(s)
        data[m].setdefault(s, {})[r["round"]] = r["value"]
    main = "portcullis"
    if main in servers:
        servers.remove(main)
        servers.insert(0, main)
    # Other builds of portcullis (the other crypto provider) are shown beside
    # it, as a ratio to it, and are not peers.
    variants = [s for s in servers if s.startswith(main + "-")]
    servers = [main] + variants + [s for s in servers if s != main and s not in variants] if main in servers else servers
    peers = [s for s in servers if s != main and s not in variants]
    summary = {"meta": meta, "notes": notes, "metrics": {}}
    md = []
    md.append("# Benchmark results\n")
    for k in ("date", "git", "cpu", "nproc", "kernel", "seconds", "rounds", "webroot", "servers", "versions"):
        if k in meta:
            md.append(f"- {k}: {meta[k]}")
    if meta.get("loadavg"):
        md.append(f"- loadavg (1/5/15 min) before each round: {'; '.join(meta['loadavg'])}")
    for n in notes:
        md.append(f"- note: {n}")
    md.append("")
    md.append("Ratio = portcullis ÷ peer, so > 1 is better for portcullis where higher is better "
              "(req/s, MiB/s, conn/s) and < 1 is better where lower is better (latency, memory, CPU, "
              "size, time). Each ratio is taken within one round (the servers ran side by side), "
              "then min / median / max over the rounds.\n")
    hdr = (["figure", "unit"] + [f"{s} (median)" for s in servers] + [f"{v} ÷ {main} min/med/max" for v in variants]
           + [f"÷ {p} min/med/max" for p in peers])
    if len(peers) > 1:
        hdr.append("÷ best peer min/med/max")
    md.append("| " + " | ".join(hdr) + " |")
    md.append("|" + "---|" * len(hdr))
    for m in order:
        inf = info[m]
        higher = inf["better"] == "higher"
        rounds = sorted({rd for s in data[m].values() for rd in s})
        entry = {"title": inf["title"], "unit": inf["unit"], "better": inf["better"], "servers": {},
                 "ratio": {}, "ratio_best_peer": None}
        for s in servers:
            vals = [data[m].get(s, {}).get(rd) for rd in rounds]
            entry["servers"][s] = {"rounds": vals, "summary": _mmm(vals)}
        entry["variant_ratio"] = {}
        for v in variants:
            rs = []
            for rd in rounds:
                x, y = data[m].get(v, {}).get(rd), data[m].get(main, {}).get(rd)
                if x is not None and y:
                    rs.append(x / y)
            entry["variant_ratio"][v] = _mmm(rs)
        for p in peers:
            rs = []
            for rd in rounds:
                x, y = data[m].get(main, {}).get(rd), data[m].get(p, {}).get(rd)
                if x is not None and y:
                    rs.append(x / y)
            entry["ratio"][p] = _mmm(rs)
        best = []
        for rd in rounds:
            x = data[m].get(main, {}).get(rd)
            ys = [data[m].get(p, {}).get(rd) for p in peers]
            ys = [y for y in ys if y]
            if x is not None and ys:
                best.append(x / (max(ys) if higher else min(ys)))
        entry["ratio_best_peer"] = _mmm(best)
        summary["metrics"][m] = entry
        row = [inf["title"], inf["unit"] + (" ↑" if higher else " ↓")]
        for s in servers:
            sm = entry["servers"][s]["summary"]
            row.append(_fmt(sm["median"]) if sm else "–")

        def r3(x):
            return f"{_fmt(x['min'])} / **{_fmt(x['median'])}** / {_fmt(x['max'])}" if x else "–"

        for v in variants:
            row.append(r3(entry["variant_ratio"][v]))
        for p in peers:
            row.append(r3(entry["ratio"][p]))
        if len(peers) > 1:
            row.append(r3(entry["ratio_best_peer"]))
        md.append("| " + " | ".join(row) + " |")
    md.append("")
    if variants:
        md.append(f"{', '.join(variants)}: the same server built with the other crypto provider (every "
                  f"optional feature), run in the same rounds; its column ÷ {main} shows what the choice "
                  "of provider costs (handshakes, HTTPS throughput, CPU per request). It is not a peer: the "
                  "ratios to the peers and to the best peer are portcullis' own.\n")
    sizes = [r for r in recs if r.get("kind") == "size"]
    if sizes:
        md.append("## Binary sizes, stripped (feature sets and peers)\n")
        md.append("portcullis links everything but the C library in (Rust code, the crypto provider); the "
                  "peers' second figure adds the shared libraries they load (libssl, libcrypto, pcre, zlib, "
                  "...; not glibc/libgcc).\n")
        md.append("| build | stripped MiB | with the libraries it loads MiB |")
        md.append("|---|---|---|")
        summary["sizes"] = []
        for r in sizes:
            summary["sizes"].append({"who": r["who"], "stripped": r["stripped"], "with_libs": r["with_libs"]})
            md.append(f"| {r['who']} | {r['stripped'] / 1048576:.2f} | {r['with_libs'] / 1048576:.2f} |")
        md.append("")
    extra = [r for r in recs if r.get("kind") == "flood"]
    if extra:
        md.append("## Password-guessing flood (portcullis only)\n")
        md.append("| round | phase | legit p50 ms (API / file) | legit p99 ms (API / file) | "
                  "attempts absorbed/s before block | after block | blocked sources | outcomes |")
        md.append("|---|---|---|---|---|---|---|---|")
        for r in extra:
            d = r["data"]
            lg = d.get("legit", {})
            ks = list(lg.keys())

            def g(q):
                return " / ".join(_fmt(lg[k][q]) for k in ks)

            md.append(f"| {r['round']} | {r['phase']} | {g('p50_ms')} | {g('p99_ms')} | "
                      f"{_fmt(d.get('absorbed_before_block_per_s'))} | {_fmt(d.get('absorbed_after_block_per_s'))} | "
                      f"{d.get('blocked_sources', 0)}/{len(d.get('sources', []))} | "
                      f"{', '.join(f'{k}: {v}' for k, v in sorted(d.get('outcomes', {}).items()))} |")
        md.append("")
        summary["flood"] = [{"round": r["round"], "phase": r["phase"], **r["data"]} for r in extra]
    if extra:
        # Legitimate client under the flood vs without, per round, then min/median/max.
        ratios = {}
        for rd in sorted({r["round"] for r in extra}):
            by = {r["phase"]: r["data"] for r in extra if r["round"] == rd}
            base = by.get("baseline", {}).get("legit", {})
            for ph in ("flood", "flood_blocking"):
                cur = by.get(ph, {}).get("legit", {})
                for path, v in cur.items():
                    b = base.get(path)
                    for q in ("p50_ms", "p99_ms"):
                        if b and b.get(q) and v.get(q) is not None:
                            ratios.setdefault((ph, path, q), []).append(v[q] / b[q])
        if ratios:
            md.append("Legitimate client (127.0.0.9, one keep-alive connection, a request every 10 ms) under "
                      "the flood ÷ without it (min / median / max over the rounds):\n")
            md.append("| phase | path | p50 ratio | p99 ratio |")
            md.append("|---|---|---|---|")
            summary["flood_ratios"] = []
            for (ph, path) in sorted({(k[0], k[1]) for k in ratios}):
                cells = []
                for q in ("p50_ms", "p99_ms"):
                    mm = _mmm(ratios.get((ph, path, q), []))
                    cells.append(f"{_fmt(mm['min'])} / **{_fmt(mm['median'])}** / {_fmt(mm['max'])}" if mm else "–")
                    summary["flood_ratios"].append({"phase": ph, "path": path, "quantile": q, "ratio": mm})
                md.append(f"| {ph} | {path} | {cells[0]} | {cells[1]} |")
            md.append("")
    asides = [r for r in recs if r.get("kind") == "aside"]
    if asides:
        md.append("## Other figures (min / median / max over the rounds)\n")
        md.append("| figure | who | unit | min / median / max |")
        md.append("|---|---|---|---|")
        summary["other"] = []
        seen = []
        for r in asides:
            key = (r["metric"], r["who"])
            if key in seen:
                continue
            seen.append(key)
            vals = [x["value"] for x in asides if (x["metric"], x["who"]) == key]
            mm = _mmm(vals)
            summary["other"].append({"metric": r["metric"], "title": r["title"], "who": r["who"], "unit": r["unit"],
                                     "rounds": vals, "summary": mm})
            md.append(f"| {r['title']} | {r['who']} | {r['unit']} | "
                      f"{_fmt(mm['min'])} / **{_fmt(mm['median'])}** / {_fmt(mm['max'])} |")
        md.append("")
    utils = [r for r in recs if r.get("kind") == "util"]
    if utils:
        md.append("## Who was busy: server CPU / load generator CPU, % of one core (median over the rounds)\n")
        md.append("The servers run on CPU 0, the load generator on CPU 1. A figure whose server is below "
                  "~90 % while the load generator is near 100 % is bound by the load generator, not the server.\n")
        us = [s for s in servers if any(u["server"] == s for u in utils)]
        md.append("| run | " + " | ".join(us) + " |")
        md.append("|---|" + "---|" * len(us))
        summary["utilisation"] = {}
        for t in dict.fromkeys(u["test"] for u in utils):
            cells = []
            for sv in us:
                sel = [u for u in utils if u["test"] == t and u["server"] == sv]
                if not sel:
                    cells.append("–")
                    continue
                sp = statistics.median(u["server_pct"] for u in sel)
                cp = statistics.median(u["client_pct"] for u in sel)
                summary["utilisation"].setdefault(t, {})[sv] = {"server_pct": sp, "client_pct": cp}
                cells.append(f"{sp:.0f} / {cp:.0f}")
            md.append(f"| {t} | " + " | ".join(cells) + " |")
        md.append("")
    _targets(summary, md)
    checks = [r for r in recs if r.get("kind") == "check"]
    if checks:
        md.append("## Checks\n")
        for c in checks:
            md.append(f"- {c['text']}")
        md.append("")
        summary["checks"] = [c["text"] for c in checks]
    with open(a.out_json, "w") as f:
        json.dump(summary, f, indent=1)
    with open(a.out_md, "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start")
    p.add_argument("--pidfile", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("prio")
    p.add_argument("--nice", type=int, default=bench_nice())
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("timed")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("rusage")
    p.add_argument("--out", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("wait")
    p.add_argument("--url", required=True)
    p.add_argument("--timeout", type=float, default=30)
    for name in ("tree", "cpu", "pss"):
        p = sub.add_parser(name)
        p.add_argument("pids", nargs="+", type=int)
    p = sub.add_parser("sample")
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("pids", nargs="+", type=int)
    p = sub.add_parser("wrkjson")
    p.add_argument("file")
    p = sub.add_parser("abjson")
    p.add_argument("file")
    p = sub.add_parser("h2json")
    p.add_argument("stdout")
    p.add_argument("logfile")
    p = sub.add_parser("flood")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--attack-path", default="/api/v1/config/status")
    p.add_argument("--sources", default="")
    p.add_argument("--conns-per-source", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--legit-source", default="127.0.0.9")
    p.add_argument("--legit-auth", default="")
    p.add_argument("--legit-paths", default="/api/v1/config/status")
    p.add_argument("--legit-pause", type=float, default=0.01)
    p.add_argument("--nice-attackers", action="store_true")
    p = sub.add_parser("idleconns")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--h2", action="store_true", help="TLS with ALPN h2, one HTTP/2 GET per connection")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--steps", default="", help="also measure at these counts on the way (e.g. 100)")
    p.add_argument("--path", default="/1k.bin")
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("pids", nargs="+", type=int)
    p = sub.add_parser("report")
    p.add_argument("raw")
    p.add_argument("out_json")
    p.add_argument("out_md")
    a = ap.parse_args()
    if a.cmd in ("start", "rusage", "prio", "timed"):
        if a.command[:1] == ["--"]:
            a.command = a.command[1:]
        return {"start": cmd_start, "rusage": cmd_rusage, "prio": cmd_prio, "timed": cmd_timed}[a.cmd](a)
    if a.cmd == "tree":
        print(" ".join(map(str, tree(a.pids))))
        return 0
    if a.cmd == "cpu":
        print(f"{cpu_seconds(a.pids):.2f}")
        return 0
    if a.cmd == "pss":
        print(pss_kib(a.pids))
        return 0
    return {"wait": cmd_wait, "sample": cmd_sample, "wrkjson": cmd_wrkjson, "abjson": cmd_abjson, "h2json": cmd_h2json,
            "flood": cmd_flood, "idleconns": cmd_idleconns, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
