import pytest

from coppice.filer.errors import BadLunId, IgroupNotFound, LunAlreadyMapped, LunIdInUse, LunNotMapped

pytestmark = pytest.mark.backends("native", "rbd")


@pytest.fixture
def two(filer):
    filer.vol_create("v", "1g")
    for n in ("a", "b", "c"):
        filer.lun_create(f"/vol/v/{n}", "1m")
    filer.igroup_create("g", ["h1"])
    filer.igroup_create("h", ["h2"])
    return filer


def test_ids_unique_per_igroup_and_refusal_names_holder(two, unchanged):
    f = two
    assert f.lun_map("/vol/v/a", "g", 5) == 5
    with unchanged(LunIdInUse, "LUN ID 5 is already in use in igroup g by LUN /vol/v/a"):
        f.lun_map("/vol/v/b", "g", 5)
    assert f.lun_map("/vol/v/b", "h", 5) == 5  # another igroup: fine


def test_omitted_id_is_lowest_free(two):
    f = two
    assert f.lun_map("/vol/v/a", "g", 0) == 0
    assert f.lun_map("/vol/v/b", "g", 2) == 2
    assert f.lun_map("/vol/v/c", "g") == 1
    assert [(m["path"], m["lun_id"]) for m in f.lun_maps()] == [
        ("/vol/v/a", 0),
        ("/vol/v/c", 1),
        ("/vol/v/b", 2),
    ]


def test_bad_maps_are_refused(two, unchanged):
    f = two
    f.lun_map("/vol/v/a", "g")
    with unchanged(LunAlreadyMapped):
        f.lun_map("/vol/v/a", "g", 9)
    for bad in (-1, 4096, "x", "1.5", True):
        with unchanged(BadLunId):
            f.lun_map("/vol/v/b", "g", bad)
    with unchanged(IgroupNotFound):
        f.lun_map("/vol/v/b", "nope")
    with unchanged(LunNotMapped):
        f.lun_unmap("/vol/v/b", "g")


def test_unmap_frees_the_id(two):
    f = two
    f.lun_map("/vol/v/a", "g")
    f.lun_unmap("/vol/v/a", "g")
    assert f.lun_map("/vol/v/b", "g") == 0
