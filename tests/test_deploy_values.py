"""The deploy values parameter: one SSM String parameter of NAME=value lines, read by the nodes alone."""

from __future__ import annotations

import re

import pytest
from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.assertions import Template

from alchemy_constructs.deploy_values import OTHER_VALUE_LENGTH, STANDARD_TIER_LIMIT, DeployValues, longest_length
from tests.synth import bare_app


def deploy_values(stack: Stack, **values: str) -> DeployValues:
    return DeployValues(stack, "DeployValues", values=values)


def test_the_parameter_holds_one_line_per_value_in_order() -> None:
    stack = Stack(bare_app())
    deploy_values(stack, B="2", A="1")
    (parameter,) = Template.from_stack(stack).find_resources("AWS::SSM::Parameter").values()
    assert (parameter["Properties"]["Type"], parameter["Properties"]["Value"]) == ("String", "B=2\nA=1\n")


def test_the_parameter_is_of_the_standard_tier() -> None:
    stack = Stack(bare_app())
    deploy_values(stack, A="1")
    (parameter,) = Template.from_stack(stack).find_resources("AWS::SSM::Parameter").values()
    assert parameter["Properties"]["Tier"] == "Standard"


def test_grant_read_allows_get_parameter_on_this_parameter_only() -> None:
    stack = Stack(bare_app())
    values = deploy_values(stack, A="1")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
    values.grant_read(role)
    (policy,) = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "ssm:GetParameter"
    assert statement["Resource"]["Fn::Join"][1][-2:] == [":parameter/", {"Ref": "DeployValuesParameterF60E919A"}]


def test_the_read_statement_is_the_same_right() -> None:
    stack = Stack(bare_app())
    values = deploy_values(stack, A="1")
    statement = stack.resolve(values.read_statement().to_statement_json())
    assert (statement["Action"], statement["Resource"]["Fn::Join"][1][-1]) == (
        "ssm:GetParameter",
        {"Ref": "DeployValuesParameterF60E919A"},
    )


def digest(**values: str) -> str:
    stack = Stack(bare_app())
    return str(stack.resolve(deploy_values(stack, **values).digest))


def test_the_digest_is_128_bits_of_a_sha256_that_stays_for_the_same_values() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", digest(A="1"))
    assert digest(A="1") == digest(A="1")


def test_the_digest_changes_with_any_value() -> None:
    assert digest(A="1") != digest(A="2")


def test_the_digest_follows_the_unresolved_value_not_the_deployed_one() -> None:
    """A reference is hashed as the reference: the digest is known at synth."""
    stack = Stack(bare_app())
    secret = secretsmanager.Secret(stack, "Secret")
    values = DeployValues(stack, "DeployValues", values={"A": secret.secret_arn})
    assert re.fullmatch(r"[0-9a-f]{32}", str(stack.resolve(values.digest)))


def test_a_name_that_is_not_a_variable_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^DeployValues name 'a-b' must be upper case letters, digits and _$"):
        deploy_values(Stack(bare_app()), **{"a-b": "1"})


def test_no_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^DeployValues values must name at least one value"):
        deploy_values(Stack(bare_app()))


def test_a_value_over_two_lines_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^DeployValues A: the value must be one line; received 'x\\ny'$"):
        deploy_values(Stack(bare_app()), A="x\ny")


def test_the_longest_length_counts_pseudo_parameters_at_their_longest_and_references_as_the_stand_in() -> None:
    resolved = {"Fn::Join": ["", ["a=", {"Ref": "AWS::Region"}, ":", {"Ref": "Bucket"}]]}
    assert longest_length(resolved) == 2 + 14 + 1 + OTHER_VALUE_LENGTH


def test_the_longest_length_of_a_sub_counts_its_pseudo_parameters() -> None:
    assert longest_length({"Fn::Sub": "x-${AWS::AccountId}-${AWS::Region}"}) == 2 + 12 + 1 + 14


def test_values_too_long_for_a_standard_parameter_fail_the_synth_saying_how_many_services_fit() -> None:
    app = bare_app()
    stack = Stack(app, "Stack")
    secrets = [secretsmanager.Secret(stack, f"Secret{number}").secret_arn for number in range(30)]
    DeployValues(
        stack,
        "DeployValues",
        values={
            "REGION": Aws.REGION,
            "SERVICE_SECRETS": " ".join(f"service{number}={arn}" for number, arn in enumerate(secrets)),
        },
        growing_entry="SERVICE_SECRETS",
    )
    with pytest.raises(
        RuntimeError,
        match=(
            rf"DeployValues Stack/DeployValues: the value can be \d+ bytes once deployed, over the "
            rf"{STANDARD_TIER_LIMIT} bytes of a standard SSM parameter; each service adds about 1\d\d bytes "
            r"\(SERVICE_SECRETS\): 2\d fit, 30 given"
        ),
    ):
        app.synth()


def test_the_stacks_deploy_values_fit_with_room_for_more_services() -> None:
    from tests.synth import synthesize

    (values,) = [c for c in synthesize().stack.node.find_all() if isinstance(c, DeployValues)]
    print(f"\ndeploy values: {values.longest_size()} bytes at their longest (limit {STANDARD_TIER_LIMIT})")
    assert values.size_problem() is None
