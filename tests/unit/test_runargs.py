"""run's option parsing and docker's Entrypoint/Cmd/Env rules, without root."""

from __future__ import annotations

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.errors import UsageError
from minirun.frontend.create import container_argv
from minirun.runtime.executable import merged_env


def test_options_stop_at_the_image_and_the_rest_is_the_command():
    opts = parse_run_args(["--rm", "-it", "--name", "web", "busybox", "echo", "-n", "--rm", "hi"])
    assert opts.rm and opts.interactive and opts.tty and opts.name == "web"
    assert opts.image == "busybox" and opts.command == ["echo", "-n", "--rm", "hi"]


def test_env_from_flags_files_and_host(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nA=1\nFROM_HOST\nMISSING\n")
    opts = parse_run_args(
        ["--env-file", str(env_file), "-e", "B=2", "-e", "HOSTVAR", "-e", "NOPE", "img"],
        environ={"FROM_HOST": "h", "HOSTVAR": "x"},
    )
    assert opts.env == ["A=1", "FROM_HOST=h", "B=2", "HOSTVAR=x"]


def test_volumes_and_tmpfs(tmp_path):
    opts = parse_run_args(
        ["-v", f"{tmp_path}:/data:ro", "-v", f"{tmp_path}:/rw/", "--tmpfs", "/scratch:size=1m", "img"]
    )
    assert [(m.type, m.source, m.target, m.readonly) for m in opts.volumes] == [
        ("bind", str(tmp_path), "/data", True),
        ("bind", str(tmp_path), "/rw", False),
    ]
    assert opts.tmpfs == ["/scratch:size=1m"]  # the options are kept, for the mount


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--bogus", "img"], "--bogus"),
        ([], "IMAGE"),
        (["-v", "/definitely/not/here:/x", "img"], "does not exist"),
        (["-v", "./relative:/x", "img"], "use absolute path"),
        (["-v", "/tmp:/x", "--mount", "type=tmpfs,dst=/x", "img"], "Duplicate mount point"),
        (["-v", "data:/x", "--tmpfs", "/x", "img"], "Duplicate mount point"),
        (["--mount", "type=bind,src=/tmp,dst=/proc/x", "img"], "inside /proc"),
        (["--volumes-from", "other:nocopy", "img"], "invalid mode"),
        (["-v", "/tmp:relative", "img"], "absolute"),
        (["-v", "/tmp:/x:rx", "img"], "invalid mode"),
        (["-w", "relative", "img"], "absolute path"),
        (["-h", "ab\n6.6.6.6 evil", "img"], "invalid hostname"),
        (["-h", "trail-", "img"], "invalid hostname"),
        (["-h", "a" * 65, "img"], "invalid hostname"),
        (["-h", "a..b", "img"], "invalid hostname"),
        (["-e", "=x", "img"], "invalid environment"),
        (["--env-file", "/no/such/file", "img"], "no such file"),
    ],
)
def test_bad_options_are_usage_errors(argv, needle):
    with pytest.raises(UsageError) as err:
        parse_run_args(argv)
    assert needle in err.value.message


def test_entrypoint_and_cmd_rules():
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    assert container_argv(image, parse_run_args(["img"])) == ["/entry", "default"]
    assert container_argv(image, parse_run_args(["img", "a", "b"])) == ["/entry", "a", "b"]
    # --entrypoint replaces the image's and drops its Cmd, as docker does
    assert container_argv(image, parse_run_args(["--entrypoint", "/bin/x", "img"])) == ["/bin/x"]
    assert container_argv(image, parse_run_args(["--entrypoint", "/bin/x", "img", "y"])) == ["/bin/x", "y"]
    assert container_argv(image, parse_run_args(["--entrypoint", "", "img", "ls"])) == ["ls"]
    assert container_argv({"Cmd": ["sh"]}, parse_run_args(["img"])) == ["sh"]
    with pytest.raises(UsageError):
        container_argv({}, parse_run_args(["img"]))


def test_env_merge_replaces_in_place():
    assert merged_env(["PATH=/bin", "A=1"], ["A=2", "B=3", "PATH=/x"]) == ["PATH=/x", "A=2", "B=3"]


def test_good_hostnames_pass():
    for name in ("box", "web-1", "a.b.example", "x" * 63):
        assert parse_run_args(["-h", name, "img"]).hostname == name


def test_labels_from_files_then_flags(tmp_path):
    from minirun.frontend.create import image_labels

    path = tmp_path / "labels"
    path.write_text("# a comment\n\ncom.example.a=1\ncom.example.b=from-file\n")
    opts = parse_run_args(["--label-file", str(path), "-l", "com.example.b=flag", "--label", "solo", "img"])
    assert opts.labels == {"com.example.a": "1", "com.example.b": "flag", "solo": ""}
    assert image_labels({"Labels": {"a": "1", "b": 2}}) == {"a": "1"}
    assert image_labels({"Labels": ["x"]}) == {}


@pytest.mark.parametrize(
    "args, needle", [(["-l", "=v", "img"], "empty key"), (["--label-file", "/nonexistent", "img"], "open /nonexistent")]
)
def test_bad_labels_are_usage_errors(args, needle):
    with pytest.raises(UsageError) as err:
        parse_run_args(args)
    assert needle in err.value.message
