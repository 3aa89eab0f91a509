"""The parameters a rendered chapter shows: the values its run used, once.

papermill leaves two cells: the chapter's defaults (tagged ``parameters``) and, below them, the
values it injected (``injected-parameters``). A reader then sees two values for the same name.
On the rendered page the defaults cell is rewritten with the injected values, each changed line
keeping its comment and naming the default it replaced, and the injected cell is dropped. The
executed notebook itself keeps both cells, as papermill wrote them.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize

HEADER = "# Parameters of this run: the profile's values in place of the chapter's defaults."
# The widest code line the page shows without cutting it (the chapters' own cells stay within it;
# tests/test_browser.py measures the rendered page).
WIDTH = 88


def _tagged(document, tag: str) -> int | None:
    return next((i for i, cell in enumerate(document.cells) if tag in cell.metadata.get("tags", [])), None)


def _assignments(source: str) -> dict[str, ast.Assign]:
    return {
        node.targets[0].id: node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }


def _comment(lines: list[str]) -> str:
    """The comments of an assignment's lines, joined (ruff may have wrapped one in brackets)."""
    tokens = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
    return " ".join(token.string.lstrip("# ").strip() for token in tokens if token.type == tokenize.COMMENT)


def _assignment_lines(name: str, value: str, comment: str) -> list[str]:
    """``name = value  # comment`` on one line, or the comment above it when that is too wide."""
    line = f"{name} = {value}"
    if not comment:
        return [line]
    if len(line) + 4 + len(comment) <= WIDTH:
        return [f"{line}  # {comment}"]
    return textwrap.wrap(comment, WIDTH, initial_indent="# ", subsequent_indent="# ") + [line]


def show_values_once(document) -> bool:
    """Rewrite ``document``'s parameters cell with its injected values and drop the injected
    cell; return whether anything was injected."""
    injected_index, defaults_index = _tagged(document, "injected-parameters"), _tagged(document, "parameters")
    if injected_index is None or defaults_index is None:
        return False
    injected = document.cells[injected_index].source
    values = {
        name: ast.get_source_segment(injected, node.value) for name, node in _assignments(injected).items()
    }
    source = document.cells[defaults_index].source
    lines = source.splitlines()
    for name, node in sorted(_assignments(source).items(), key=lambda item: -item[1].lineno):
        if name not in values:
            continue
        default = ast.get_source_segment(source, node.value).replace("\n", " ")
        used = values.pop(name)
        span = lines[node.lineno - 1 : node.end_lineno]
        comment = _comment(span)
        if ast.dump(ast.parse(used)) != ast.dump(ast.parse(" ".join(default.split()))):
            comment = f"{comment} [default: {' '.join(default.split())}]".strip()
        lines[node.lineno - 1 : node.end_lineno] = _assignment_lines(name, used, comment)
    lines += [f"{name} = {value}" for name, value in values.items()]  # none: parameters.check refuses them
    if lines and lines[0].startswith("# Parameters"):
        lines[0] = HEADER
    document.cells[defaults_index].source = "\n".join(lines)
    del document.cells[injected_index]
    return True
