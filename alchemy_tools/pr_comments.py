"""Posts the diff comments on the pull request, updating only the workflow's own earlier comments.

The workflow's job reads the pull request's comments, keeps those written by its own identity
(``github-actions[bot]`` for the job's token) that start with a cdk-diff marker, and then:

- after a diff: updates the comment of each stack (or posts it), and deletes its own marker
  comments for stacks no longer in the diff (the "diff failed" comment of an earlier run);
- after a failed diff: replaces every one of its own marker comments with the failure notice,
  so no comment written for an earlier commit stays up looking current; posts one if none.

A comment that merely starts with the marker but was written by anyone else is never touched.
:func:`plan` decides; :func:`main` reads and writes through the GitHub CLI (``gh api``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alchemy_tools.cdk_diff_comment import MARKER_PREFIX

WORKFLOW_AUTHOR = "github-actions[bot]"
"""Login of the identity behind a workflow's ``GITHUB_TOKEN``."""


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    author_type: str
    body: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Comment:
        user = data.get("user") or {}
        return cls(int(data["id"]), str(user.get("login", "")), str(user.get("type", "")), str(data.get("body", "")))

    @property
    def marker(self) -> str:
        first = self.body.split("\n", 1)[0].strip()
        return first if first.startswith(MARKER_PREFIX) else ""


@dataclass(frozen=True)
class Step:
    """One write: ``post`` a new comment, ``patch`` or ``delete`` an existing one (by id)."""

    verb: Literal["post", "patch", "delete"]
    comment_id: int | None
    body: str


def own_comments(comments: Sequence[Comment], author: str) -> list[Comment]:
    """The marker comments written by ``author``, a bot: the only ones this module may change."""
    return [c for c in comments if c.author == author and c.author_type == "Bot" and c.marker]


def plan(
    comments: Sequence[Comment], new_bodies: Sequence[str], *, failed: bool, author: str = WORKFLOW_AUTHOR
) -> list[Step]:
    """The writes that leave exactly the new comments up, touching only ``author``'s own."""
    mine = own_comments(comments, author)
    if failed:
        (failure,) = new_bodies
        if not mine:
            return [Step("post", None, failure)]
        # Each stale comment keeps its own marker, so the next good run finds and updates it.
        return [Step("patch", c.id, _with_marker(failure, c.marker)) for c in mine]
    steps = []
    by_marker: dict[str, Comment] = {}
    for comment in mine:
        by_marker.setdefault(comment.marker, comment)
    wanted = set()
    for body in new_bodies:
        first = body.split("\n", 1)[0].strip()
        wanted.add(first)
        existing = by_marker.get(first)
        steps.append(Step("post", None, body) if existing is None else Step("patch", existing.id, body))
    steps += [Step("delete", c.id, "") for c in mine if c.marker not in wanted or by_marker[c.marker].id != c.id]
    return steps


def _with_marker(body: str, new_marker: str) -> str:
    rest = body.split("\n", 1)[1] if "\n" in body else ""
    return f"{new_marker}\n{rest}"


def _gh(*args: str, body: str | None = None) -> str:
    command = ["gh", "api", *args]
    if body is not None:
        command += ["--input", "-"]
    done = subprocess.run(
        command,
        input=json.dumps({"body": body}) if body is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gh api {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alchemy_tools.pr_comments", description=__doc__)
    parser.add_argument("summary", type=Path, help="summary.json written by alchemy_tools.cdk_diff_comment")
    parser.add_argument("--repo", required=True, help="owner/name")
    parser.add_argument("--pull-request", type=int, required=True)
    parser.add_argument("--author", default=WORKFLOW_AUTHOR, help="login of the workflow's own identity")
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    bodies = [Path(entry["comment"]).read_text() for entry in summary["comments"]]
    pages = json.loads(_gh("--paginate", "--slurp", f"repos/{args.repo}/issues/{args.pull_request}/comments"))
    comments = [Comment.from_api(item) for page in pages for item in page]
    for step in plan(comments, bodies, failed=summary["status"] == "failed", author=args.author):
        if step.verb == "post":
            _gh("--method", "POST", f"repos/{args.repo}/issues/{args.pull_request}/comments", body=step.body)
        elif step.verb == "patch":
            _gh("--method", "PATCH", f"repos/{args.repo}/issues/comments/{step.comment_id}", body=step.body)
        else:
            _gh("--method", "DELETE", f"repos/{args.repo}/issues/comments/{step.comment_id}")
        print(f"{step.verb} {step.comment_id or ''}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
