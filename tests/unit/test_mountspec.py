"""-v, --mount and --volumes-from as docker parses them, the local driver's names and options,
and how a new container's mounts resolve (plan_mounts), without root."""

from __future__ import annotations

import pytest

from minirun.containers.mounts import check_options, plan_mounts
from minirun.containers.mountspec import parse_mount, parse_volume, parse_volumes_from, valid_mode
from minirun.errors import UsageError
from minirun.store import Store
from minirun.store.volumes import ANONYMOUS_LABEL, VolumeStore, validate_name


def fields(m):
    return (m.type, m.source, m.target, m.readonly, m.mode, m.nocopy)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("/data", ("volume", "", "/data", False, "", False)),
        ("/data/", ("volume", "", "/data", False, "", False)),
        ("db:/var/lib/db", ("volume", "db", "/var/lib/db", False, "", False)),
        ("db:/d:ro,nocopy", ("volume", "db", "/d", True, "ro,nocopy", True)),
        ("db:/d:rw,z", ("volume", "db", "/d", False, "rw,z", False)),
        ("/tmp:/host:ro", ("bind", "/tmp", "/host", True, "ro", False)),
        ("/tmp/:/host//x:rprivate,cached", ("bind", "/tmp", "/host/x", False, "rprivate,cached", False)),
    ],
)
def test_volume_specs(spec, expected):
    assert fields(parse_volume(spec)) == expected


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("", "invalid volume specification: ''"),
        (":/x", "invalid volume specification"),
        ("/data:ro", "invalid volume specification: '/data:ro'"),  # an anonymous volume takes no mode
        ("a:/b:ro:x", "invalid volume specification"),
        ("db:/x:rx", "invalid mode: rx"),
        ("db:/x:ro,rw", "invalid mode: ro,rw"),  # one of each kind
        ("db:relative", "mount path must be absolute"),
        ("db:/", "destination can't be '/'"),
        ("x:/d", "volume name is too short"),
        ("-db:/d", "includes invalid characters"),
        ("d/b:/d", "includes invalid characters"),
        ("db:/d:shared", "field BindOptions must not be specified"),
        ("/tmp:/d:rshared", "propagation rshared is not supported"),
        ("/definitely/not/here:/d", "bind source path does not exist: /definitely/not/here"),
    ],
)
def test_bad_volume_specs(spec, needle):
    with pytest.raises(UsageError) as err:
        parse_volume(spec)
    assert needle in err.value.message


def test_mount_specs(tmp_path):
    vol = parse_mount("type=volume,source=db,target=/d,readonly,volume-nocopy,volume-label=a=b")
    assert fields(vol) == ("volume", "db", "/d", True, "", True) and vol.volume_labels == {"a": "b"}
    assert fields(parse_mount("dst=/d")) == ("volume", "", "/d", False, "", False)  # volume is the default type
    opts = parse_mount('dst=/d,volume-opt=type=tmpfs,volume-opt=device=tmpfs,"volume-opt=o=size=1m,uid=5"')
    assert opts.volume_options == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=5"}
    bind = parse_mount(f"type=bind,src={tmp_path},destination=/h,ro=true,bind-propagation=rprivate")
    assert fields(bind) == ("bind", str(tmp_path), "/h", True, "", False) and bind.propagation == "rprivate"
    assert parse_mount("type=bind,src=.,dst=/h").source.startswith("/")  # the CLI makes ./ absolute
    tmpfs = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770,ro")
    assert tmpfs.type == "tmpfs" and tmpfs.tmpfs == "ro,mode=1770,size=64m"
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=2048").tmpfs == "size=2k"  # the largest unit that divides it
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1536").tmpfs == "size=1536"


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("type=volume", "target is required"),
        ("dst=/d,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("dst=/d,rubbish", "invalid field 'rubbish' must be a key=value pair"),
        ("dst=/d,readonly=maybe", "invalid value for readonly: maybe"),
        ("type=tmpfs,dst=/d,volume-nocopy", "cannot mix 'volume-*' options with mount type 'tmpfs'"),
        ("type=volume,dst=/d,tmpfs-size=1m", "cannot mix 'tmpfs-*' options with mount type 'volume'"),
        ("type=volume,src=db,dst=/d,bind-propagation=rprivate", "cannot mix 'bind-*'"),
        ("type=tmpfs,dst=/d,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
        ("type=tmpfs,dst=/d,tmpfs-mode=9", "invalid value for tmpfs-mode: 9"),
        ("type=tmpfs,src=x,dst=/d", 'invalid mount config for type "tmpfs": field Source must not be specified'),
        ("type=bind,dst=/d", 'invalid mount config for type "bind": field Source must not be empty'),
        ("type=bind,src=/nope/nope,dst=/d", "bind source path does not exist: /nope/nope"),
        ("type=bind,src=/tmp,dst=/d,bind-propagation=sideways", "invalid propagation mode: sideways"),
        ("type=volume,dst=/d,ro", "must not set ReadOnly mode when using anonymous volumes"),
        ("type=volume,src=db,dst=/d,volume-driver=nfs", 'plugin "nfs" not found'),
        ("type=volume,dst=/d,volume-opt=colour=red", 'invalid option: "colour"'),
        ("type=volume,dst=/d,volume-opt=type=tmpfs", 'missing required option: "device"'),
        ("type=npipe,dst=/d", "not supported"),
        ("type=weird,dst=/d", "mount type unknown"),
        ("type=volume,dst=relative", "mount path must be absolute"),
    ],
)
def test_bad_mount_specs(spec, needle):
    with pytest.raises(UsageError) as err:
        parse_mount(spec)
    assert err.value.message.startswith(f'invalid argument "{spec}" for "--mount" flag: ')
    assert needle in err.value.message


def test_volumes_from_and_modes():
    assert parse_volumes_from("data") == ("data", "rw")
    assert parse_volumes_from("data:ro") == ("data", "ro")
    for bad in ("", "data:nocopy", "data:shared", "data:xx"):
        with pytest.raises(UsageError):
            parse_volumes_from(bad)
    assert valid_mode("ro,z,nocopy,rprivate,cached") and not valid_mode("ro,Z,z")


def test_names_and_options():
    for good in ("db", "my_vol.1-x", "0" * 64):
        validate_name(good)
    for bad in ("a", "", ".hidden", "..", "a/b", "ä1", "a b"):
        with pytest.raises(UsageError):
            validate_name(bad)
    check_options({})
    check_options({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=5,mode=700"})
    check_options({"type": "none", "device": "/srv/data", "o": "bind,ro"})
    for bad, needle in [
        ({"type": "ext4", "device": "/dev/sdb1"}, 'not type "ext4"'),
        ({"type": "none", "device": "/srv"}, "o=bind"),
        ({"type": "none", "device": "relative", "o": "bind"}, "absolute"),
        ({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,colour=red"}, "invalid tmpfs option"),
        ({"type": "tmpfs", "device": "tmpfs", "size": "10m"}, "no quota support"),
        ({"o": "bind"}, 'missing required option: "device"'),
    ]:
        with pytest.raises(UsageError) as err:
            check_options(bad)
        assert needle in err.value.message


def test_plan_resolves_names_anonymous_and_image_volumes(tmp_path):
    store = Store(str(tmp_path / "store"))
    volumes = VolumeStore(store.root)
    store.ensure()
    volumes.create("existing", None, {"type": "none", "device": str(tmp_path), "o": "bind,ro"})
    specs = [
        parse_volume("fresh:/a"),
        parse_volume("existing:/b"),
        parse_volume("/c"),
        parse_mount("type=tmpfs,dst=/t"),
    ]
    image = {"Volumes": {"/a": {}, "/img": {}, "/t": {}, "/scratch": {}, "relative": {}}}
    plan = plan_mounts(store, specs, [], ["/scratch:size=1m"], image)
    by_target = {r["Destination"]: r for r in plan.records}
    assert sorted(by_target) == ["/a", "/b", "/c", "/img", "/t"]  # /a, /t, /scratch covered: no image volume
    assert by_target["/a"]["Name"] == "fresh" and by_target["/a"]["Mode"] == "z" and not by_target["/a"]["Anonymous"]
    assert by_target["/c"]["Anonymous"] and by_target["/img"]["Anonymous"] and by_target["/img"]["Mode"] == ""
    assert len(by_target["/c"]["Name"]) == 64 and by_target["/c"]["Name"] != by_target["/img"]["Name"]
    # an existing type=none volume mounts its device, read-only as its o= says; the record keeps _data
    assert [str(tmp_path), "/b", True] in plan.binds
    assert by_target["/b"]["Source"] == volumes.data_path("existing")
    assert plan.tmpfs == ["/scratch:size=1m", "/t"]
    made = {name: labels for name, labels, _ in plan.new_volumes}
    assert made["fresh"] is None and made[by_target["/img"]["Name"]] == {ANONYMOUS_LABEL: ""}
    assert "existing" not in made
    # copy-up for every new or existing volume mounted from the host, never for a bind
    assert sorted(t for t, _ in plan.copy_up) == ["/a", "/b", "/c", "/img"]
    assert not volumes.exists("fresh")  # planning writes nothing


def test_image_volumes_no_mount_covers_are_made_as_dirs(tmp_path):
    """A run's plan covers every VOLUME of the image (launch makes none); a build's RUN step has
    no mounts, so each absolute path other than / is left for PID 1 to make, cleaned."""
    from minirun.containers.plan import uncovered_volumes

    store = Store(str(tmp_path / "store"))
    store.ensure()
    image = {"Volumes": {"/a": {}, "/img/": {}, "/t": {}, "/scratch": {}, "relative": {}, "/": {}, "//x/../y": {}}}
    plan = plan_mounts(store, [parse_volume("fresh:/a"), parse_mount("type=tmpfs,dst=/t")], [], ["/scratch"], image)
    assert uncovered_volumes(image, plan.binds, plan.tmpfs) == []
    assert uncovered_volumes(image, [], []) == ["/a", "/img", "/scratch", "/t", "/y"]
    assert uncovered_volumes(image, [["/host", "/a/", False]], ["/t:size=1m"]) == ["/img", "/scratch", "/y"]
    assert uncovered_volumes({}, [], []) == uncovered_volumes({"Volumes": None}, [], []) == []


def test_plan_refuses_a_missing_volume_from_nowhere_and_walls(tmp_path):
    store = Store(str(tmp_path / "store"))
    with pytest.raises(UsageError, match="inside /proc"):
        plan_mounts(store, [], [], [], {"Volumes": {"/proc/sys": {}}})
    with pytest.raises(UsageError, match="Duplicate mount point: /x"):
        plan_mounts(store, [parse_volume("a1:/x"), parse_mount("dst=/x/")], [], [], {})
