"""The pull-request comment and the pass/fail decision, fed with real `cdk diff` output.

Each fixture in tests/fixtures/cdk_diff is what the pinned CLI printed (``--no-color``) against a
stack deployed to the local emulator; the file name says which settings change it shows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alchemy_tools import cdk_diff_comment as comment
from alchemy_tools import diff_tables
from tests.synth import ROOT

HEAD = "0f1e2d3c" * 5
"""A head commit id (built, so the secret scan reads no long hex literal)."""
CONTEXT = comment.RunContext(HEAD, datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC))

FIXTURES = ROOT / "tests" / "fixtures" / "cdk_diff"


def real_diff(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


def only_stack(name: str) -> comment.StackDiff:
    (diff,) = comment.parse(real_diff(name))
    return diff


def test_stack_name_is_the_cloudformation_name_in_the_header() -> None:
    assert only_stack("update_node_count").stack_name == "alchemy"


def test_a_node_count_change_updates_the_launch_template_and_the_group() -> None:
    changes = only_stack("update_node_count").resources
    assert [(c.action, c.resource_type, c.logical_id, c.impact) for c in changes] == [
        ("update", "AWS::EC2::LaunchTemplate", "NodeGroupLaunchTemplate9B87E8BF", ""),
        ("update", "AWS::AutoScaling::AutoScalingGroup", "NodeGroupASGDABF9156", ""),
    ]


def test_the_construct_path_is_kept_apart_from_the_logical_id() -> None:
    changes = only_stack("update_node_count").resources
    assert changes[1].path == "NodeGroup/Resource/ASG"


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


def acknowledging_all(diff: comment.StackDiff) -> comment.Policy:
    return comment.Policy(acknowledged=frozenset((diff.stack_name, c.logical_id) for c in diff.destructive_changes))


def test_acknowledging_every_destructive_change_lets_it_pass() -> None:
    diff = only_stack("replace_vpc_cidr")
    assert not comment.decide([diff], acknowledging_all(diff)).failed


def test_an_acknowledgment_covers_only_the_resource_it_names() -> None:
    diff = only_stack("replace_vpc_cidr")
    (vpc,) = [c for c in diff.destructive_changes if c.resource_type == "AWS::EC2::VPC"]
    verdict = comment.decide([diff], comment.Policy(acknowledged=frozenset({("alchemy", vpc.logical_id)})))
    blocking = verdict.for_stack("alchemy").blocking
    assert (vpc in blocking, len(blocking)) == (False, len(diff.destructive_changes) - 1)


def test_acknowledgments_for_another_pull_request_are_ignored() -> None:
    text = "41 alchemy NetworkVpc  # an older pull request\n42 alchemy NetworkSubnet  # this one\n"
    assert comment.read_acknowledgments(text, pull_request=42) == frozenset({("alchemy", "NetworkSubnet")})


def test_acknowledgment_comments_and_blank_lines_are_skipped() -> None:
    text = "# <pull request> <stack> <logical id>\n\n   \n"
    assert comment.read_acknowledgments(text, pull_request=1) == frozenset()


def test_a_malformed_acknowledgment_names_the_line() -> None:
    with pytest.raises(
        comment.AcknowledgmentError, match="invalid acknowledgment on line 2: 'alchemy NetworkVpc': must"
    ):
        comment.read_acknowledgments("# header\nalchemy NetworkVpc\n", pull_request=1)


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
    assert render("update_node_count").splitlines()[0] == "<!-- cdk-diff-comment stack=alchemy -->"


def render(name: str, policy: comment.Policy | None = None) -> str:
    diff = only_stack(name)
    verdict = comment.decide([diff], policy or comment.Policy()).for_stack(diff.stack_name)
    return comment.render_comment(diff, verdict, CONTEXT)


def test_a_blocked_comment_says_how_to_acknowledge_it() -> None:
    assert f"`<pull request> alchemy <logical id>  # why` in `{comment.ACKNOWLEDGMENTS_FILE}`" in render(
        "replace_vpc_cidr"
    )


def test_an_acknowledged_comment_says_where_and_at_which_commit() -> None:
    diff = only_stack("replace_vpc_cidr")
    policy = comment.Policy(acknowledged=acknowledging_all(diff).acknowledged, acknowledged_in="the file at 0f1e2d3c")
    assert "allowed** (acknowledged in the file at 0f1e2d3c)" in render("replace_vpc_cidr", policy)


def test_every_comment_names_the_head_commit_and_time() -> None:
    assert f"<sub>Commit {HEAD} · 2026-11-26 01:02:03 UTC</sub>" in render("no_change")


def test_the_comment_counts_iam_widening() -> None:
    assert "🔐 **IAM: 1 widening, 0 narrowing**" in render("edited_template_iam_widening")


def test_the_iam_table_is_outside_the_collapsed_diff() -> None:
    text = render("edited_template_iam_widening")
    row = "| 🔺 widening | `*` | `Allow` | `iam:PassRole`<br>`s3:GetObject` | `AWS:${NodeGroup/Role}` |  |"
    assert text.index(row) < text.index("<details>")


def test_security_group_rules_are_marked_widening_and_narrowing() -> None:
    directions = [(row.cell("Peer"), row.direction) for row in only_stack("narrow_ingress_cidrs").security_rows]
    assert directions == [
        ("203.0.113.0/24", "widening"),
        ("198.51.100.0/24", "widening"),
        ("Everyone (IPv4)", "narrowing"),
    ]


def test_an_added_deny_statement_narrows() -> None:
    row = diff_tables.TableRow(diff_tables.IAM_STATEMENTS, "+", (("Effect", "Deny"),))
    assert row.direction == "narrowing"


def test_a_multi_line_iam_row_is_one_row() -> None:
    (row,) = only_stack("edited_template_iam_widening").security_rows
    assert row.cell("Action") == "iam:PassRole\ns3:GetObject"


def test_the_comment_flags_security_group_changes() -> None:
    assert "🔐 **Security groups: 1 widening, 1 narrowing**" in render("replace_vpc_cidr")


# A node_count change edits the node bundle inside the user data: the comment decodes it.


def test_a_node_count_change_says_every_node_will_be_replaced() -> None:
    assert "**Every node will be replaced, one at a time**" in render("update_node_count")


def test_the_node_bundle_change_is_shown_file_by_file() -> None:
    (machine,) = comment.machine_changes(only_stack("update_node_count"))
    assert machine.user_data is not None
    (archive,) = machine.user_data.archives
    assert [(f.path, f.status) for f in archive.files] == [("/etc/alchemy/rabbitmq/rabbitmq.conf", "changed")]


def test_the_bundle_file_diff_shows_the_changed_line() -> None:
    (machine,) = comment.machine_changes(only_stack("update_node_count"))
    assert machine.user_data is not None
    diff = machine.user_data.archives[0].files[0].diff
    assert [line for line in diff if line[:1] in "+-"] == [
        "-cluster_formation.target_cluster_size_hint = 3",
        "+cluster_formation.target_cluster_size_hint = 4",
    ]


def test_the_comment_shows_the_bundle_diff_before_the_full_diff() -> None:
    text = render("update_node_count")
    assert text.index("+cluster_formation.target_cluster_size_hint = 4") < text.index("<details>")


def test_the_long_base64_lines_are_shortened_in_the_full_diff() -> None:
    assert all(len(line) < 400 for line in render("update_node_count").splitlines())


def test_a_nat_image_change_says_the_nat_instance_will_be_replaced() -> None:
    assert "🔁 **The NAT instance will be replaced** (new image and user data)" in render(
        "edited_template_nat_image_and_user_data"
    )


def test_the_nat_script_change_is_shown_line_by_line() -> None:
    (machine,) = comment.machine_changes(only_stack("edited_template_nat_image_and_user_data"))
    assert machine.user_data is not None
    added = [line for line in machine.user_data.text_diff if line.startswith("+")]
    assert added == ["+sudo sysctl -w net.netfilter.nf_conntrack_max=262144"]


def test_an_update_without_machines_names_none() -> None:
    assert comment.machine_changes(only_stack("narrow_ingress_cidrs")) == []


def test_the_comment_lists_destructive_resources_first() -> None:
    table = [line for line in render("remove_nat_per_az").splitlines() if line.startswith("| ")]
    assert table[2].startswith("| 🛑 |")


def test_the_comment_carries_the_full_diff() -> None:
    assert "[~] AWS::AutoScaling::AutoScalingGroup NodeGroup/Resource/ASG" in render("update_node_count")


def test_a_comment_without_differences_says_so() -> None:
    assert "No differences from the deployed stack" in render("no_change")


def huge(name: str, times: int) -> comment.StackDiff:
    diff = only_stack(name)
    return comment.StackDiff(
        diff.stack_name,
        diff.display_name,
        "\n".join([diff.text] * times),
        diff.resources,
        diff.sections,
        security_rows=diff.security_rows,
    )


def render_diff(diff: comment.StackDiff) -> str:
    return comment.render_comment(diff, comment.decide([diff], comment.Policy()).for_stack(diff.stack_name), CONTEXT)


def test_a_huge_diff_is_cut_to_github_s_limit() -> None:
    assert comment.github_length(render_diff(huge("new_stack", 40))) <= comment.GITHUB_COMMENT_LIMIT


def test_a_cut_comment_says_where_the_whole_diff_is() -> None:
    assert "cut to fit a comment: the job log has the whole diff" in render_diff(huge("new_stack", 40))


def test_a_cut_comment_keeps_the_verdict_and_the_tables() -> None:
    text = render_diff(huge("account_bound", 60))
    assert ("🛑 **9 destructive change(s)**" in text, "| 🔺 widening |" in text) == (True, True)


def test_the_full_diff_text_is_cut_first() -> None:
    text = render_diff(huge("update_node_count", 400))
    assert ("+cluster_formation.target_cluster_size_hint = 4" in text, "cut to fit a comment" in text) == (True, True)


def test_github_length_counts_an_emoji_as_two_and_a_newline_as_two() -> None:
    assert comment.github_length("🔺\n") == 4


def test_the_failure_comment_says_the_diff_failed_for_the_head_commit() -> None:
    text = comment.render_failure(CONTEXT)
    assert ("**`cdk diff` failed for this commit**" in text, f"Commit {HEAD}" in text) == (True, True)


def cli(diff_file: Path, out_dir: Path, *extra: str) -> int:
    return comment.main([str(diff_file), "--out-dir", str(out_dir), "--head-sha", HEAD, *extra])


def test_command_line_fails_on_a_destructive_change(tmp_path: Path) -> None:
    assert cli(FIXTURES / "replace_vpc_cidr.txt", tmp_path) == 1


def test_command_line_passes_a_change_acknowledged_for_this_pull_request(tmp_path: Path) -> None:
    diff = only_stack("remove_nat_per_az")
    acknowledgments = tmp_path / "ack.txt"
    acknowledgments.write_text("".join(f"7 alchemy {c.logical_id}  # fewer NATs\n" for c in diff.destructive_changes))
    extra = ("--pull-request", "7", "--acknowledgments", str(acknowledgments))
    assert cli(FIXTURES / "remove_nat_per_az.txt", tmp_path / "out", *extra) == 0


def test_command_line_writes_one_comment_per_stack(tmp_path: Path) -> None:
    both = tmp_path / "both.txt"
    both.write_text(real_diff("update_node_count") + real_diff("new_stack"))
    cli(both, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.md")) == ["alchemy.md", "staging.md"]


def test_command_line_summary_names_blocking_resources(tmp_path: Path) -> None:
    cli(FIXTURES / "remove_nat_per_az.txt", tmp_path)
    (entry,) = json.loads((tmp_path / "summary.json").read_text())["comments"]
    assert "NetworkPublicSubnet2NatInstance8C2BD9ED" in entry["blocking"]


def test_command_line_writes_a_failure_comment_when_the_diff_failed(tmp_path: Path) -> None:
    status = cli(FIXTURES / "update_node_count.txt", tmp_path, "--diff-status", "1")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (status, summary["status"], summary["head_sha"]) == (3, "failed", HEAD)


def test_command_line_treats_text_that_is_not_a_diff_as_a_failed_diff(tmp_path: Path) -> None:
    not_a_diff = tmp_path / "empty.txt"
    not_a_diff.write_text("Error: credentials expired\n")
    assert cli(not_a_diff, tmp_path / "out") == 3


def test_unknown_stack_has_no_verdict() -> None:
    decision = comment.decide([only_stack("update_node_count")], comment.Policy())
    with pytest.raises(KeyError, match="no verdict for stack 'other'"):
        decision.for_stack("other")
