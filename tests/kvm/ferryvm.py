"""Drive a real `ferry run` process for KVM tests: QMP over its unix socket, serial from its
--serial file. Used by test-hotplug.py (and by the migration tests later)."""
import json
import os
import re
import socket
import subprocess
import time


class QmpError(Exception):
    pass


class FerryVm:
    def __init__(self, ferry, workdir, *args, name="vm", qmp=True):
        self.serial_path = os.path.join(workdir, name + ".serial")
        self.qmp_path = os.path.join(workdir, name + ".qmp")
        self.events = []
        self.sock = None
        self.buf = b""
        self.next_id = 0
        cmd = [ferry, "run", "--serial", self.serial_path]
        if qmp:
            cmd += ["--qmp", "unix:" + self.qmp_path]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        if qmp:
            self._connect()

    # ---- QMP ----
    def _connect(self, timeout=10):
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("ferry run exited %d: %s" % (self.proc.returncode,
                                                                self.proc.stderr.read()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.qmp_path)
                break
            except OSError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.02)
        self.sock = s
        greeting = self.recv()
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities")

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=10):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no QMP message within %ss" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, timeout=20, **args):
        """Run a command; returns the whole response ({"return"} or {"error"})."""
        self.next_id += 1
        msg = {"execute": name, "id": self.next_id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.recv(timeout)
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") == self.next_id:
                return r

    def execute(self, name, **args):
        r = self.command(name, **args)
        if "error" in r:
            raise QmpError("%s: %s" % (name, r["error"]))
        return r["return"]

    def wait_event(self, name, timeout=20, pred=None):
        end = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and (pred is None or pred(e)):
                    return self.events.pop(i)
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %s event within %ss (have %s)" % (name, timeout,
                                                                         self.events))
            r = self.recv(left)
            if "event" in r:
                self.events.append(r)

    # ---- serial ----
    def serial(self):
        try:
            with open(self.serial_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_serial(self, pattern, count=1, timeout=20):
        """Wait until `pattern` (regex, multiline) matched `count` times; returns the text."""
        end = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            text = self.serial()
            if len(rx.findall(text)) >= count:
                return text
            if self.proc.poll() is not None or time.monotonic() > end:
                raise TimeoutError("serial: %r x%d not seen within %ss; serial:\n%s\nstderr: %s"
                                   % (pattern, count, timeout, text,
                                      self.proc.stderr.read() if self.proc.poll() is not None
                                      else "(running)"))
            time.sleep(0.02)

    # ---- end ----
    def quit(self, timeout=20):
        try:
            self.execute("quit")
        except (ConnectionError, OSError):
            pass
        return self.wait(timeout)

    def wait(self, timeout=20):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.sock:
            self.sock.close()
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
