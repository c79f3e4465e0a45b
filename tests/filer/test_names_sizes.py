import pytest

from coppice.filer.errors import BadPath, BadSize, InvalidName
from coppice.filer.names import check_igroup, check_lun, check_snapshot, check_volume, parse_lun_path
from coppice.filer.sizes import format_size, parse_size


@pytest.mark.parametrize("name", ["fvol_master", "_v", "V1", "a" * 255])
def test_good_volume_names(name):
    # ONTAP volume names: letters, digits, '_', starting with a letter or '_'
    assert check_volume(name) == name


@pytest.mark.parametrize(
    "name,why",
    [
        ("", "empty"),
        ("1vol", "starts with '1'"),
        ("vol-1", "'-' is not allowed"),
        ("a" * 256, "256 characters"),
        ("völ", "'ö' is not allowed"),
        ("a/b", "'/' is not allowed"),
        ("a b", "' ' is not allowed"),
    ],
)
def test_bad_volume_names_say_why(name, why):
    with pytest.raises(InvalidName, match=why):
        check_volume(name)


def test_snapshot_lun_igroup_names_allow_ontap_extras():
    # scheduled snapshots are hourly.0; LUNs may have dots and dashes; igroups colons
    assert check_snapshot("hourly.0") and check_lun("lun-0.img") and check_igroup("host:1")
    with pytest.raises(InvalidName):
        check_snapshot(".hidden")
    with pytest.raises(InvalidName):
        check_volume(None)


def test_lun_paths():
    assert parse_lun_path("/vol/v/lun0") == ("v", None, "lun0")
    assert parse_lun_path("/vol/v/.snapshot/s.1/lun0", allow_snapshot=True) == ("v", "s.1", "lun0")
    for bad in ("vol/v/lun0", "/vol/v", "/vol/v/a/b", "/vol//lun0"):
        with pytest.raises((BadPath, InvalidName)):
            parse_lun_path(bad)
    with pytest.raises(BadPath, match="read-only"):
        parse_lun_path("/vol/v/.snapshot/s/lun0")


@pytest.mark.parametrize(
    "text,n",
    [
        ("20g", 20 << 30),
        ("512m", 512 << 20),
        ("1t", 1 << 40),
        ("4k", 4096),
        ("20GB", 20 << 30),
        ("20GiB", 20 << 30),
        ("1.5g", 3 << 29),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "g", "20x", "-1g", "0", "1.2.3g", "ten", True, None, "2e"])
def test_bad_sizes(text):
    with pytest.raises(BadSize):
        parse_size(text)


def test_format_size():
    assert [format_size(x) for x in (0, 20 << 30, 1536 << 20, 4096, 100)] == [
        "0",
        "20g",
        "1.5g",
        "4k",
        "100b",
    ]
