#!/usr/bin/env python3
"""Case runner for `ferry schema check` (tests/cases/schema-check/<case>/).

A case directory holds:
  args          the command line after `ferry schema check` (one line); @CORPUS@ stands for the
                shared corpus directory (../shared/corpus from the repo root)
  old.json, new.json   inputs, when the case has its own
  expected      exact stdout (paths under the corpus printed as @CORPUS@/...)
  exit          expected exit status (0 compatible, 1 incompatible, 2 usage/input error)
  must-report   optional: lines "DIRECTION SEVERITY RULE SECTION [PATH]" that must each match a
                finding of `--json` output (PATH: the finding's path must contain it); use it to
                pin what a report must contain independently of wording
  stderr        optional: a substring stderr must contain
Usage: run.py FERRY [--update] [CASE...]   (--update rewrites expected/exit from the output)
Exit 0 all passed, 1 failures, 77 (skipped, reported loudly) when the corpus is absent.
"""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

def find_corpus():
    """FERRY_CORPUS, else ../shared/corpus from the repo root (main checkout), else
    ../../shared/corpus (a worktree under wt/)."""
    root = HERE.parents[2]
    for c in (os.environ.get("FERRY_CORPUS"), root / ".." / "shared" / "corpus",
              root / ".." / ".." / "shared" / "corpus"):
        if c and Path(c).is_dir():
            return Path(c).resolve()
    return Path(os.environ.get("FERRY_CORPUS") or root / ".." / "shared" / "corpus").resolve()


CORPUS = find_corpus()


def run(ferry, case, argv):
    return subprocess.run([ferry, "schema", "check"] + argv, cwd=case, capture_output=True,
                          text=True, timeout=60)


def check_case(ferry, case, update):
    raw = (case / "args").read_text().strip()
    if "@CORPUS@" in raw and not CORPUS.is_dir():
        return "skip", f"corpus {CORPUS} not found"
    argv = [a.replace("@CORPUS@", str(CORPUS)) for a in shlex.split(raw)]
    p = run(ferry, case, argv)
    out = p.stdout.replace(str(CORPUS), "@CORPUS@")
    problems = []
    if update:
        (case / "expected").write_text(out)
        (case / "exit").write_text(f"{p.returncode}\n")
    want_rc = int((case / "exit").read_text())
    if p.returncode != want_rc:
        problems.append(f"exit status {p.returncode}, expected {want_rc}\nstderr: {p.stderr}")
    if (case / "expected").exists():
        want = (case / "expected").read_text()
        if out != want:
            import difflib
            diff = "".join(difflib.unified_diff(want.splitlines(True), out.splitlines(True),
                                                "expected", "actual"))
            problems.append("stdout differs:\n" + diff)
    if (case / "stderr").exists():
        frag = (case / "stderr").read_text().strip().replace("@CORPUS@", str(CORPUS))
        if frag not in p.stderr:
            problems.append(f"stderr lacks {frag!r}: {p.stderr!r}")
    if (case / "must-report").exists():
        jargv = ["--json"] + [a for a in argv if a not in ("-q", "--quiet")]
        jp = run(ferry, case, jargv)
        try:
            findings = json.loads(jp.stdout)["findings"]
        except (ValueError, KeyError) as e:
            problems.append(f"--json output unreadable: {e}: {jp.stdout[:200]!r}")
            findings = []
        for line in (case / "must-report").read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 4)
            direction, severity, rule, section = parts[:4]
            path = parts[4] if len(parts) > 4 else ""
            if not any(f["direction"] == direction and f["severity"] == severity and
                       f["rule"] == rule and f["section"] == section and path in f["path"]
                       for f in findings):
                problems.append(f"missing finding: {line}")
    return ("fail", "\n".join(problems)) if problems else ("pass", "")


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    ferry = os.path.abspath(args.pop(0))
    update = "--update" in args
    names = [a for a in args if a != "--update"]
    cases = sorted(p for p in HERE.iterdir() if (p / "args").exists())
    if names:
        cases = [c for c in cases if c.name in names]
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for case in cases:
        result, detail = check_case(ferry, case, update)
        counts[result] += 1
        if result != "pass":
            print(f"{result.upper()}: {case.name}: {detail}")
    print(f"schema-check cases: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skip']} skipped")
    if counts["skip"]:
        print(f"SKIPPED {counts['skip']} cases: the shared corpus ({CORPUS}) is missing")
    if counts["fail"]:
        return 1
    return 77 if counts["skip"] else 0


if __name__ == "__main__":
    sys.exit(main())
