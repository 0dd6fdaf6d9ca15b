"""The closing report of scripts/fuzz-api.

summary.py SCHEMA CALLS_JSONL JUNIT_XML[,JUNIT_XML...] SCHEMATHESIS_EXIT CRASH

Prints, per route of SCHEMA, the cases tried and how many were answered 2xx, then the routes
never answered 2xx, cases tried in all and the failures; exits 1 when anything failed (a check,
schemathesis itself, or the agent: CRASH is the watchdog's finding, empty when none).
"""

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import yaml

schema_path, calls_path, junit_path, st_rc, crash = sys.argv[1:6]
st_rc = int(st_rc)
schema = yaml.safe_load(open(schema_path))
routes = [(m.upper(), p) for p, item in schema["paths"].items() for m in item
          if m in ("get", "put", "post", "patch", "delete")]

tried, ok, statuses = Counter(), Counter(), {}
for line in open(calls_path):
    c = json.loads(line)
    key = (c["method"], c["path"])
    tried[key] += 1
    if 200 <= c["status"] < 300:
        ok[key] += 1
    statuses.setdefault(key, Counter())[c["status"]] += 1

width = max(len(f"{m} {p}") for m, p in routes)
print(f"{'route':<{width}}  cases    2xx  statuses")
for key in routes:
    shown = " ".join(f"{s}x{n}" for s, n in sorted(statuses.get(key, {}).items()))
    print(f"{key[0] + ' ' + key[1]:<{width}}  {tried[key]:>5}  {ok[key]:>5}  {shown}")
never = [f"{m} {p}" for m, p in routes if ok[(m, p)] == 0]
print(f"routes never answered 2xx ({len(never)} of {len(routes)}; not really exercised):")
for r in never:
    print(f"  {r}")

failures = []
for i, path in enumerate(junit_path.split(",")):
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        if i == 0:
            failures.append(f"no schemathesis report at {path}")
        continue  # a later pass is skipped once the agent is down
    except (OSError, ET.ParseError) as e:
        failures.append(f"unreadable schemathesis report {path} ({e})")
        continue
    for case in root.iter("testcase"):
        for f in list(case.findall("failure")) + list(case.findall("error")):
            text = (f.get("message") or f.text or "").strip().splitlines()
            failures.append(f"{case.get('name')}: {text[0] if text else f.tag}")
if st_rc != 0 and not failures:
    failures.append(f"schemathesis exited with status {st_rc} (its output above)")
if crash:
    failures.append(f"agent: {crash}")

print(f"cases tried: {sum(tried.values())}")
print(f"failures: {len(failures)}")
for f in failures:
    print(f"  {f}")
sys.exit(1 if failures else 0)
