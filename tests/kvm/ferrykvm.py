"""Helpers shared by the KVM tests that drive real `ferry run` processes (test-migrate-run.py,
test-scenarios-kvm.py): QMP client, VM process wrapper, migration and verification helpers.
Call init() first; it skips the test (exit 77, loudly) when /dev/kvm is not usable."""
import atexit
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ferry = None
tmp = None
failures = []


def init(ferry_path, test_name, prefix):
    global ferry, tmp
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print(f"\n*** SKIPPED {test_name}: /dev/kvm is not usable; nothing ran ***\n",
              file=sys.stderr)
        sys.exit(77)
    ferry = ferry_path
    tmp = tempfile.mkdtemp(prefix=prefix)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)




class Qmp:
    def __init__(self, path, timeout=20):
        end = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > end:
                    raise
                time.sleep(0.02)
        # Separate reader and writer: a TextIOWrapper over "rw" throws away the lines it has
        # read ahead whenever it writes, so events queued behind a reply were lost.
        self.f = self.s.makefile("r")
        self.w = self.s.makefile("w")
        json.loads(self.f.readline())
        self.events = []
        self.unseen = []  # events not yet looked at by wait_event
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.w.write(json.dumps(msg) + "\n")
        self.w.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events.append(r)
                self.unseen.append(r)
                continue
            return r

    def wait_event(self, name, timeout=20, **data):
        """Block on the socket until event `name` with `data` arrives (also kept in events);
        returns it, or None on timeout. For a connection that only watches events."""
        def match(r):
            return r["event"] == name and all(r.get("data", {}).get(k) == v
                                              for k, v in data.items())
        while self.unseen:
            r = self.unseen.pop(0)
            if match(r):
                return r
        self.s.settimeout(timeout)
        try:
            while True:
                r = json.loads(self.f.readline())
                if "event" in r:
                    self.events.append(r)
                    if match(r):
                        return r
        except (OSError, ValueError):
            return None
        finally:
            self.s.settimeout(None)

    def ok(self, name, **args):
        r = self.cmd(name, **args)
        if "error" in r:
            raise RuntimeError(f"{name} {args}: {r['error']['desc']}")
        return r["return"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Vm:
    n = 0
    all = []

    def __init__(self, extra, incoming=None, workload="dirty,mb=16,report=1"):
        Vm.n += 1
        self.name = f"vm{Vm.n}"
        self.qmp_path = os.path.join(tmp, self.name + ".qmp")
        self.log = os.path.join(tmp, self.name + ".log")
        args = [ferry, "run", "--memory", "256M", "--maxmem", "384M", "--smp", "1,maxcpus=4",
                "--workload", workload, "--qmp", "unix:" + self.qmp_path, "--serial", self.log]
        args += extra
        if incoming:
            args += ["--incoming", incoming]
        self.p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        Vm.all.append(self)
        self.q = Qmp(self.qmp_path)
        if incoming:  # QMP comes up first; the listener right after
            end = time.time() + 10
            while self.q.ok("query-migrate").get("status") != "setup" and time.time() < end:
                time.sleep(0.01)

    def out(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def wait_line(self, text, timeout=20, after=0):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.out()[after:]:
                return True
            time.sleep(0.02)
        return False

    def status(self):
        return self.q.ok("query-status")["status"]

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        return self.p.stderr.read()


@atexit.register
def _kill_all():
    """Every VM goes, and so does the temporary directory (after a failure, the end of each
    serial log is printed first, since the logs do not survive)."""
    for vm in Vm.all:
        if vm.p.poll() is None:
            vm.p.kill()
            vm.p.wait()
    if failures:
        for vm in Vm.all:
            tail = vm.out().splitlines()[-6:]
            print(f"--- {vm.name} serial (last lines)\n" + "\n".join(tail), file=sys.stderr)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


REC_DEVICE, REC_RAM_PASS = 0x01, 0x12  # record kinds (docs/stream-format.md)
FINAL_PASS = 0xFFFFFFFF


class StreamProxy:
    """A TCP proxy in front of a destination for failure tests. It forwards every connection
    (the main one and the RAM channels) both ways. fire() calls action() (e.g. kill the
    destination) and cuts every connection. On the main connection, the first accepted, it
    follows the Ferry stream's framing (docs/stream-format.md) and fires just before forwarding
    the first record for which trigger(kind, name, instance) holds (`record` is then (kind,
    name, instance)). The main channel is buffered on the source (its RAM-pass records arrive
    in bursts), but the records of the switchover come in order."""

    def __init__(self, target_port, trigger, action=None):
        self.target, self.trigger, self.action = target_port, trigger, action
        self.record = None
        self.fired = threading.Event()
        self.socks = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        first = True
        while not self.fired.is_set():
            try:
                a, _ = self.ls.accept()
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.socks += [a, b]
            threading.Thread(target=self._main if first else self._plain, args=(a, b),
                             daemon=True).start()
            threading.Thread(target=self._plain, args=(b, a), daemon=True).start()
            first = False

    def _plain(self, a, b):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(data)
        except OSError:
            pass

    def _main(self, a, b):
        buf = bytearray()

        def need(n):
            while len(buf) < n:
                data = a.recv(1 << 16)
                if not data:
                    raise EOFError
                buf.extend(data)

        def send(n):  # forward n bytes of the stream (from buf first, then straight through)
            while n:
                need(1)
                k = min(n, len(buf))
                b.sendall(buf[:k])
                del buf[:k]
                n -= k
        try:
            need(17)  # magic[8] u32 version u32 flags str8 machine str8 producer u64 checksum
            need(18 + buf[16])
            send(18 + buf[16] + buf[17 + buf[16]] + 8)
            while True:  # u8 kind u8 flags str8 name u32 instance u32 version u64 length
                need(3)
                hl = 3 + buf[2] + 16
                need(hl)
                kind, name = buf[0], buf[3:3 + buf[2]].decode()
                inst, _, length = struct.unpack_from("<IIQ", buf, 3 + buf[2])
                if self.trigger and self.trigger(kind, name, inst):
                    self.record = (kind, name, inst)
                    self.fire()
                    return
                send(hl + length + 8)
        except (OSError, EOFError):
            pass

    def fire(self):
        with self.lock:
            if self.fired.is_set():
                return
            self.fired.set()
        if self.action:
            self.action()
        self.cut()

    def cut(self):
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.ls.close()


def migrate(src, uri, timeout=30):
    src.q.ok("migrate", uri=uri)
    end = time.time() + timeout
    while time.time() < end:
        st = src.q.ok("query-migrate")
        if st.get("status") in ("completed", "failed", "cancelled"):
            return st
        time.sleep(0.02)
    return st


def verify_progress(vm, what, passes=2, timeout=20):
    """The workload keeps verifying: `passes` more VERIFY ok pass= lines (memory block sweeps,
    `VERIFY ok mem N sweep=S`, do not count), and never a FAIL (of a pass or a block)."""
    start = vm.out().count("VERIFY ok pass=")
    end = time.time() + timeout
    while time.time() < end and vm.out().count("VERIFY ok pass=") < start + passes:
        time.sleep(0.05)
    out = vm.out()
    check(out.count("VERIFY ok pass=") >= start + passes and "VERIFY FAIL" not in out,
          f"{what}: the guest's verifier keeps saying VERIFY ok")


def wait_event(q, name, timeout=20, **data):
    """Poll QMP (events arrive between replies) until an event `name` with `data` is seen."""
    end = time.time() + timeout
    while time.time() < end:
        q.cmd("query-status")
        for e in q.events:
            if e["event"] == name and all(e.get("data", {}).get(k) == v for k, v in data.items()):
                return True
        time.sleep(0.05)
    return False


def mem_sweeps(out, slot):
    """Completed sweeps of memory block `slot` reported by the guest's verifier."""
    return [int(n) for n in re.findall(rf"^VERIFY ok mem {slot} sweep=(\d+)$", out, re.M)]


def dev(q, driver, id, slot):
    return q.cmd("device_add", driver=driver, id=id, slot=slot)
