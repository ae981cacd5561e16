"""The one way edgeprune reads YAML it did not write: schedules, sweeps, ``--set`` values.

``BoundedLoader`` is PyYAML's SafeLoader with two limits checked on the node graph, before any
Python object is built: nesting depth (deeper documents overflow PyYAML's recursive composer)
and the node count once every alias is expanded (a 1 KB "billion laughs" document expands to
10^9 nodes; anything that walks it, a copy, a dump or an error message, then runs out of
memory). Schedules and sweeps are a few hundred nodes, so the bounds are far above real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, shown

#: Nodes a document may hold with its aliases expanded.
MAX_EXPANDED_NODES = 100_000
#: Nesting depth of mappings and sequences.
MAX_DEPTH = 100


class YAMLLimitError(yaml.MarkedYAMLError):
    """A document over ``MAX_EXPANDED_NODES`` or ``MAX_DEPTH`` (a ``yaml.YAMLError``)."""


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping that names one key twice (PyYAML keeps the last silently; it is nearly always
    a copy-paste slip that hides the first value)."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs, deep nesting, over-large documents and duplicate
    keys before constructing anything."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLLimitError(problem=f"nesting deeper than {MAX_DEPTH} levels",
                                     problem_mark=self.peek_event().start_mark)
            if self._nodes > MAX_EXPANDED_NODES:  # written out, no alias needed: stop composing now
                raise YAMLLimitError(problem=f"the document holds more than {MAX_EXPANDED_NODES:,} "
                                             "values", problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise DuplicateKeyError(problem=f"key {shown(key_node.value)} appears twice in one "
                                                "mapping", problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Count the nodes of ``root`` with aliases expanded: once per distinct node (aliases share
    node objects), iteratively, so a cycle (``&a [*a]``) or a bomb costs linear time."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise YAMLLimitError(problem=f"aliases expand to more than {MAX_EXPANDED_NODES:,} "
                                             "values", problem_mark=node.start_mark)
            continue
        if key in on_path:
            raise YAMLLimitError(problem="an alias refers to a node that contains it (endless "
                                         "expansion)", problem_mark=node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with the bounds; a document over them raises ``YAMLLimitError``."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 (BoundedLoader is a SafeLoader)


def load_yaml(text: str, origin: str, error: type[UserError]) -> Any:
    """The document in ``text``; any problem is ``error`` naming ``origin``, the line and the fix."""
    try:
        return safe_load(text)
    except DuplicateKeyError as exc:
        raise error(f"{origin}:{exc.problem_mark.line + 1}: {exc.problem}: keep one of them (YAML "
                    "would silently use the last)") from None
    except YAMLLimitError as exc:
        fix = ("a schedule or sweep holds a few hundred values: trim the file" if "holds" in str(exc.problem)
               else "write the values out instead of nesting aliases or structures")
        raise error(f"{origin}:{exc.problem_mark.line + 1}: YAML document refused ({exc.problem}): "
                    f"{fix}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{origin}{line}: YAML syntax error ({problem}): fix the indentation or "
                    "quoting on that line") from None


def read_yaml_text(path: Path, error: type[UserError]) -> str:
    """The text of the YAML file ``path``; anything but a regular file (a FIFO would block),
    unreadable or not UTF-8 text is ``error``."""
    from .files import require_input_file

    require_input_file(path, "YAML file", "pass a YAML file", error)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file (byte {exc.start} cannot be decoded): pass "
                    "a YAML file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror}): pass a readable YAML file") from None
