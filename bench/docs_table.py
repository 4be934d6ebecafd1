#!/usr/bin/env python3
"""docs_table.py REPORT.md PERFORMANCE.md LINK: puts the medians and the
ratio-to-haproxy tables of a harness report between the
<!-- bench:begin --> and <!-- bench:end --> markers of PERFORMANCE.md
(make bench keeps docs/performance.md's headline current this way)."""
import re
import sys

report, doc, link = sys.argv[1:4]
text = open(report).read()
env = re.search(r"```\n(.*?)```", text, re.S)
date = re.search(r"^date: (.*)$", env.group(1), re.M).group(1) if env else "?"
params = re.search(r"^params: (.*)$", env.group(1), re.M).group(1) if env else ""


def section(title):
    m = re.search(r"^### " + re.escape(title) + r"[^\n]*\n(.*?)(?=^### |\Z)", text, re.S | re.M)
    if not m:
        sys.exit(f"{report}: no section '### {title}'")
    return "\n".join(l for l in m.group(1).strip().splitlines() if l.startswith("|"))


block = (
    f"Latest `make bench` ({date}; {params}); full report: [{link}]({link}).\n\n"
    f"Medians:\n\n{section('Medians')}\n\n"
    f"Ratio to haproxy (>1 = more throughput; for S5 >1 = more memory):\n\n{section('Ratio to haproxy')}\n"
)
body = open(doc).read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
if begin not in body or end not in body:
    sys.exit(f"{doc}: no {begin} ... {end} block")
head, rest = body.split(begin, 1)
_, tail = rest.split(end, 1)
open(doc, "w").write(head + begin + "\n" + block + end + tail)
