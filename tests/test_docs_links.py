"""Every link of README.md and docs/*.md resolves inside the repository: a relative link names a file or
directory of the source tree (never one outside it, such as ../shared/...), an anchor (#...) names a heading
of its target page (GitHub's slugs), and no page points at the reference documents outside the tree
(/work/shared, ../shared) in its text. Web links (http, https, mailto) are not followed."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import SRC, check_quiet, report  # noqa: E402

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_FENCE = re.compile(r"^(```|~~~)")


def pages():
    out = [os.path.join(SRC, "README.md")]
    docs = os.path.join(SRC, "docs")
    out += sorted(os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))
    return out


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks, with inline code removed."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if CODE_FENCE.match(line.strip()):
                fenced = not fenced
                continue
            if not fenced:
                yield no, re.sub(r"`[^`]*`", "", line)


def slug(heading):
    """GitHub's anchor of a heading: lowercased, punctuation other than - and _ dropped, spaces to -."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    out = set()
    for _, line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            out.add(slug(m.group(1)))
    return out


def main():
    root = os.path.realpath(SRC)
    n_links = 0
    for page in pages():
        rel_page = os.path.relpath(page, SRC)
        with open(page, encoding="utf-8") as f:
            text = f.read()
        check_quiet("/work/shared" not in text and "../shared/" not in text,
                    "%s points at the shared reference documents outside the repository" % rel_page)
        for no, line in prose_lines(page):
            for m in LINK.finditer(line):
                target = m.group(1)
                n_links += 1
                where = "%s:%d: link '%s'" % (rel_page, no, target)
                if re.match(r"^(https?|mailto):", target):
                    continue
                path_part, _, anchor = target.partition("#")
                if path_part.startswith("/"):
                    check_quiet(False, where + " is an absolute path: expected one relative to the page")
                    continue
                dest = os.path.realpath(os.path.join(os.path.dirname(page), path_part)) if path_part else page
                if not check_quiet(dest == root or dest.startswith(root + os.sep),
                                   where + " leaves the repository (%s)" % dest):
                    continue
                if not check_quiet(os.path.exists(dest), where + ": no such file in the repository"):
                    continue
                if anchor and dest.endswith(".md"):
                    check_quiet(anchor in anchors(dest), where + ": no heading with anchor #%s in %s" %
                                (anchor, os.path.relpath(dest, SRC)))
    print("checked %d links in %d pages" % (n_links, len(pages())))
    check_quiet(n_links > 20, "expected more than 20 links in README.md and docs/")
    report()


if __name__ == "__main__":
    main()
