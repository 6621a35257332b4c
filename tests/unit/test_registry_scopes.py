"""Bearer scopes: what we ask for and what the registry's challenge names become one scope per
resource, so a token request never carries `pull,push` and `push,pull` side by side."""

from minirun.distribution.registry import merge_scopes


def test_same_resource_merges_its_actions():
    assert merge_scopes(["repository:a/b:pull,push", "repository:a/b:push,pull"]) == ["repository:a/b:pull,push"]


def test_a_challenge_adds_actions_and_resources_in_order():
    assert merge_scopes(["repository:two:pull,push", "repository:one:pull", "repository:two:delete"]) == [
        "repository:two:delete,pull,push",
        "repository:one:pull",
    ]


def test_scopes_of_other_kinds_pass_through():
    assert merge_scopes(["registry:catalog:*"]) == ["registry:catalog:*"]
