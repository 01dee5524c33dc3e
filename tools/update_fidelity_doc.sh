#!/usr/bin/env bash
# Rewrites the table of docs/FIDELITY.md from a budget-study output directory.
#   usage: tools/update_fidelity_doc.sh [DIR]     (default runs/budget-study)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-runs/budget-study}
table=$(/usr/bin/python3 tools/budget_study_table.py "$dir" launch/budget-study.txt)
/usr/bin/python3 - "$table" <<'PY'
import re, sys
path = "docs/FIDELITY.md"
doc = open(path).read()
begin = "<!-- BEGIN budget-study table: tools/budget_study_table.py -->\n"
end = "<!-- END budget-study table -->"
a = doc.index(begin) + len(begin)
b = doc.index(end)
open(path, "w").write(doc[:a] + sys.argv[1] + "\n" + doc[b:])
PY
