"""Header comments hold no code examples that nothing compiles (docs/ARCHITECTURE.md): an indented line of a
comment in include/budgetformer/*.h or src/*/*.h that reads like a C statement calling a bf_ function
(`bf_x(...);`) fails this test. Headers name the sources and tests that use each API instead: those are the
compiled examples. Prints each offending line."""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import SRC, check_quiet, report  # noqa: E402

STATEMENT = re.compile(r"^\s*\*\s{2,}.*\bbf_[a-z0-9_]+\s*\(.*\)\s*;")
headers = sorted(glob.glob(os.path.join(SRC, "include", "budgetformer", "*.h")) +
                 glob.glob(os.path.join(SRC, "src", "*", "*.h")))
check_quiet(len(headers) > 20, "found the headers (%d)" % len(headers))
for h in headers:
    with open(h, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            check_quiet(not STATEMENT.match(line), "%s:%d: a code example in a comment: %s"
                        % (os.path.relpath(h, SRC), no, line.strip()))
report()
