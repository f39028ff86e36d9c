"""Turns `cdk diff` output into one pull-request comment per stack, and decides pass or fail.

Reviewers see every infrastructure change as a comment on the pull request; the comment
calls out what deserves a second look (resources replaced or deleted, IAM and security group
changes), and the check fails on destructive changes unless the pull request carries the
``allow-destructive-changes`` label or the resource types are allowed by setting, as the
widely used cdk-diff-action does. Each comment starts with a marker naming its stack, so a
workflow finds and updates the same comment on every new commit.

Input is the CLI's plain text (``cdk diff --no-color``); stacks are split on their
``Stack ...`` header lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ALLOW_LABEL = "allow-destructive-changes"
"""Pull-request label that lets destructive changes pass."""

MAX_COMMENT_CHARS = 65_000
"""GitHub refuses comments over 65,536 characters; the full diff is cut to fit under this."""

MAX_TABLE_ROWS = 60

DESTRUCTIVE_IMPACTS = ("replace", "destroy")
"""Impacts that lose a resource (and its data or identity). ``orphan`` keeps it, and
``may be replaced`` is only known for sure from a change set, so both are shown, not failed."""

IAM_SECTIONS = ("IAM Statement Changes", "IAM Policy Changes", "IAM Identity Center Changes")
SECURITY_GROUP_SECTION = "Security Group Changes"
SECTIONS = (
    *IAM_SECTIONS,
    SECURITY_GROUP_SECTION,
    "Parameters",
    "Metadata",
    "Mappings",
    "Conditions",
    "Resources",
    "Outputs",
    "Other Changes",
    "Transform",
    "AWSTemplateFormatVersion",
    "Description",
    "Rules",
    "Hooks",
)
SECURITY_GROUP_TYPES = ("AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")

Action = Literal["add", "update", "remove", "import"]
_ACTIONS: dict[str, Action] = {"+": "add", "~": "update", "-": "remove", "←": "import"}
_IMPACTS = ("may be replaced", "replace", "destroy", "orphan", "import")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STACK_HEADER = re.compile(r"^Stack (?P<display>\S+)(?: \((?P<name>[^)]+)\))?(?: \((?P<env>aws://[^)]+)\))?\s*$")
_RESOURCE_LINE = re.compile(r"^\[(?P<prefix>[+~←-])\] (?P<type>(?:[A-Za-z0-9]+::){1,2}[A-Za-z0-9]+) (?P<rest>.+)$")
_MOVE = re.compile(r"\s*\(OR move .*\)$")


@dataclass(frozen=True)
class ResourceChange:
    """One resource line of the diff's Resources section."""

    action: Action
    resource_type: str
    logical_id: str
    path: str
    impact: str
    """``replace``, ``may be replaced``, ``destroy``, ``orphan``, ``import`` or empty."""

    @property
    def destructive(self) -> bool:
        return self.impact in DESTRUCTIVE_IMPACTS

    @property
    def label(self) -> str:
        """What happens to the resource, in one or two words."""
        if self.impact:
            return self.impact
        return {"add": "add", "update": "update", "remove": "remove", "import": "import"}[self.action]


@dataclass(frozen=True)
class StackDiff:
    """The diff of one stack."""

    stack_name: str
    """CloudFormation stack name (the construct id when the two are the same)."""
    display_name: str
    text: str
    resources: tuple[ResourceChange, ...] = ()
    sections: tuple[str, ...] = ()
    has_changes: bool = True

    @property
    def iam_changes(self) -> bool:
        return any(section in IAM_SECTIONS for section in self.sections) or any(
            change.resource_type.startswith("AWS::IAM::") for change in self.resources
        )

    @property
    def security_group_changes(self) -> bool:
        return SECURITY_GROUP_SECTION in self.sections or any(
            change.resource_type in SECURITY_GROUP_TYPES for change in self.resources
        )

    @property
    def destructive_changes(self) -> tuple[ResourceChange, ...]:
        return tuple(change for change in self.resources if change.destructive)


@dataclass(frozen=True)
class Policy:
    """When destructive changes may pass."""

    allow_destructive: bool = False
    """Every destructive change passes (the pull request has the allow label)."""
    allowed_destroy_types: frozenset[str] = field(default_factory=frozenset)
    """Resource types whose replacement or deletion passes, e.g. ``AWS::EC2::LaunchTemplate``."""
    reason: str = ""
    """Why destructive changes are allowed, for the comment."""


@dataclass(frozen=True)
class StackVerdict:
    stack_name: str
    blocking: tuple[ResourceChange, ...]
    """Destructive changes the policy does not allow: any of them fails the check."""
    allowed: tuple[ResourceChange, ...]
    """Destructive changes the policy allows."""
    allowed_because: str

    @property
    def failed(self) -> bool:
        return bool(self.blocking)


@dataclass(frozen=True)
class Decision:
    verdicts: tuple[StackVerdict, ...]

    @property
    def failed(self) -> bool:
        return any(verdict.failed for verdict in self.verdicts)

    def for_stack(self, stack_name: str) -> StackVerdict:
        for verdict in self.verdicts:
            if verdict.stack_name == stack_name:
                return verdict
        raise KeyError(f"no verdict for stack {stack_name!r}; stacks: {[v.stack_name for v in self.verdicts]}")


def parse(text: str) -> list[StackDiff]:
    """Every stack's diff in the CLI's output, in order; lines before the first stack are ignored."""
    blocks: list[tuple[re.Match[str], list[str]]] = []
    for raw_line in _ANSI.sub("", text).splitlines():
        line = raw_line.rstrip()
        header = _STACK_HEADER.match(line)
        if header is not None:
            blocks.append((header, []))
        elif blocks:
            blocks[-1][1].append(line)
    return [_stack_diff(header, lines) for header, lines in blocks]


def _stack_diff(header: re.Match[str], lines: list[str]) -> StackDiff:
    body = _trim(lines)
    sections: list[str] = []
    resources: list[ResourceChange] = []
    current = ""
    for line in body:
        if line in SECTIONS:
            current = line
            sections.append(line)
        elif current == "Resources":
            change = _resource_change(line)
            if change is not None:
                resources.append(change)
    display = header.group("display")
    return StackDiff(
        stack_name=header.group("name") or display,
        display_name=display,
        text="\n".join(body),
        resources=tuple(resources),
        sections=tuple(sections),
        has_changes=not any(line.strip() == "There were no differences" for line in body),
    )


def _trim(lines: list[str]) -> list[str]:
    """The stack's own lines: without the CLI's closing summary and surrounding blank lines."""
    kept = [line for line in lines if not line.lstrip("✨ ").startswith("Number of stacks with differences")]
    while kept and not kept[-1].strip():
        kept.pop()
    while kept and not kept[0].strip():
        kept.pop(0)
    return kept


def _resource_change(line: str) -> ResourceChange | None:
    match = _RESOURCE_LINE.match(line)
    if match is None:
        return None
    rest = _MOVE.sub("", match.group("rest")).strip()
    impact = ""
    for candidate in _IMPACTS:
        if rest.endswith(f" {candidate}"):
            impact = candidate
            rest = rest[: -len(candidate) - 1].rstrip()
            break
    path, _, logical_id = rest.rpartition(" ")
    return ResourceChange(
        action=_ACTIONS[match.group("prefix")],
        resource_type=match.group("type"),
        logical_id=logical_id,
        path=path,
        impact=impact,
    )


def decide(diffs: Iterable[StackDiff], policy: Policy) -> Decision:
    """Which stacks' destructive changes block the pull request under ``policy``."""
    verdicts = []
    for diff in diffs:
        destructive = diff.destructive_changes
        if policy.allow_destructive:
            blocking: tuple[ResourceChange, ...] = ()
        else:
            blocking = tuple(c for c in destructive if c.resource_type not in policy.allowed_destroy_types)
        allowed = tuple(change for change in destructive if change not in blocking)
        because = policy.reason or (
            f"label `{ALLOW_LABEL}`"
            if policy.allow_destructive
            else "allowed resource types: " + ", ".join(sorted(policy.allowed_destroy_types))
        )
        verdicts.append(StackVerdict(diff.stack_name, blocking, allowed, because if allowed else ""))
    return Decision(tuple(verdicts))


def marker(stack_name: str) -> str:
    """First line of a stack's comment; the workflow updates the comment that starts with it."""
    return f"<!-- cdk-diff-comment stack={stack_name} -->"


def render_comment(diff: StackDiff, verdict: StackVerdict) -> str:
    """The Markdown comment for one stack."""
    lines = [marker(diff.stack_name), f"### cdk diff: stack `{diff.stack_name}`", ""]
    if not diff.has_changes:
        lines.append("✅ No differences from the deployed stack.")
        return "\n".join(lines) + "\n"
    if verdict.failed:
        lines.append(
            f"🛑 **{len(verdict.blocking)} destructive change(s)**: resources would be replaced or deleted. "
            f"This check fails until they are intended and allowed (add the `{ALLOW_LABEL}` label)."
        )
    elif verdict.allowed:
        lines.append(
            f"⚠️ **{len(verdict.allowed)} destructive change(s), allowed** ({verdict.allowed_because}): "
            "resources will be replaced or deleted."
        )
    else:
        lines.append("✅ No destructive changes.")
    if diff.iam_changes:
        lines.append("- 🔐 **IAM changes**: permissions change; review the IAM tables in the diff.")
    if diff.security_group_changes:
        lines.append("- 🔐 **Security group changes**: network access changes; review the security group table.")
    lines += ["", _counts(diff.resources), ""]
    lines += _resource_table(diff.resources)
    lines += ["", *_full_diff(diff.text, budget=MAX_COMMENT_CHARS - sum(len(line) + 1 for line in lines))]
    return "\n".join(lines) + "\n"


def _counts(resources: Sequence[ResourceChange]) -> str:
    added = sum(1 for change in resources if change.action == "add")
    removed = sum(1 for change in resources if change.action == "remove")
    replaced = sum(1 for change in resources if change.impact in ("replace", "may be replaced"))
    updated = sum(1 for change in resources if change.action == "update") - replaced
    return (
        f"Resources: **{added}** to add, **{updated}** to update, **{replaced}** to replace, **{removed}** to remove."
    )


def _resource_table(resources: Sequence[ResourceChange]) -> list[str]:
    if not resources:
        return []
    ordered = sorted(resources, key=lambda change: (not change.destructive, change.impact == "", change.path))
    rows = ["| | Resource | Type | Change |", "|---|---|---|---|"]
    for change in ordered[:MAX_TABLE_ROWS]:
        flag = "🛑" if change.destructive else ("⚠️" if change.impact else "")
        name = f"`{change.path}` ({change.logical_id})" if change.path else f"`{change.logical_id}`"
        rows.append(f"| {flag} | {name} | `{change.resource_type}` | {change.label} |")
    if len(ordered) > MAX_TABLE_ROWS:
        rows.append(f"| | ... and {len(ordered) - MAX_TABLE_ROWS} more | | |")
    return rows


def _full_diff(text: str, budget: int) -> list[str]:
    longest_run = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    head = f"<details><summary>Full diff ({len(text.splitlines())} lines)</summary>"
    note = "\n(cut to fit a comment: the job log has the whole diff)"
    room = budget - len(head) - 2 * len(fence) - len(note) - 40
    body = text if len(text) <= room else text[: max(room, 0)].rsplit("\n", 1)[0] + note
    return [head, "", fence + "text", body, fence, "", "</details>"]


def write_comments(diffs: Sequence[StackDiff], decision: Decision, out_dir: Path) -> list[dict[str, object]]:
    """Writes ``<stack>.md`` per stack and ``summary.json``; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, object]] = []
    for diff in diffs:
        verdict = decision.for_stack(diff.stack_name)
        path = out_dir / f"{diff.stack_name}.md"
        path.write_text(render_comment(diff, verdict))
        summary.append(
            {
                "stack": diff.stack_name,
                "marker": marker(diff.stack_name),
                "comment": str(path),
                "has_changes": diff.has_changes,
                "destructive": [change.logical_id for change in diff.destructive_changes],
                "blocking": [change.logical_id for change in verdict.blocking],
                "iam_changes": diff.iam_changes,
                "security_group_changes": diff.security_group_changes,
            }
        )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alchemy_tools.cdk_diff_comment",
        description="Writes one pull-request comment per stack from `cdk diff --no-color` output; "
        "exits 1 when a destructive change is not allowed.",
    )
    parser.add_argument("diff_file", type=Path, help="the saved output of `cdk diff --no-color`")
    parser.add_argument("--out-dir", type=Path, required=True, help="where <stack>.md and summary.json go")
    parser.add_argument(
        "--allow-destructive",
        default="false",
        choices=("true", "false"),
        help=f"true when the pull request has the `{ALLOW_LABEL}` label (or a setting allows it)",
    )
    parser.add_argument(
        "--allowed-destroy-types",
        default="",
        help="comma-separated resource types whose replacement or deletion is allowed",
    )
    args = parser.parse_args(argv)
    diffs = parse(args.diff_file.read_text())
    if not diffs:
        print(f"error: no `Stack ...` section in {args.diff_file}; is it `cdk diff` output?", file=sys.stderr)
        return 2
    policy = Policy(
        allow_destructive=args.allow_destructive == "true",
        allowed_destroy_types=frozenset(t.strip() for t in args.allowed_destroy_types.split(",") if t.strip()),
    )
    decision = decide(diffs, policy)
    for entry in write_comments(diffs, decision, args.out_dir):
        state = "BLOCKED" if entry["blocking"] else ("changes" if entry["has_changes"] else "no changes")
        print(f"{entry['stack']}: {state} -> {entry['comment']}")
    return 1 if decision.failed else 0


if __name__ == "__main__":
    sys.exit(main())
