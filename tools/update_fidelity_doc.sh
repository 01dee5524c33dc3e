#!/usr/bin/env bash
# Rewrites the table of docs/FIDELITY.md from a budget-study output directory.
#   usage: tools/update_fidelity_doc.sh [DIR]     (default runs/budget-study)
# A variant whose results are not in DIR keeps the row the document already has (the study's rows were run
# in different sessions and checkouts; a checkout need not hold every earlier result to add its own).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-runs/budget-study}
table=$(/usr/bin/python3 tools/budget_study_table.py "$dir" launch/budget-study.txt)
/usr/bin/python3 - "$table" <<'PY'
import sys
path = "docs/FIDELITY.md"
doc = open(path).read()
begin = "<!-- BEGIN budget-study table: tools/budget_study_table.py -->\n"
end = "<!-- END budget-study table -->"
a = doc.index(begin) + len(begin)
b = doc.index(end)
old = {}
for line in doc[a:b].splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 3 and cells[3] not in ("", "not run", "valid accuracy") and not cells[1].startswith("---"):
        old[cells[1]] = line
rows = []
for line in sys.argv[1].splitlines():
    cells = [c.strip() for c in line.split("|")]
    rows.append(old.get(cells[1], line) if len(cells) > 3 and cells[3] == "not run" else line)
open(path, "w").write(doc[:a] + "\n".join(rows) + "\n" + doc[b:])
PY
