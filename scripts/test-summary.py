#!/usr/bin/env python3
"""Sum up meson test logs (and the fuzz summary) into one closing line for CI:
'N passed, N failed, N skipped'. Skipped tests are listed loudly with their reason."""
import json
import sys
from pathlib import Path

args = sys.argv[1:]
fuzz = None
failed_steps = []
while "--failed-step" in args:  # a build that failed: its tests never ran
    i = args.index("--failed-step")
    failed_steps.append(args[i + 1])
    del args[i:i + 2]
if "--fuzz" in args:
    i = args.index("--fuzz")
    fuzz = args[i + 1]
    del args[i:i + 2]

passed = skipped = 0
failed = len(failed_steps)
for step in failed_steps:
    print(f"test-summary: {step} FAILED: its tests did not run (counted as one failure)")
skips = []
for build in args:
    log = Path(build) / "meson-logs" / "testlog.json"
    if not log.exists():
        print(f"test-summary: {log} missing: counted as a failure")
        failed += 1
        continue
    for line in log.read_text().splitlines():
        t = json.loads(line)
        r = t["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
            reason = (t.get("stdout") or "").strip().splitlines()[-1:] or [""]
            skips.append(f"{build}: {t['name']}: {reason[0]}")
        else:
            failed += 1
if fuzz and Path(fuzz).exists():
    for line in Path(fuzz).read_text().splitlines():
        name, _, res = line.partition(" ")
        if res.startswith("ok"):
            passed += 1
        else:
            failed += 1
            print(f"fuzz {name}: {res}")
if skips:
    print("=" * 70)
    print(f"SKIPPED TESTS ({len(skips)}):")
    for s in skips:
        print("  SKIPPED", s)
    print("=" * 70)
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
