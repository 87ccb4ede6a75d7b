#!/usr/bin/env python3
"""Ferry vs QEMU 7.2 live migration on the same boot-sector guest (see run.sh).

Each case starts a source and a destination process, waits until the guest runs (QEMU's SeaBIOS
boot is excluded: the clock starts at `migrate`), migrates over loopback TCP and reads
total-time and downtime from the source's query-migrate. CPU seconds are the source's and the
destination's process time during the migration minus their vCPU threads (the guest's own work
is not migration cost). The raw loopback TCP throughput is measured in the same run."""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, threading, time

GiB = 1 << 30
MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


class Qmp:
    def __init__(self, path, timeout=30):
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
                time.sleep(0.05)
        # Separate files: writing on a "rw" text file drops lines it has read ahead.
        self.f = self.s.makefile("r")
        self.w = self.s.makefile("w")
        json.loads(self.f.readline())
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
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']['desc']}")
            return r["return"]

    def close(self):
        self.s.close()


def cpu_seconds(pid, exclude_vcpus=True):
    """Process CPU time minus vCPU threads (names 'CPU n/KVM' in QEMU, 'ferry-vcpuN')."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / TICK
    if exclude_vcpus:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/comm") as f:
                    comm = f.read().strip()
                if "KVM" in comm or comm.startswith("ferry-vcpu"):
                    with open(f"/proc/{pid}/task/{t}/stat") as f:
                        tf = f.read().rsplit(")", 1)[1].split()
                    total -= (int(tf[11]) + int(tf[12])) / TICK
            except OSError:
                pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def loopback_ceiling(nbytes=4 * GiB):
    """One TCP stream, 1 MiB sendall chunks (the host-kvm.md method)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = [0]

    def sink():
        c, _ = srv.accept()
        buf = bytearray(4 * MiB)
        v = memoryview(buf)
        while True:
            n = c.recv_into(v)
            if not n:
                break
            got[0] += n
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    c = socket.create_connection(("127.0.0.1", port))
    chunk = b"\1" * MiB
    t0 = time.perf_counter()
    for _ in range(nbytes // MiB):
        c.sendall(chunk)
    c.close()
    t.join()
    dt = time.perf_counter() - t0
    srv.close()
    return got[0] / dt


def wait_serial(path, ch, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path, "rb") as f:
                if ch in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def run_case(vmm, img, mem_mib, setting, args, tmp):
    stopped = img.endswith("+stop")
    img = img.replace("+stop", "")
    port = free_port()
    sq, dq = os.path.join(tmp, "src.qmp"), os.path.join(tmp, "dst.qmp")
    slog, dlog = os.path.join(tmp, "src.log"), os.path.join(tmp, "dst.log")
    for p in (sq, dq, slog, dlog):
        if os.path.exists(p):
            os.unlink(p)
    image = os.path.join(args.guest, img)
    if vmm == "qemu":
        base = ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "kvm64", "-m",
                str(mem_mib), "-display", "none", "-nodefaults", "-no-user-config"]
        src = base + ["-drive", f"file={image},format=raw,if=ide", "-qmp", f"unix:{sq},server,nowait",
                      "-serial", f"file:{slog}"]
        dst = base + ["-drive", f"file={image},format=raw,if=ide", "-qmp", f"unix:{dq},server,nowait",
                      "-serial", f"file:{dlog}", "-incoming", "defer"]
    else:
        host = os.path.join(args.build, "tests", "kvm", "ferry-mig-host")
        src = [host, "--memory", str(mem_mib), "--boot-sector", image, "--qmp", sq, "--serial", slog]
        dst = [host, "--memory", str(mem_mib), "--incoming", f"tcp:127.0.0.1:{port}", "--qmp", dq,
               "--serial", dlog]
    ps = subprocess.Popen(src, stderr=subprocess.DEVNULL)
    pd = subprocess.Popen(dst, stderr=subprocess.DEVNULL)
    try:
        s, d = Qmp(sq), Qmp(dq)
        # The guest runs: dirty.img prints 'B' after each pass; idle.img just halts (give
        # SeaBIOS its ~3 s). The clock starts at `migrate`, so boot time is excluded.
        if "dirty" in img:
            if not wait_serial(slog, b"BB", 60):
                raise RuntimeError("guest did not start dirtying")
        else:
            time.sleep(4 if vmm == "qemu" else 0.5)
        if stopped:  # data throughput: 100 MiB of written pages, nothing re-dirtied
            s.cmd("stop")
        caps = []
        params = {"max-bandwidth": 10 * GiB}
        if vmm == "qemu":
            if setting == "multifd2":
                caps = [{"capability": "multifd", "state": True}]
                params["multifd-channels"] = 2
            elif setting == "xbzrle":
                caps = [{"capability": "xbzrle", "state": True}]
                params["xbzrle-cache-size"] = 256 * MiB
            for q in (s, d):
                if caps:
                    q.cmd("migrate-set-capabilities", capabilities=caps)
                q.cmd("migrate-set-parameters", **params)
            d.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        else:
            if setting == "channels0":  # RAM on the main connection (default: 2 channels)
                params["multifd-channels"] = 0
            s.cmd("migrate-set-parameters", **params)
            # The destination faults its RAM in while it waits (as a destination started ahead
            # of the migration does); wait for that, as for QEMU's boot.
            end = time.time() + 60
            while not d.cmd("query-migrate").get("x-ferry", {}).get("prefault-done"):
                if time.time() > end:
                    break
                time.sleep(0.05)
        c0 = cpu_seconds(ps.pid) + cpu_seconds(pd.pid)
        t0 = time.perf_counter()
        s.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.time() + args.timeout
        while True:
            st = s.cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                s.cmd("migrate_cancel")
                deadline = time.time() + 30
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        c1 = cpu_seconds(ps.pid) + cpu_seconds(pd.pid)
        ok = st["status"] == "completed"
        ram = st.get("ram", {})
        downtime = st.get("downtime", float("nan"))
        if "downtime-us" in st.get("x-ferry", {}):
            downtime = st["x-ferry"]["downtime-us"] / 1e3
        res = {"ok": ok, "status": st["status"], "total_ms": st.get("total-time", wall * 1e3),
               "downtime_ms": downtime, "cpu_s": c1 - c0,
               "wire": ram.get("transferred", 0), "ram_total": ram.get("total", mem_mib * MiB)}
        if ok:
            # The destination guest runs on: its serial output continues.
            if stopped:  # QEMU keeps a stopped VM stopped on the destination (so does Ferry)
                d.cmd("cont")
            if "dirty" in img and not wait_serial(dlog, b"B", 20):
                res["ok"] = False
                res["status"] = "destination guest did not run"
        s.close()
        d.close()
        return res
    finally:
        for p in (ps, pd):
            p.kill()
            p.wait()


def median_case(vmm, img, mem, setting, args, tmp):
    runs = [run_case(vmm, img, mem, setting, args, tmp) for _ in range(args.reps)]
    good = [r for r in runs if r["ok"]]
    if not good:
        return {"ok": False, "status": runs[-1]["status"], "n": 0, "of": len(runs)}
    med = lambda k: statistics.median(r[k] for r in good)
    return {"ok": True, "n": len(good), "of": len(runs), "total_ms": med("total_ms"),
            "downtime_ms": med("downtime_ms"), "cpu_s": med("cpu_s"), "wire": med("wire"),
            "ram_total": good[0]["ram_total"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--quick", action="store_true", help="512 MiB only, one run each")
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--images", default="idle.img,dirty.img,dirty.img+stop",
                    help="cases: idle.img, dirty.img, dirty.img+stop (stopped guest)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.reps = "512", 1
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="ferry-bench-migrate-")
    ceiling = loopback_ceiling()
    print(f"loopback TCP ceiling (1 stream, 1 MiB sendall): {ceiling / GiB:.2f} GiB/s")
    cases = [("ferry", "default"), ("ferry", "channels0"), ("qemu", "default"),
             ("qemu", "multifd2"), ("qemu", "xbzrle")]
    rows, res = [], {}
    for mem in sizes:
        for img in args.images.split(","):
            for vmm, setting in cases:
                if img.endswith("+stop") and setting not in ("default", "channels0", "multifd2"):
                    continue
                r = median_case(vmm, img, mem, setting, args, tmp)
                res[(mem, img, vmm, setting)] = r
                if r["ok"]:
                    tput = r["ram_total"] / (r["total_ms"] / 1e3) / GiB
                    wire = r["wire"] / (r["total_ms"] / 1e3) / GiB
                    line = (f"| {mem} MiB | {img} | {vmm} {setting} | {r['total_ms']:.0f} | "
                            f"{r['downtime_ms']:.1f} | {r['cpu_s']:.2f} | {tput:.2f} | "
                            f"{wire:.2f} | {r['n']}/{r['of']} |")
                else:
                    line = (f"| {mem} MiB | {img} | {vmm} {setting} | {r['status']} | | | | | "
                            f"0/{r['of']} |")
                rows.append(line)
                print(line, flush=True)
    head = ("| guest RAM | image | VMM setting | total ms | downtime ms | CPU s (src+dst) | "
            "RAM GiB/s | wire GiB/s | runs ok |\n|---|---|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(rows)
    print("\n" + table + "\n")
    print("ratios (Ferry / QEMU, median of runs; lower is better unless noted):")
    lines = []
    for mem in sizes:
        def g(img, vmm, st, k):
            r = res.get((mem, img, vmm, st))
            return r.get(k) if r and r["ok"] else None
        def ratio(a, b):
            return f"{a / b:.2f}" if a is not None and b else "n/a"
        fd = g("dirty.img", "ferry", "default", "total_ms")
        qd = g("dirty.img", "qemu", "default", "total_ms")
        ferry_dt = [g("dirty.img", "ferry", s, "downtime_ms") for s in ("default", "channels0")]
        qemu_dt = [g("dirty.img", "qemu", s, "downtime_ms") for s in ("default", "multifd2", "xbzrle")]
        fbest = min([x for x in ferry_dt if x is not None], default=None)
        qbest = min([x for x in qemu_dt if x is not None], default=None)
        fc = g("dirty.img", "ferry", "default", "cpu_s")
        qc = g("dirty.img", "qemu", "default", "cpu_s")
        idle_ms = g("idle.img", "ferry", "default", "total_ms")
        idle_tput = (mem * MiB / (idle_ms / 1e3)) if idle_ms else None
        data = {}
        for vmm, st in (("ferry", "default"), ("ferry", "channels0"), ("qemu", "default"),
                        ("qemu", "multifd2")):
            ms, wire = g("dirty.img+stop", vmm, st, "total_ms"), g("dirty.img+stop", vmm, st, "wire")
            data[(vmm, st)] = wire / (ms / 1e3) if ms and wire else None
        fbest_data = max([x for k, x in data.items() if k[0] == "ferry" and x], default=None)
        qbest_data = max([x for k, x in data.items() if k[0] == "qemu" and x], default=None)
        lines += [
            f"{mem} MiB dirtying: total time Ferry default / QEMU default = {ratio(fd, qd)} (target <= 0.5)",
            f"{mem} MiB dirtying: downtime Ferry best / QEMU best = {ratio(fbest, qbest)} (target <= 0.5)",
            f"{mem} MiB dirtying: CPU Ferry default / QEMU default = {ratio(fc, qc)} (target <= 1)",
            f"{mem} MiB idle: Ferry guest-RAM throughput / loopback TCP = "
            f"{ratio(idle_tput, ceiling)} (higher is better; target >= 0.8; zero pages do not "
            "travel)",
            f"{mem} MiB stopped guest with 100 MiB of data: Ferry best wire throughput / loopback "
            f"TCP = {ratio(fbest_data, ceiling)} (QEMU best: {ratio(qbest_data, ceiling)})",
        ]
    for l in lines:
        print("  " + l)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"loopback TCP ceiling: {ceiling / GiB:.2f} GiB/s\n\n{table}\n\n")
            f.write("\n".join("- " + l for l in lines) + "\n")


if __name__ == "__main__":
    main()
