"""The pull-request comment and the pass/fail decision, fed with real `cdk diff` output.

Each fixture in tests/fixtures/cdk_diff is what the pinned CLI printed (``--no-color``) against a
stack deployed to the local emulator; the file name says which settings change it shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alchemy_tools import cdk_diff_comment as comment
from tests.synth import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "cdk_diff"


def real_diff(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


def only_stack(name: str) -> comment.StackDiff:
    (diff,) = comment.parse(real_diff(name))
    return diff


def test_stack_name_is_the_cloudformation_name_in_the_header() -> None:
    assert only_stack("update_node_count").stack_name == "alchemy"


def test_a_settings_change_lists_the_one_resource_it_updates() -> None:
    changes = only_stack("update_node_count").resources
    assert [(c.action, c.resource_type, c.logical_id, c.impact) for c in changes] == [
        ("update", "AWS::AutoScaling::AutoScalingGroup", "NodeGroupASGDABF9156", "")
    ]


def test_the_construct_path_is_kept_apart_from_the_logical_id() -> None:
    (change,) = only_stack("update_node_count").resources
    assert change.path == "NodeGroup/Resource/ASG"


def test_an_in_place_update_is_not_destructive() -> None:
    assert only_stack("update_node_count").destructive_changes == ()


def test_a_replaced_vpc_is_destructive() -> None:
    destructive = only_stack("replace_vpc_cidr").destructive_changes
    assert ("AWS::EC2::VPC", "replace") in {(c.resource_type, c.impact) for c in destructive}


def test_may_be_replaced_is_shown_but_not_counted_as_destructive() -> None:
    changes = only_stack("replace_vpc_cidr").resources
    maybe = [c for c in changes if c.impact == "may be replaced"]
    assert maybe
    assert not any(c.destructive for c in maybe)


def test_removed_resources_are_destructive() -> None:
    removed = [c for c in only_stack("remove_nat_per_az").resources if c.action == "remove"]
    assert removed
    assert all(c.impact == "destroy" and c.destructive for c in removed)


def test_outputs_and_parameters_are_not_taken_for_resources() -> None:
    types = {c.resource_type for c in only_stack("remove_nat_per_az").resources}
    assert all(t.startswith("AWS::") for t in types)


def test_a_diff_without_differences_has_no_changes() -> None:
    diff = only_stack("no_change")
    assert (diff.has_changes, diff.resources) == (False, ())


def test_security_group_table_flags_security_group_changes() -> None:
    assert only_stack("replace_vpc_cidr").security_group_changes


def test_iam_statement_table_flags_iam_changes() -> None:
    assert only_stack("account_bound").iam_changes


def test_a_node_count_change_touches_neither_iam_nor_security_groups() -> None:
    diff = only_stack("update_node_count")
    assert (diff.iam_changes, diff.security_group_changes) == (False, False)


def test_a_new_stack_flags_its_iam_roles() -> None:
    diff = only_stack("new_stack")
    assert diff.stack_name == "staging"
    assert diff.iam_changes


def test_several_stacks_give_one_diff_each_in_order() -> None:
    diffs = comment.parse(real_diff("update_node_count") + real_diff("new_stack"))
    assert [d.stack_name for d in diffs] == ["alchemy", "staging"]


def test_colour_codes_do_not_hide_changes() -> None:
    coloured = real_diff("replace_vpc_cidr").replace(" replace\n", " \x1b[31;1mreplace\x1b[22;39m\n")
    (diff,) = comment.parse(coloured)
    assert len(diff.destructive_changes) == len(only_stack("replace_vpc_cidr").destructive_changes)


def test_text_that_is_not_a_diff_gives_no_stacks() -> None:
    assert comment.parse("Hold on while we create a read-only change set\n") == []


def test_destructive_changes_fail_by_default() -> None:
    decision = comment.decide([only_stack("replace_vpc_cidr")], comment.Policy())
    assert decision.failed


def test_the_allow_label_lets_destructive_changes_pass() -> None:
    decision = comment.decide([only_stack("replace_vpc_cidr")], comment.Policy(allow_destructive=True))
    assert not decision.failed


def test_allowed_types_pass_only_those_types() -> None:
    policy = comment.Policy(allowed_destroy_types=frozenset({"AWS::EC2::VPC"}))
    verdict = comment.decide([only_stack("replace_vpc_cidr")], policy).for_stack("alchemy")
    assert "AWS::EC2::VPC" not in {c.resource_type for c in verdict.blocking}
    assert verdict.failed


def test_allowing_every_destroyed_type_passes() -> None:
    diff = only_stack("remove_nat_per_az")
    policy = comment.Policy(allowed_destroy_types=frozenset(c.resource_type for c in diff.destructive_changes))
    assert not comment.decide([diff], policy).failed


def test_only_the_stack_with_destructive_changes_is_blocked() -> None:
    diffs = comment.parse(real_diff("replace_vpc_cidr") + real_diff("new_stack"))
    decision = comment.decide(diffs, comment.Policy())
    assert [v.failed for v in decision.verdicts] == [True, False]


def test_the_comment_starts_with_the_stack_marker() -> None:
    diff = only_stack("update_node_count")
    text = comment.render_comment(diff, comment.decide([diff], comment.Policy()).for_stack("alchemy"))
    assert text.splitlines()[0] == "<!-- cdk-diff-comment stack=alchemy -->"


def render(name: str, policy: comment.Policy | None = None) -> str:
    diff = only_stack(name)
    return comment.render_comment(diff, comment.decide([diff], policy or comment.Policy()).for_stack(diff.stack_name))


def test_a_blocked_comment_says_how_to_allow_it() -> None:
    assert "add the `allow-destructive-changes` label" in render("replace_vpc_cidr")


def test_an_allowed_comment_says_why() -> None:
    assert "allowed** (label `allow-destructive-changes`)" in render("replace_vpc_cidr", comment.Policy(True))


def test_the_comment_flags_iam_changes() -> None:
    assert "**IAM changes**" in render("account_bound")


def test_the_comment_flags_security_group_changes() -> None:
    assert "**Security group changes**" in render("replace_vpc_cidr")


def test_the_comment_lists_destructive_resources_first() -> None:
    table = [line for line in render("remove_nat_per_az").splitlines() if line.startswith("| ")]
    assert table[2].startswith("| 🛑 |")


def test_the_comment_carries_the_full_diff() -> None:
    assert "[~] AWS::AutoScaling::AutoScalingGroup NodeGroup/Resource/ASG" in render("update_node_count")


def test_a_comment_without_differences_says_so() -> None:
    assert "No differences from the deployed stack" in render("no_change")


def test_a_huge_diff_is_cut_to_fit_a_github_comment() -> None:
    diff = only_stack("new_stack")
    huge = comment.StackDiff(diff.stack_name, diff.display_name, diff.text * 40, diff.resources, diff.sections)
    text = comment.render_comment(huge, comment.decide([huge], comment.Policy()).for_stack("staging"))
    assert len(text) <= comment.MAX_COMMENT_CHARS
    assert "cut to fit a comment" in text


def test_command_line_fails_on_a_destructive_change(tmp_path: Path) -> None:
    status = comment.main([str(FIXTURES / "replace_vpc_cidr.txt"), "--out-dir", str(tmp_path)])
    assert status == 1


def test_command_line_passes_a_destructive_change_with_the_label(tmp_path: Path) -> None:
    args = [str(FIXTURES / "replace_vpc_cidr.txt"), "--out-dir", str(tmp_path), "--allow-destructive", "true"]
    assert comment.main(args) == 0


def test_command_line_writes_one_comment_per_stack(tmp_path: Path) -> None:
    both = tmp_path / "both.txt"
    both.write_text(real_diff("update_node_count") + real_diff("new_stack"))
    comment.main([str(both), "--out-dir", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.md")) == ["alchemy.md", "staging.md"]


def test_command_line_summary_names_blocking_resources(tmp_path: Path) -> None:
    comment.main([str(FIXTURES / "remove_nat_per_az.txt"), "--out-dir", str(tmp_path)])
    (entry,) = json.loads((tmp_path / "summary.json").read_text())
    assert "NetworkPublicSubnet2NatInstance8C2BD9ED" in entry["blocking"]


def test_command_line_refuses_text_that_is_not_a_diff(tmp_path: Path) -> None:
    not_a_diff = tmp_path / "empty.txt"
    not_a_diff.write_text("Error: credentials expired\n")
    assert comment.main([str(not_a_diff), "--out-dir", str(tmp_path)]) == 2


def test_unknown_stack_has_no_verdict() -> None:
    decision = comment.decide([only_stack("update_node_count")], comment.Policy())
    with pytest.raises(KeyError, match="no verdict for stack 'other'"):
        decision.for_stack("other")
