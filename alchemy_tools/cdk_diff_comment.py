"""Turns `cdk diff` output into one pull-request comment per stack, and decides pass or fail.

Reviewers see every infrastructure change as a comment on the pull request. The comment puts
first what deserves a second look: the verdict on destructive changes (resources replaced or
deleted), machines that will be replaced (a changed launch template replaces every node, one at
a time; a changed NAT image replaces the NAT instance) with their user data decoded file by file,
and every IAM statement and security-group rule marked widening or narrowing. The full diff
follows, collapsed, and is the first thing cut when the comment would be too long for GitHub.

Destructive changes fail the check unless acknowledged for this pull request in the
acknowledgment file (:data:`ACKNOWLEDGMENTS_FILE`, part of the pull request's own head commit,
one line per stack and resource) or allowed by resource type in a repository setting. Each
comment starts with a marker naming its stack and carries the head commit and the time of the
run, so a stale comment is recognisable; :mod:`alchemy_tools.pr_comments` updates the comments.

Input is the CLI's plain text (``cdk diff --no-color``); stacks are split on their
``Stack ...`` header lines.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from alchemy_tools import diff_tables, diff_user_data

ACKNOWLEDGMENTS_FILE = ".github/cdk-diff-acknowledgments.txt"
"""Where a pull request acknowledges its destructive changes: ``<pull request> <stack> <logical id>``."""

GITHUB_COMMENT_LIMIT = 65_536
"""GitHub refuses a comment body longer than this many characters (as :func:`github_length` counts)."""

MAX_TABLE_ROWS = 60
MAX_DIFF_LINE = 300
"""Longer lines of the full diff (an 11 KB base64 bundle) are shortened, not allowed to push the rest out."""
MAX_FILE_DIFF_LINES = 80
"""Lines of one decoded file's diff shown before it is shortened."""

NODE_GROUP_PATH = "NodeGroup/"
"""Construct path prefix of the node group (``alchemy_stack``): its launch template's changes roll every node."""

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
    """One resource line of the diff's Resources section, with the lines of its property changes."""

    action: Action
    resource_type: str
    logical_id: str
    path: str
    impact: str
    """``replace``, ``may be replaced``, ``destroy``, ``orphan``, ``import`` or empty."""
    details: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The property-change lines printed below the resource line."""

    @property
    def destructive(self) -> bool:
        return self.impact in DESTRUCTIVE_IMPACTS

    @property
    def label(self) -> str:
        """What happens to the resource, in one or two words."""
        return self.impact or self.action

    @property
    def name(self) -> str:
        return f"`{self.path}` ({self.logical_id})" if self.path else f"`{self.logical_id}`"


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
    security_rows: tuple[diff_tables.TableRow, ...] = ()
    """The IAM and security-group table rows, each widening or narrowing."""

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


MachineKind = Literal["nodes", "instance", "launch_template"]


@dataclass(frozen=True)
class MachineChange:
    """A change that replaces or restarts machines, with their user data decoded."""

    resource: ResourceChange
    kind: MachineKind
    image_changed: bool
    user_data: diff_user_data.UserDataChange | None

    @property
    def headline(self) -> str:
        what = " and ".join(
            part
            for part, changed in (("image", self.image_changed), ("user data", self.user_data is not None))
            if changed
        )
        if self.kind == "nodes":
            return (
                f"🔁 **Every node will be replaced, one at a time**: the nodes' launch template "
                f"`{self.resource.path}` changes its {what or 'launch data'}, and the node group's rolling update "
                "replaces each node with a new one and waits for its ready signal before the next."
            )
        role = "The NAT instance" if "NatInstance" in self.resource.path else f"The instance {self.resource.name}"
        if self.kind == "instance" and (self.image_changed or self.resource.destructive):
            return (
                f"🔁 **{role} will be replaced** (new {what}): traffic through it stops until the new one "
                "is running (for the NAT, outbound internet access of the private subnets)."
            )
        if self.kind == "instance":
            return (
                f"⚠️ **{role} will be stopped and started** (new user data): traffic through it stops meanwhile, "
                "and cloud-init runs a changed boot script only on a new instance."
            )
        return (
            f"⚠️ **Launch template {self.resource.name} changes its {what}**: instances launched from it "
            "get the change when they are next replaced."
        )


@dataclass(frozen=True)
class Policy:
    """When destructive changes may pass."""

    acknowledged: frozenset[tuple[str, str]] = frozenset()
    """(stack, logical id) pairs the pull request acknowledges in :data:`ACKNOWLEDGMENTS_FILE`."""
    acknowledged_in: str = ""
    """Where the acknowledgments were read, e.g. the file at the head commit, for the comment."""
    allowed_destroy_types: frozenset[str] = field(default_factory=frozenset)
    """Resource types whose replacement or deletion passes (a repository setting)."""


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


@dataclass(frozen=True)
class RunContext:
    """Which commit a comment describes, and when it was made: a reader can tell a stale comment."""

    head_sha: str
    time: datetime
    note: str = ""
    """E.g. ``with uncommitted changes`` for a local run."""
    run_url: str = ""
    """The workflow run that wrote the comment (its log has the whole diff)."""

    @classmethod
    def local(cls, root: Path) -> RunContext:
        """The checkout's HEAD, and whether the working tree differs from it."""

        def git(*args: str) -> str:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
            return done.stdout.strip() if done.returncode == 0 else ""

        sha = git("rev-parse", "HEAD") or "unknown"
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return cls(sha, datetime.now(UTC), "with uncommitted changes" if dirty else "")

    def line(self) -> str:
        note = f" ({self.note})" if self.note else ""
        run = f" · [run]({self.run_url})" if self.run_url else ""
        return f"Commit {self.head_sha}{note} · {self.time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC{run}"


class AcknowledgmentError(ValueError):
    """A line of the acknowledgment file that is not ``<pull request> <stack> <logical id> [# reason]``."""


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
    resources: list[tuple[ResourceChange, list[str]]] = []
    current = ""
    for line in body:
        if line in SECTIONS:
            current = line
            sections.append(line)
            continue
        if current != "Resources":
            continue
        change = _resource_change(line)
        if change is not None:
            resources.append((change, []))
        elif resources:
            resources[-1][1].append(line)
    display = header.group("display")
    return StackDiff(
        stack_name=header.group("name") or display,
        display_name=display,
        text="\n".join(body),
        resources=tuple(
            ResourceChange(c.action, c.resource_type, c.logical_id, c.path, c.impact, tuple(_trim(details)))
            for c, details in resources
        ),
        sections=tuple(sections),
        has_changes=not any(line.strip() == "There were no differences" for line in body),
        security_rows=tuple(diff_tables.parse_tables(body)),
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


def machine_changes(diff: StackDiff) -> list[MachineChange]:
    """Updated launch templates and instances whose image or user data changes, nodes first."""
    found = []
    for change in diff.resources:
        if change.action != "update":
            continue
        if change.resource_type == "AWS::EC2::LaunchTemplate":
            kind: MachineKind = "nodes" if change.path.startswith(NODE_GROUP_PATH) else "launch_template"
        elif change.resource_type == "AWS::EC2::Instance":
            kind = "instance"
        else:
            continue
        image = diff_user_data.property_changed(change.details, "ImageId")
        user_data = diff_user_data.user_data_change(change.details)
        if image or user_data is not None or (kind == "nodes" and change.details):
            found.append(MachineChange(change, kind, image, user_data))
    return sorted(found, key=lambda machine: machine.kind != "nodes")


def read_acknowledgments(text: str, *, pull_request: int) -> frozenset[tuple[str, str]]:
    """The (stack, logical id) pairs that ``text`` acknowledges for ``pull_request``.

    Each line is ``<pull request> <stack> <logical id>``, optionally followed by ``# reason``.
    Lines for other pull requests are ignored: an acknowledgment never outlives the pull
    request it was written in, and it names one resource, so a later push that replaces
    anything else fails until that is acknowledged too.
    """
    acknowledged = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[0].isdigit():
            raise AcknowledgmentError(
                f"invalid acknowledgment on line {number}: {raw.strip()!r}: "
                "must be '<pull request number> <stack name> <logical id>', optionally followed by '# reason'"
            )
        if int(fields[0]) == pull_request:
            acknowledged.add((fields[1], fields[2]))
    return frozenset(acknowledged)


def decide(diffs: Iterable[StackDiff], policy: Policy) -> Decision:
    """Which stacks' destructive changes block the pull request under ``policy``."""
    verdicts = []
    for diff in diffs:
        blocking, allowed, reasons = [], [], set()
        for change in diff.destructive_changes:
            if (diff.stack_name, change.logical_id) in policy.acknowledged:
                allowed.append(change)
                reasons.add(f"acknowledged in {policy.acknowledged_in or ACKNOWLEDGMENTS_FILE}")
            elif change.resource_type in policy.allowed_destroy_types:
                allowed.append(change)
                reasons.add("allowed resource types: " + ", ".join(sorted(policy.allowed_destroy_types)))
            else:
                blocking.append(change)
        verdicts.append(StackVerdict(diff.stack_name, tuple(blocking), tuple(allowed), "; ".join(sorted(reasons))))
    return Decision(tuple(verdicts))


def marker(stack_name: str) -> str:
    """First line of a stack's comment; the workflow updates its own comment that starts with it."""
    return f"<!-- cdk-diff-comment stack={stack_name} -->"


MARKER_PREFIX = "<!-- cdk-diff-comment stack="
FAILED_STACK = "*"
"""Marker stack of the comment a failed diff writes when it cannot tell which stacks it was for."""


def github_length(text: str) -> int:
    """The length GitHub compares with :data:`GITHUB_COMMENT_LIMIT`, counted the strictest way.

    GitHub says "characters"; reports disagree on whether it counts code points, UTF-16 code
    units or bytes (with a larger byte limit), and a body sent through a form has its newlines
    turned into CRLF. This counts UTF-16 code units (an emoji outside the BMP is two) and each
    newline twice: a comment within the limit by this count is within it by every one of those.
    """
    return len(text.encode("utf-16-le")) // 2 + text.count("\n")


def render_comment(diff: StackDiff, verdict: StackVerdict, context: RunContext) -> str:
    """The Markdown comment for one stack, within GitHub's limit.

    Cut in this order when too long: the full diff's text (long lines first, then its tail),
    then the decoded file diffs (their file list stays), then resource rows beyond the first
    ones; the verdict, machine replacements and the IAM and security-group tables stay.
    """
    head = [marker(diff.stack_name), f"### cdk diff: stack `{diff.stack_name}`", "", f"<sub>{context.line()}</sub>", ""]
    if not diff.has_changes:
        return "\n".join([*head, "✅ No differences from the deployed stack."]) + "\n"
    machines = machine_changes(diff)
    essential = [*head, *_verdict_lines(diff, verdict, machines), "", _counts(diff.resources), ""]
    tables = diff_tables.render_tables(diff.security_rows)
    if tables:
        tables = ["#### IAM and security-group changes", "", *tables]
    for detail_level in ("full", "files", "none"):
        machine_lines = _machine_lines(machines, detail_level)
        for rows in (MAX_TABLE_ROWS, 10, 0):
            fixed = [*essential, *_resource_table(diff.resources, rows), "", *tables, *machine_lines]
            room = GITHUB_COMMENT_LIMIT - github_length("\n".join(fixed) + "\n") - 1
            if room >= 0:
                return "\n".join([*fixed, *_full_diff(diff.text, room, context)]) + "\n"
    # The tables alone are over the limit: keep the verdict and as many table lines as fit.
    kept = list(essential)
    note = "(IAM and security-group tables cut to fit a comment: the job log has the whole diff)"
    for line in tables:
        if github_length("\n".join([*kept, line, note]) + "\n") > GITHUB_COMMENT_LIMIT:
            break
        kept.append(line)
    return "\n".join([*kept, note]) + "\n"


def render_failure(context: RunContext, stack_name: str = FAILED_STACK) -> str:
    """The comment of a run whose `cdk diff` failed: it replaces the previous commit's comment."""
    where = f" ([run log]({context.run_url}))" if context.run_url else ""
    return (
        "\n".join(
            [
                marker(stack_name),
                "### cdk diff failed",
                "",
                f"<sub>{context.line()}</sub>",
                "",
                f"❌ **`cdk diff` failed for this commit**{where}: there is no diff to review, and the comment "
                "written for an earlier commit has been replaced so that it cannot be taken for this one.",
            ]
        )
        + "\n"
    )


def _verdict_lines(diff: StackDiff, verdict: StackVerdict, machines: Sequence[MachineChange]) -> list[str]:
    if verdict.failed:
        names = ", ".join(f"`{c.logical_id}`" for c in verdict.blocking[:10])
        more = f" and {len(verdict.blocking) - 10} more" if len(verdict.blocking) > 10 else ""
        lines = [
            f"🛑 **{len(verdict.blocking)} destructive change(s)**: resources would be replaced or deleted "
            f"({names}{more}). This check fails until each is acknowledged for this pull request: a line "
            f"`<pull request> {diff.stack_name} <logical id>  # why` in `{ACKNOWLEDGMENTS_FILE}`."
        ]
    elif verdict.allowed:
        lines = [
            f"⚠️ **{len(verdict.allowed)} destructive change(s), allowed** ({verdict.allowed_because}): "
            "resources will be replaced or deleted."
        ]
    else:
        lines = ["✅ No destructive changes."]
    lines += [f"- {machine.headline}" for machine in machines]
    for title, rows in (
        ("IAM", [r for r in diff.security_rows if r.section != diff_tables.SECURITY_GROUPS]),
        ("Security groups", [r for r in diff.security_rows if r.section == diff_tables.SECURITY_GROUPS]),
    ):
        widening = sum(1 for row in rows if row.direction == "widening")
        if rows:
            lines.append(f"- 🔐 **{title}: {widening} widening, {len(rows) - widening} narrowing** (table below).")
    if diff.iam_changes and not any(r.section != diff_tables.SECURITY_GROUPS for r in diff.security_rows):
        lines.append("- 🔐 **IAM changes** outside the statement table: review the IAM resources in the diff.")
    if diff.security_group_changes and not any(r.section == diff_tables.SECURITY_GROUPS for r in diff.security_rows):
        lines.append("- 🔐 **Security group changes** outside the rule table: review them in the diff.")
    return lines


def _machine_lines(machines: Sequence[MachineChange], detail: str) -> list[str]:
    """What changes on the machines: each decoded archive file by file, and the rest of the user data."""
    with_data = [m for m in machines if m.user_data is not None]
    if not with_data or detail == "none":
        return []
    lines = ["#### What changes on the machines", ""]
    for machine in with_data:
        assert machine.user_data is not None
        lines.append(f"**{machine.resource.name}** user data:")
        lines.append("")
        for archive in machine.user_data.archives:
            if archive.problem:
                lines.append(f"- archive `{archive.path}` {archive.problem}")
                continue
            lines.append(f"- archive `{archive.path}`: {len(archive.files)} file(s) differ")
            for file in archive.files:
                lines.append(f"  - `{file.path}` ({file.status})")
            if detail == "full":
                for file in archive.files:
                    if file.diff:
                        lines += ["", f"`{file.path}`", "", *_fenced("diff", _shorten(file.diff))]
        if machine.user_data.text_diff:
            lines.append("- the rest of the user data (outside archives):")
            if detail == "full":
                lines += ["", *_fenced("diff", _shorten(machine.user_data.text_diff))]
        lines.append("")
    return lines


def _shorten(lines: Sequence[str]) -> list[str]:
    if len(lines) <= MAX_FILE_DIFF_LINES:
        return list(lines)
    return [*lines[:MAX_FILE_DIFF_LINES], f"... ({len(lines) - MAX_FILE_DIFF_LINES} more lines in the job log)"]


def _fenced(language: str, lines: Sequence[str]) -> list[str]:
    longest_run = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return [fence + language, *lines, fence]


def _counts(resources: Sequence[ResourceChange]) -> str:
    added = sum(1 for change in resources if change.action == "add")
    removed = sum(1 for change in resources if change.action == "remove")
    replaced = sum(1 for change in resources if change.impact in ("replace", "may be replaced"))
    updated = sum(1 for change in resources if change.action == "update") - replaced
    return (
        f"Resources: **{added}** to add, **{updated}** to update, **{replaced}** to replace, **{removed}** to remove."
    )


def _resource_table(resources: Sequence[ResourceChange], limit: int) -> list[str]:
    if not resources:
        return []
    ordered = sorted(resources, key=lambda change: (not change.destructive, change.impact == "", change.path))
    rows = ["| | Resource | Type | Change |", "|---|---|---|---|"]
    for change in ordered[:limit]:
        flag = "🛑" if change.destructive else ("⚠️" if change.impact else "")
        rows.append(f"| {flag} | {change.name} | `{change.resource_type}` | {change.label} |")
    if len(ordered) > limit:
        rows.append(f"| | ... and {len(ordered) - limit} more (in the full diff) | | |")
    return rows


def _full_diff(text: str, room: int, context: RunContext) -> list[str]:
    """The collapsed full diff, long lines shortened, its tail dropped to fit ``room``."""
    lines = [_shorten_line(line) for line in text.splitlines()]
    where = f"the [job log]({context.run_url})" if context.run_url else "the job log"
    head = (
        f"<details><summary>Full diff ({len(lines)} lines; lines over {MAX_DIFF_LINE} characters shortened)</summary>"
    )
    probe = _fenced("text", lines)
    fence_open, fence_close = probe[0], probe[-1]
    frame = [head, "", fence_open, fence_close, "", "</details>"]
    cut_note = f"... (cut to fit a comment: {where} has the whole diff)"
    budget = room - github_length("\n".join(frame) + "\n") - github_length(cut_note) - 2
    if budget < 0:
        return [f"(The full diff does not fit in a comment: {where} has it.)"]
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = github_length(line) + 2
        if used + cost > budget:
            kept.append(cut_note)
            break
        kept.append(line)
        used += cost
    return [head, "", fence_open, *kept, fence_close, "", "</details>"]


def _shorten_line(line: str) -> str:
    if len(line) <= MAX_DIFF_LINE:
        return line
    keep = MAX_DIFF_LINE - 60
    return f"{line[:keep]} ... ({len(line) - keep} more characters)"


def write_comments(
    diffs: Sequence[StackDiff], decision: Decision, context: RunContext, out_dir: Path
) -> list[dict[str, object]]:
    """Writes ``<stack>.md`` per stack and ``summary.json``; returns the summary's comments."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, object]] = []
    for diff in diffs:
        verdict = decision.for_stack(diff.stack_name)
        path = out_dir / f"{diff.stack_name}.md"
        path.write_text(render_comment(diff, verdict, context))
        summary.append(
            {
                "stack": diff.stack_name,
                "marker": marker(diff.stack_name),
                "comment": str(path),
                "has_changes": diff.has_changes,
                "destructive": [change.logical_id for change in diff.destructive_changes],
                "blocking": [change.logical_id for change in verdict.blocking],
                "widening": [row.section for row in diff.security_rows if row.direction == "widening"],
                "machines_replaced": [m.resource.logical_id for m in machine_changes(diff)],
            }
        )
    _write_summary(out_dir, "ok", context, summary)
    return summary


def write_failure(context: RunContext, out_dir: Path) -> Path:
    """Writes the failed-diff comment and a summary that says the diff failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "diff-failed.md"
    path.write_text(render_failure(context))
    _write_summary(
        out_dir, "failed", context, [{"stack": FAILED_STACK, "marker": marker(FAILED_STACK), "comment": str(path)}]
    )
    return path


def _write_summary(out_dir: Path, status: str, context: RunContext, comments: list[dict[str, object]]) -> None:
    document = {"status": status, "head_sha": context.head_sha, "time": context.time.isoformat(), "comments": comments}
    (out_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alchemy_tools.cdk_diff_comment",
        description="Writes one pull-request comment per stack from `cdk diff --no-color` output; "
        "exits 1 when a destructive change is not acknowledged, 3 when the diff itself failed.",
    )
    parser.add_argument("diff_file", type=Path, help="the saved output of `cdk diff --no-color`")
    parser.add_argument("--out-dir", type=Path, required=True, help="where <stack>.md and summary.json go")
    parser.add_argument("--head-sha", required=True, help="the pull request's head commit, shown in every comment")
    parser.add_argument("--time", default="", help="ISO time of the run (default: now)")
    parser.add_argument("--run-url", default="", help="the workflow run, linked from the comment")
    parser.add_argument("--diff-status", type=int, default=0, help="exit status of `cdk diff`: non-zero = it failed")
    parser.add_argument("--pull-request", type=int, default=0, help="the pull request's number")
    parser.add_argument(
        "--acknowledgments",
        type=Path,
        default=None,
        help=f"the pull request's {ACKNOWLEDGMENTS_FILE} (at its head commit)",
    )
    parser.add_argument(
        "--allowed-destroy-types",
        default="",
        help="comma-separated resource types whose replacement or deletion is allowed",
    )
    args = parser.parse_args(argv)
    time = datetime.fromisoformat(args.time) if args.time else datetime.now(UTC)
    context = RunContext(args.head_sha, time, run_url=args.run_url)
    diffs = parse(args.diff_file.read_text()) if args.diff_file.exists() else []
    if args.diff_status != 0 or not diffs:
        path = write_failure(context, args.out_dir)
        reason = f"status {args.diff_status}" if args.diff_status else f"no `Stack ...` section in {args.diff_file}"
        print(f"error: cdk diff failed ({reason}); wrote {path}", file=sys.stderr)
        return 3
    acknowledged: frozenset[tuple[str, str]] = frozenset()
    if args.acknowledgments is not None and args.acknowledgments.exists():
        try:
            acknowledged = read_acknowledgments(args.acknowledgments.read_text(), pull_request=args.pull_request)
        except AcknowledgmentError as error:
            print(f"error: {args.acknowledgments}: {error}", file=sys.stderr)
            return 2
    policy = Policy(
        acknowledged=acknowledged,
        acknowledged_in=f"`{ACKNOWLEDGMENTS_FILE}` at {args.head_sha[:12]}",
        allowed_destroy_types=frozenset(t.strip() for t in args.allowed_destroy_types.split(",") if t.strip()),
    )
    decision = decide(diffs, policy)
    for entry in write_comments(diffs, decision, context, args.out_dir):
        state = "BLOCKED" if entry["blocking"] else ("changes" if entry["has_changes"] else "no changes")
        print(f"{entry['stack']}: {state} -> {entry['comment']}")
    return 1 if decision.failed else 0


if __name__ == "__main__":
    sys.exit(main())
