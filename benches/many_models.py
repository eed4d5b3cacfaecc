#!/usr/bin/env python3
"""The daemon at scale (issue 12): N small models (default 500) dropped at
once, while the daemon is stopped (SIGSTOP) so that its inotify queue
overflows for certain (as root, the queue is also cut to 64 events).

Measures and checks:
  1. every model gets an ok report and is measured exactly once;
  2. the daemon's peak resident memory (VmHWM) over the whole run;
  3. how often the status file was rewritten (it is rate-limited);
  4. a restart with the N models and their reports present: the time from
     start to READY=1 (systemd's notify socket, here a Python one), and
     that no model is measured again.

The test suite runs the same with 40 models
(tests/daemon.rs: a_burst_past_the_inotify_queue_is_measured_once_each).

Usage: benches/many_models.py [N=500]   (needs the release build: make build)
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON = os.path.join(HERE, "target/release/precisiond")
WORKER = os.path.join(HERE, "target/release/precisiond-worker")
MODEL = os.path.join(HERE, "tests/fixtures/models/mlp.pt")
QUEUE_LIMIT = "/proc/sys/fs/inotify/max_queued_events"


def start_daemon(work, notify_path):
    env = dict(os.environ)
    env.update(
        PRECISIOND_WORKER=os.path.join(work, "worker.sh"),
        NOTIFY_SOCKET=notify_path,
    )
    env.pop("PRECISIOND_LOG", None)
    log = open(os.path.join(work, "log"), "ab")
    return subprocess.Popen(
        [DAEMON, "watch", os.path.join(work, "drop"), "--config", os.path.join(work, "config.toml")],
        env=env,
        stderr=log,
        stdout=subprocess.DEVNULL,
    )


class NotifySocket:
    """systemd's side of NOTIFY_SOCKET, read all the time as systemd does
    (a full socket would block the daemon's sends)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.ready_at = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            msg = self.sock.recv(4096).decode(errors="replace")
            if "READY=1" in msg:
                self.ready_at.append(time.monotonic())

    def wait_ready(self, started, timeout=60):
        while time.monotonic() - started < timeout:
            ready = [t for t in self.ready_at if t >= started]
            if ready:
                return ready[0] - started
            time.sleep(0.001)
        sys.exit("FAIL: no READY=1")


def peak_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def starts(work):
    try:
        with open(os.path.join(work, "starts")) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return []


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    work = tempfile.mkdtemp()
    daemon = None
    try:
        drop = os.path.join(work, "drop")
        os.mkdir(drop)
        with open(os.path.join(work, "config.toml"), "w") as f:
            f.write('precisions = ["fp32"]\nmax_seconds = 0.05\nsettle_ms = 300\nprobe = false\n')
        with open(os.path.join(work, "worker.sh"), "w") as f:
            f.write(f'#!/bin/sh\necho "$2" >> "{work}/starts"\nexec "{WORKER}" "$@"\n')
        os.chmod(os.path.join(work, "worker.sh"), 0o755)
        notify_path = os.path.join(work, "notify.sock")
        notify = NotifySocket(notify_path)

        old_limit = None
        if os.geteuid() == 0:
            with open(QUEUE_LIMIT) as f:
                old_limit = f.read().strip()
            with open(QUEUE_LIMIT, "w") as f:
                f.write("64")
        try:
            started = time.monotonic()
            daemon = start_daemon(work, notify_path)
            notify.wait_ready(started)
        finally:
            if old_limit is not None:
                with open(QUEUE_LIMIT, "w") as f:
                    f.write(old_limit)

        os.kill(daemon.pid, signal.SIGSTOP)
        models = []
        for i in range(n):
            path = os.path.join(drop, f"m{i:04}.pt")
            shutil.copyfile(MODEL, path)
            models.append(path)
        status = os.path.join(drop, ".precisiond/status.toml")
        ino_before = os.stat(status).st_ino
        rewrites = 0
        copied = time.monotonic()
        os.kill(daemon.pid, signal.SIGCONT)
        while not all(os.path.exists(m + ".report.toml") for m in models):
            if daemon.poll() is not None:
                sys.exit("FAIL: the daemon exited")
            ino = os.stat(status).st_ino
            rewrites += ino != ino_before
            ino_before = ino
            time.sleep(0.05)
        took = time.monotonic() - copied
        time.sleep(1)
        peak = peak_kb(daemon.pid)
        counts = {}
        for s in starts(work):
            counts[s] = counts.get(s, 0) + 1
        twice = [m for m, c in counts.items() if c != 1]
        missing = [m for m in models if m not in counts]
        not_ok = []
        for m in models:
            with open(m + ".report.toml") as f:
                if 'status = "ok"' not in f.read():
                    not_ok.append(m)
        with open(os.path.join(work, "log")) as f:
            overflowed = "inotify queue overflow" in f.read()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)

        print(f"{n} models dropped at once (inotify overflow seen: {overflowed}): all reports in {took:.1f} s")
        print(f"  measured once each: {not twice and not missing} (twice: {len(twice)}, never: {len(missing)}); not ok: {len(not_ok)}")
        print(f"  daemon peak RSS {peak / 1024:.1f} MB; status file rewritten about {rewrites} times (sampled every 50 ms)")

        # A restart with every report present.
        before = len(starts(work))
        started = time.monotonic()
        daemon = start_daemon(work, notify_path)
        ready = notify.wait_ready(started)
        time.sleep(5)
        again = len(starts(work)) - before
        peak = peak_kb(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        daemon = None
        print(f"  restart with {n} models and reports present: READY=1 after {ready * 1000:.0f} ms; measured again within 5 s: {again}; peak RSS {peak / 1024:.1f} MB")
        if twice or missing or not_ok or again:
            sys.exit("FAIL")
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
