"""--format and -f on every verb that has them, as scripts use them: Go templates with docker's
placeholders, `table TEMPLATE` with docker's headers, `json`, and one-line errors."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def web(cli, busybox):
    started = cli("run", "-d", "--name", "web", "-l", "tier=front", "--network", "none", "busybox", "sleep", "300")
    assert started.code == 0, started.err
    yield started.out.strip()
    cli("rm", "-f", "web")


def test_ps_formats(cli, web):
    assert cli("ps", "--format", "{{.Names}}").out == "web\n"
    assert cli("ps", "--format", "{{.ID}}: {{.Image}} {{.State}}").out == f"{web[:12]}: busybox running\n"
    table = cli("ps", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Labels}}").out.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAMES", "LABELS"]
    assert table[1].split() == [web[:12], "web", "tier=front"]
    document = json.loads(cli("ps", "--format", "json").out)
    assert document["Names"] == "web" and document["State"] == "running"
    assert cli("ps", "--format", "{{.Names}} {{.Size}}").out.startswith("web 0B (virtual ")  # .Size computes sizes


def test_images_and_history_formats(cli, busybox):
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}").out == "busybox:latest\n"
    table = cli("images", "--format", "table {{.Repository}}\\t{{.Size}}").out.splitlines()
    assert table[0].split() == ["REPOSITORY", "SIZE"] and table[1].split()[0] == "busybox"
    assert json.loads(cli("images", "--format", "json").out)["Tag"] == "latest"
    rows = cli("history", "--format", "{{.ID}}|{{.CreatedBy}}", "busybox").out.splitlines()
    assert len(rows) == 1 and "|" in rows[0]


def test_inspect_templates(cli, web):
    out = cli(
        "inspect", "-f", '{{.Name}} {{.State.Running}} {{index .Config.Labels "tier"}} {{.Config.Labels.none}}', "web"
    )
    assert out.out == "/web true front <no value>\n"
    assert cli("container", "inspect", "--format", "{{json .Config.Labels}}", "web").out == '{"tier":"front"}\n'
    assert cli("image", "inspect", "-f", "{{.Os}} {{len .RootFS.Layers}}", "busybox").out == "linux 1\n"
    assert cli("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "none").out == "none null\n"
    both = cli("inspect", "-f", "{{.Id}}", "web", "busybox").out.splitlines()
    assert both[0] == web and both[1].startswith("sha256:")


def test_version_info_and_network_ls_templates(cli, busybox):
    assert cli("version", "-f", "{{.Server.Version}}").out == cli("--version").out.split()[2] + "\n"
    assert cli("info", "--format", "{{.Images}} {{.Driver}}").out == "1 overlay2\n"
    assert cli("network", "ls", "--format", "{{.Name}}").out.split() == ["bridge", "host", "none"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ps", "--format", "{{.Names"], "template parsing error: template: :1: unclosed action"),
        (["images", "--format", "{{.Nope}}"], 'executing "" at <.Nope>: can\'t evaluate field Nope'),
        (["inspect", "-f", "{{frob .}}", "busybox"], 'function "frob" not defined'),
    ],
)
def test_bad_templates_are_one_line(cli, busybox, args, message):
    done = cli(*args)
    lines = done.err.splitlines()
    assert done.code == 125 and len(lines) == 1 and lines[0].startswith("minirun: error: ") and message in lines[0], (
        done
    )


def test_ps_label_method_stats_and_df_formats(cli, web):
    assert cli("ps", "--format", '{{.Names}}={{.Label "tier"}}[{{.Label "none"}}]').out == "web=front[]\n"
    table = cli("ps", "--format", 'table {{.Names}}\\t{{.Label "tier"}}').out.splitlines()
    assert table[0].split() == ["NAMES", "LABEL"] and table[1].split() == ["web", "front"]
    assert cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}").out == "web 1\n"
    stats = cli("stats", "--no-stream", "--format", "table {{.Container}}\\t{{.MemPerc}}").out.splitlines()
    assert stats[0].split() == ["CONTAINER", "MEM", "%"] and stats[1].startswith(web[:12])
    df = cli("system", "df", "--format", "{{.Type}}={{.TotalCount}}").out.splitlines()
    assert df[:2] == ["Images=1", "Containers=1"]
    assert json.loads(cli("system", "df", "--format", "json").out.splitlines()[0])["Type"] == "Images"
