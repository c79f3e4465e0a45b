"""`vol size NAME -N` and `lun resize PATH -N` shrink as documented (no `--` needed)."""


def test_vol_size_and_lun_resize_take_minus_n(cli):
    cli("vol", "create", "v", "10g")
    assert "size set to 8g" in cli("vol", "size", "v", "-2g").stdout
    assert cli.json("vol", "size", "v")["size"] == 8 << 30
    cli("lun", "create", "/vol/v/l", "-s", "1g")
    assert "resized to 512m" in cli("lun", "resize", "/vol/v/l", "-512m").stdout
    assert "resized to 256m" in cli("lun", "resize", "/vol/v/l", "-f", "-256m").stdout
    assert cli.json("lun", "show", "/vol/v/l")[0]["size"] == 256 << 20
    r = cli("vol", "size", "v", "-lots", code=4)  # still a size, and a bad one: refused, unchanged
    assert "Invalid size" in r.output
    assert cli.json("vol", "size", "v")["size"] == 8 << 30
