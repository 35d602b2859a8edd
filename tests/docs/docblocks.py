"""Fenced code blocks of a Markdown document, classified for docs.* tests.

Purpose: find every fenced block (``` or ~~~, also indented in a list) of
a document, read the `<!-- doc-test: ... -->` markers on the lines just
before its opening fence, and decide whether the block runs. The rule
(docs/testing.md, "Docs that run"):

- info string sh, bash or shell: a command block a user copies; it runs,
  unless a marker `skip: REASON` (a reason is mandatory) says why not;
- console: a transcript; its `$ ` lines (and their `\` continuations)
  run as an sh block would, the other lines are output, not compared;
- any other known info string (text, json, xml, c++, ...): not run;
- no info string, or an unknown one: an error. Every block says what it
  is, so a new document cannot slip an untested command block in.

Markers (one per line, consecutive, directly above the fence):
  <!-- doc-test: skip: REASON -->       the sh block is not run
  <!-- doc-test: expect: COMMAND -->    after the block, COMMAND (bash)
                                        must succeed within 20 s (polled)
  <!-- doc-test: timeout: SECONDS -->   the block's limit (default 60)

Threading: none. Errors: Parse() returns (blocks, errors); errors are
"FILE:LINE: message" strings, one per problem found.
"""

import re
from dataclasses import dataclass, field

RUN_LANGS = {"sh", "bash", "shell", "console"}
# Blocks of these kinds are shown, never run.
TEXT_LANGS = {"text", "json", "xml", "c", "c++", "cpp", "python", "ini", "yaml", "toml", "diff", "systemd"}
DEFAULT_TIMEOUT_S = 60

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass
class Block:
    path: str
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    skip: str = ""  # the reason, when skipped
    expects: list = field(default_factory=list)
    timeout_s: int = DEFAULT_TIMEOUT_S

    @property
    def runs(self):
        return self.lang in RUN_LANGS and not self.skip

    def where(self):
        return f"{self.path}:{self.line}"


def _markers(lines, fence_index):
    """The marker bodies on the consecutive lines above lines[fence_index]."""
    bodies = []
    i = fence_index - 1
    while i >= 0:
        m = MARKER.match(lines[i])
        if not m:
            break
        bodies.insert(0, m.group("body"))
        i -= 1
    return bodies


def _apply_marker(block, body, errors):
    key, _, value = body.partition(":")
    key, value = key.strip(), value.strip()
    if key == "skip":
        if not value:
            errors.append(f"{block.where()}: 'skip' needs a reason: <!-- doc-test: skip: WHY -->")
        block.skip = value or "?"
    elif key == "expect":
        if not value:
            errors.append(f"{block.where()}: 'expect' needs a command")
        block.expects.append(value)
    elif key == "timeout":
        if not value.isdigit() or int(value) == 0:
            errors.append(f"{block.where()}: 'timeout' needs a number of seconds, not {value!r}")
        else:
            block.timeout_s = int(value)
    else:
        errors.append(f"{block.where()}: unknown doc-test marker {body!r} (skip, expect, timeout)")


def _classify(block, errors):
    if block.lang in RUN_LANGS:
        return
    if not block.lang:
        errors.append(
            f"{block.where()}: a fenced block without an info string: mark it ```sh (run by the "
            "docs tests; <!-- doc-test: skip: WHY --> above it if it cannot run) or ```text "
            "(synopses, output, diagrams) or its language (json, xml, c++, ...)"
        )
    elif block.lang not in TEXT_LANGS:
        errors.append(
            f"{block.where()}: unknown info string {block.lang!r}: sh, bash or shell runs; "
            f"not run: {', '.join(sorted(TEXT_LANGS))}"
        )
    if block.skip or block.expects:
        errors.append(f"{block.where()}: doc-test markers on a {block.lang or 'bare'} block (only sh blocks run)")


def _close(lines, start, indent, fence):
    """Index of the line closing the fence opened at lines[start], or len(lines)."""
    closing = re.compile(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
    for j in range(start + 1, len(lines)):
        if closing.match(lines[j]):
            return j
    return len(lines)


def _dedent(text_lines, indent):
    n = len(indent)
    return [l[n:] if l[:n].strip() == "" else l.lstrip() for l in text_lines]


def Parse(path, text):
    """(blocks, errors) of the document `text` read from `path`."""
    lines = text.split("\n")
    blocks, errors = [], []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if MARKER.match(lines[i]) and not _marker_run_ends_at_fence(lines, i):
                errors.append(f"{path}:{i + 1}: a doc-test marker not directly above a fenced block")
            i += 1
            continue
        end = _close(lines, i, m.group("indent"), m.group("fence"))
        if end == len(lines):
            errors.append(f"{path}:{i + 1}: fenced block never closed")
        info = m.group("info").strip()
        lang = info.split()[0].lower() if info else ""
        body_lines = _dedent(lines[i + 1 : end], m.group("indent"))
        if lang == "console":
            body_lines = _console_commands(body_lines)
        block = Block(path=path, line=i + 1, lang=lang, body="\n".join(body_lines) + "\n")
        for marker in _markers(lines, i):
            _apply_marker(block, marker, errors)
        _classify(block, errors)
        blocks.append(block)
        i = end + 1
    return blocks, errors


def _console_commands(lines):
    """The commands of a transcript: `$ ` lines without the prompt, with their continuations."""
    commands, continued = [], False
    for line in lines:
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.endswith("\\")
    return commands


def _marker_run_ends_at_fence(lines, i):
    j = i
    while j < len(lines) and MARKER.match(lines[j]):
        j += 1
    return j < len(lines) and FENCE.match(lines[j]) is not None
