#!/usr/bin/env python3
"""Run one CLI case directory: run-case.py FERRY CORPUS_DIR CASE_DIR.

A case directory holds:
  cmd              arguments after the binary, shell-quoted; @corpus/ = the shared corpus,
                   @case/ = the case directory, @input = the file built from `mutate`,
                   @out = a fresh empty directory
  mutate           optional: "from <corpus path>" (or "from @inputs/<file>" for a file in
                   tests/cases/inputs/) then one op per line, applied in order:
                   "head <hexlen>", "set <hexoff> <hexbytes>", "cut <hexstart> <hexend>",
                   "append <hexbytes>" -- truncated/corrupted variants are built at test time
  expected         exact stdout (the @out path printed as "@out") | expected-sha256: of stdout
  expected-stderr  exact stderr (default: must be empty when status is 0)
  stdin            optional: one path (@corpus/..., @input) fed to the command's standard input
  status           exit status (default 0)
  expected-files   lines "<path under @out> <size> <sha256> [sparse]"
"""
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, "rb") as f:
        return f.read()


def build_input(corpus, case, tmp):
    ops = read(os.path.join(case, "mutate")).decode().splitlines()
    first = ops[0].split()
    assert first[0] == "from", "mutate must start with 'from <corpus path>'"
    src = first[1]
    if src.startswith("@inputs/"):  # small inputs committed under tests/cases/inputs/
        src = os.path.join(os.path.dirname(os.path.dirname(case)), "inputs", src[len("@inputs/"):])
    else:
        src = os.path.join(corpus, src)
    data = bytearray(read(src))
    for line in ops[1:]:
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if w[0] == "head":
            del data[int(w[1], 16):]
        elif w[0] == "set":
            off, b = int(w[1], 16), bytes.fromhex(w[2])
            data[off:off + len(b)] = b
        elif w[0] == "cut":
            del data[int(w[1], 16):int(w[2], 16)]
        elif w[0] == "append":
            data += bytes.fromhex(w[1])
        else:
            fail("unknown mutate op " + line)
    path = os.path.join(tmp, "input.bin")
    with open(path, "wb") as f:
        f.write(data)
    return path


def find_corpus(corpus):
    """The corpus sits beside the repository (../shared/corpus); from a git worktree nested one
    level deeper it is found by walking up, or named by $FERRY_CORPUS."""
    if os.environ.get("FERRY_CORPUS"):
        return os.environ["FERRY_CORPUS"]
    d = os.path.abspath(os.path.join(corpus, "..", "..", ".."))
    while not os.path.isdir(corpus) and d != "/":
        corpus = os.path.join(d, "shared", "corpus")
        d = os.path.dirname(d)
    if not os.path.isdir(corpus):
        fail("shared corpus not found (set FERRY_CORPUS)")
    return corpus


def main():
    ferry, corpus, case = sys.argv[1:4]
    corpus = find_corpus(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        inp = build_input(corpus, case, tmp) if os.path.exists(os.path.join(case, "mutate")) else None
        args = []
        for a in shlex.split(read(os.path.join(case, "cmd")).decode()):
            a = a.replace("@corpus/", corpus.rstrip("/") + "/").replace("@case/", case.rstrip("/") + "/")
            if a == "@input":
                a = inp
            a = a.replace("@out", out)
            args.append(a)
        stdin = read(os.path.join(case, "stdin"))
        if stdin is not None:
            spec = stdin.decode().strip()
            spec = inp if spec == "@input" else spec.replace("@corpus/", corpus.rstrip("/") + "/")
            with open(spec, "rb") as f:
                p = subprocess.run([ferry] + args, stdin=f, capture_output=True, timeout=120)
        else:
            p = subprocess.run([ferry] + args, capture_output=True, timeout=120)
        p.stdout = p.stdout.replace(out.encode(), b"@out")
        want_status = int(read(os.path.join(case, "status"), b"0"))
        if p.returncode != want_status:
            fail("exit status %d, expected %d; stderr: %s" % (p.returncode, want_status,
                                                              p.stderr.decode(errors="replace")))
        exp = read(os.path.join(case, "expected"))
        if exp is not None and p.stdout != exp:
            with open(os.path.join(tmp, "got"), "wb") as f:
                f.write(p.stdout)
            d = subprocess.run(["diff", "-u", os.path.join(case, "expected"),
                                os.path.join(tmp, "got")], capture_output=True).stdout
            fail("stdout differs:\n" + d.decode(errors="replace")[:4000])
        sha = read(os.path.join(case, "expected-sha256"))
        if sha is not None and hashlib.sha256(p.stdout).hexdigest() != sha.decode().split()[0]:
            fail("stdout sha256 %s, expected %s" % (hashlib.sha256(p.stdout).hexdigest(),
                                                   sha.decode().split()[0]))
        err = read(os.path.join(case, "expected-stderr"))
        if err is not None:
            got = p.stderr.replace(inp.encode(), b"@input") if inp else p.stderr
            got = got.replace(corpus.rstrip("/").encode() + b"/", b"@corpus/")
            if got != err:
                fail("stderr differs:\n got: %r\nwant: %r" % (got, err))
        elif want_status == 0 and p.stderr:
            fail("unexpected stderr: " + p.stderr.decode(errors="replace"))
        files = read(os.path.join(case, "expected-files"))
        for line in (files or b"").decode().splitlines():
            w = line.split()
            path = os.path.join(out, w[0])
            if not os.path.exists(path):
                fail("missing output file " + w[0])
            st = os.stat(path)
            if st.st_size != int(w[1]):
                fail("%s: size %d, expected %s" % (w[0], st.st_size, w[1]))
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != w[2]:
                fail("%s: sha256 %s, expected %s" % (w[0], h.hexdigest(), w[2]))
            if len(w) > 3 and w[3] == "sparse" and st.st_blocks * 512 >= st.st_size:
                fail("%s: not sparse (%d bytes allocated)" % (w[0], st.st_blocks * 512))
    print("ok")


main()
