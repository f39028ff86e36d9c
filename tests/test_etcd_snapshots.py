"""etcd snapshots: written once by the nodes (no overwrite, multipart included), read only through the restore role."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.synth import synthesize

PREFIX_ARN_SUFFIX = "/alchemy/etcd/*"


@pytest.fixture(scope="module")
def template() -> Template:
    return synthesize().template


def bucket_id(template: Template) -> str:
    (key,) = [key for key in template.find_resources("AWS::S3::Bucket") if key.startswith("EtcdSnapshots")]
    return key


def snapshot_objects(template: Template) -> dict[str, Any]:
    return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id(template), "Arn"]}, PREFIX_ARN_SUFFIX]]}


def write_once_statement(template: Template) -> dict[str, Any]:
    (policy,) = [
        p
        for p in template.find_resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id(template)}
    ]
    (statement,) = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "EtcdSnapshotsAreWrittenOnce"
    ]
    return statement


def statements_of(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    (role_id,) = [key for key in template.find_resources("AWS::IAM::Role") if key.startswith(role_prefix)]
    return [
        statement
        for policy in template.find_resources("AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _condition_holds(operator: str, key: str, expected: str, context: dict[str, str]) -> bool:
    """IAM's rule for a key the request lacks: a positive operator fails, a negated one holds."""
    if key not in context:
        return operator.startswith("StringNot")
    if operator == "StringEquals":
        return context[key] == expected
    if operator == "StringNotEquals":
        return context[key] != expected
    if operator == "Bool":
        return context[key].lower() == expected.lower()
    raise AssertionError(f"operator {operator} is not modelled")


def applies(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """Whether every condition of ``statement`` holds for a request with this context (keys ANDed)."""
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, expected in keys.items()
    )


PUT_WITHOUT_HEADER = {"s3:ObjectCreationOperation": "true"}
PUT_IF_NEW = {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}
UPLOAD_PART = {"s3:ObjectCreationOperation": "false"}


def test_bucket_denies_every_principal_a_put_that_may_overwrite(template: Template) -> None:
    statement = write_once_statement(template)
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", {"AWS": "*"}, "s3:PutObject")
    assert statement["Resource"] == snapshot_objects(template)
    assert applies(statement, PUT_WITHOUT_HEADER)
    assert applies(statement, {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "some-etag"})


def test_bucket_lets_a_conditional_put_and_multipart_parts_through(template: Template) -> None:
    statement = write_once_statement(template)
    assert not applies(statement, PUT_IF_NEW)
    assert not applies(statement, UPLOAD_PART)


def test_node_may_put_a_snapshot_only_as_a_new_object_or_as_parts(template: Template) -> None:
    puts = [s for s in statements_of(template, "NodeGroupRole") if s["Action"] == "s3:PutObject"]
    assert {s["Sid"] for s in puts} == {"PutSnapshotsOnlyIfNew", "UploadSnapshotParts"}
    assert all(s["Resource"] == snapshot_objects(template) for s in puts)
    assert [any(applies(s, context) for s in puts) for context in (PUT_IF_NEW, UPLOAD_PART, PUT_WITHOUT_HEADER)] == [
        True,
        True,
        False,
    ]


def test_node_may_complete_multipart_uploads_to_the_kms_bucket_through_s3_only(template: Template) -> None:
    (statement,) = [s for s in statements_of(template, "NodeGroupRole") if s.get("Sid") == "EncryptSnapshotsThroughS3"]
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Resource"]["Fn::GetAtt"][0].startswith("EtcdSnapshotsKey")
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}
    }


def test_node_reads_no_snapshot(template: Template) -> None:
    """Nodes read one S3 object, their bundle in the bootstrap bucket; nothing of the snapshot bucket."""
    reads = [
        s
        for s in statements_of(template, "NodeGroupRole")
        if {"s3:GetObject", "s3:ListBucket"} & set([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert [json.dumps(s["Resource"]).count("EtcdSnapshots") for s in reads] == [0] * len(reads)
    assert all("cdk-hnb659fds-assets" in json.dumps(s["Resource"]) for s in reads)


def test_restore_role_is_for_the_accounts_operators(template: Template) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {
                    "Statement": [
                        Match.object_like({"Principal": {"AWS": Match.any_value()}, "Action": "sts:AssumeRole"})
                    ]
                }
            ),
            "Description": Match.string_like_regexp("etcd snapshots"),
        },
    )


def test_restore_role_lists_reads_and_decrypts_the_snapshot_prefix_only(template: Template) -> None:
    statements = {s["Sid"]: s for s in statements_of(template, "EtcdSnapshotRestoreRole")}
    assert set(statements) == {"ListSnapshots", "ReadSnapshots", "DecryptSnapshotsThroughS3"}
    assert statements["ListSnapshots"]["Condition"] == {"StringLike": {"s3:prefix": "alchemy/etcd/*"}}
    assert statements["ReadSnapshots"]["Action"] == "s3:GetObject"
    assert statements["ReadSnapshots"]["Resource"] == snapshot_objects(template)
    assert statements["DecryptSnapshotsThroughS3"]["Action"] == "kms:Decrypt"


def test_restore_role_is_an_output(template: Template) -> None:
    template.has_output("EtcdSnapshotRestoreRoleArn", {"Value": {"Fn::GetAtt": [Match.any_value(), "Arn"]}})
