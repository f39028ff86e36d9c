"""Which comments the workflow writes: only its own, one per stack, a failure over every stale one."""

from __future__ import annotations

from alchemy_tools.cdk_diff_comment import marker
from alchemy_tools.pr_comments import WORKFLOW_AUTHOR, Comment, Step, plan

ALCHEMY = marker("alchemy")
FAILED = marker("*")


def own(comment_id: int, first_line: str) -> Comment:
    return Comment(comment_id, WORKFLOW_AUTHOR, "Bot", f"{first_line}\nold text")


def test_the_first_run_posts_the_comment() -> None:
    assert plan([], [f"{ALCHEMY}\nnew"], failed=False) == [Step("post", None, f"{ALCHEMY}\nnew")]


def test_a_new_commit_updates_the_workflow_s_own_comment() -> None:
    assert plan([own(5, ALCHEMY)], [f"{ALCHEMY}\nnew"], failed=False) == [Step("patch", 5, f"{ALCHEMY}\nnew")]


def test_a_comment_by_someone_else_that_starts_with_the_marker_is_left_alone() -> None:
    impostor = Comment(9, "mallory", "User", f"{ALCHEMY}\n✅ nothing to see")
    assert plan([impostor], [f"{ALCHEMY}\nnew"], failed=False) == [Step("post", None, f"{ALCHEMY}\nnew")]


def test_a_user_named_like_the_bot_is_not_the_bot() -> None:
    lookalike = Comment(9, WORKFLOW_AUTHOR, "User", f"{ALCHEMY}\nold")
    assert plan([lookalike], [f"{ALCHEMY}\nnew"], failed=False) == [Step("post", None, f"{ALCHEMY}\nnew")]


def test_a_failed_diff_replaces_every_stale_comment_keeping_its_marker() -> None:
    steps = plan([own(5, ALCHEMY), own(6, marker("staging"))], [f"{FAILED}\nfailed"], failed=True)
    assert steps == [
        Step("patch", 5, f"{ALCHEMY}\nfailed"),
        Step("patch", 6, f"{marker('staging')}\nfailed"),
    ]


def test_a_failed_diff_without_earlier_comments_posts_the_failure() -> None:
    assert plan([], [f"{FAILED}\nfailed"], failed=True) == [Step("post", None, f"{FAILED}\nfailed")]


def test_after_a_failure_the_next_diff_deletes_the_failure_comment() -> None:
    steps = plan([own(7, FAILED)], [f"{ALCHEMY}\nnew"], failed=False)
    assert steps == [Step("post", None, f"{ALCHEMY}\nnew"), Step("delete", 7, "")]


def test_a_duplicate_own_comment_is_deleted() -> None:
    steps = plan([own(5, ALCHEMY), own(8, ALCHEMY)], [f"{ALCHEMY}\nnew"], failed=False)
    assert steps == [Step("patch", 5, f"{ALCHEMY}\nnew"), Step("delete", 8, "")]
