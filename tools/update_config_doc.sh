#!/usr/bin/env bash
# Rewrites the key table of docs/CONFIG.md (between the BEGIN/END markers) from `budgetformer train
# --help-config`, the one key table of src/config/config.c. tests/test_config.c checks that the two agree.
#   usage: tools/update_config_doc.sh [path/to/budgetformer]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/budgetformer}
help=$("$bin" train --help-config)
/usr/bin/python3 - "$help" <<'PY'
import sys
help = sys.argv[1] + "\n"
path = "docs/CONFIG.md"
doc = open(path).read()
begin, end = "<!-- BEGIN bf_config_print_help -->\n", "<!-- END bf_config_print_help -->"
a = doc.index(begin) + len(begin)
b = doc.index(end)
open(path, "w").write(doc[:a] + help + doc[b:])
PY
