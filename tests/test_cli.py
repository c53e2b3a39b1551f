"""The command line without mounting: arguments, options and the checks before a mount."""
import os

import pytest

from ifcbfs import cli, options


def test_fstab_form_and_options():
    cfg = cli.parse_args(["src", "mnt", "-o", "ro,nosuid,_netdev,layout=flat,uid=7,gid=8,cache_size=64M,stitch=qc",
                          "-oallow_other,include_skipped,fsname=lab,nonempty,recover,poll=0.5,workers=3", "-f", "-d"])
    assert cfg.source == os.path.abspath("src") and cfg.mountpoint == os.path.abspath("mnt")
    assert cfg.foreground and cfg.debug and cfg.allow_other and cfg.nonempty and cfg.recover
    o = cfg.options
    assert (o.layout, o.uid, o.gid, o.cache_size, cfg.include_skipped) == ("flat", 7, 8, 64 << 20, True)
    assert (cfg.fsname, cfg.poll, cfg.workers, o.stitch) == ("lab", 0.5, 3, "qc")
    indexed = cli.parse_args(["src", "mnt", "-o", "bin_cache=8M,index=off"])
    assert (indexed.options.bin_cache, indexed.index) == (8 << 20, "off")
    assert cli.parse_args(["src", "mnt", "-o", "index=idx.sqlite"]).index == os.path.abspath("idx.sqlite")
    assert {"ro", "allow_other", "default_permissions", "fsname=lab", "subtype=ifcbfs"} <= cli.fuse_options(cfg)


def test_defaults():
    cfg = cli.parse_args(["/a", "/b"])
    assert (cfg.options.layout, cfg.options.uid, cfg.options.cache_size) == ("mirror", os.getuid(), 256 << 20)
    assert cfg.options.stitch == "on" and cli.parse_args(["/a", "/b", "-o", "stitch=off"]).options.stitch == "off"
    assert not cfg.allow_other and "allow_other" not in cli.fuse_options(cfg)
    assert "fsname=/a" in cli.fuse_options(cfg)
    assert cli.parse_args(["/a", "/b", "-o", ""]).options.layout == "mirror"


@pytest.mark.parametrize("argv, message", [
    (["a"], "expected SOURCE and MOUNTPOINT"),
    (["a", "b", "c"], "expected SOURCE and MOUNTPOINT"),
    (["a", "b", "-o"], "-o needs"),
    (["a", "b", "-x"], "unknown argument"),
    (["a", "b", "-o", "layout=tree"], "expected mirror or flat"),
    (["a", "b", "-o", "uid=me"], "uid='me': expected a whole number from 0"),
    (["a", "b", "-o", "gid=-3"], "gid='-3': expected a whole number from 0"),
    (["a", "b", "-o", "cache_size=lots"], "cache_size"),
    (["a", "b", "-o", "cache_size=-1M"], "cache_size='-1M': must not be negative"),
    (["a", "b", "-o", "cache_size=infG"], "cache_size='infG': expected bytes"),
    (["a", "b", "-o", "poll=soon"], "poll='soon': expected seconds > 0, or 0"),
    (["a", "b", "-o", "poll=-1"], "poll='-1': expected seconds > 0, or 0"),
    (["a", "b", "-o", "poll=nan"], "poll='nan'"),
    (["a", "b", "-o", "poll=inf"], "poll='inf'"),
    (["a", "b", "-o", "workers=0"], "workers='0': expected a whole number from 1"),
    (["a", "b", "-o", "workers=many"], "workers='many'"),
    (["a", "b", "-o", "fsname="], "fsname= needs a value"),
    (["a", "b", "-o", "fsname"], "fsname needs a value"),
    (["a", "b", "-o", "ro,rw"], "rw: ifcbfs is read-only"),
    (["a", "b", "-o", "rw"], "rw: ifcbfs is read-only"),
    (["a", "b", "-o", "layout=flat,layout=mirror"], "layout= is given twice (flat and mirror)"),
    (["a", "b", "-o", "poll=1", "-o", "poll=2"], "poll= is given twice"),
    (["a", "b", "-o", "allow_other=yes"], "allow_other takes no value"),
    (["a", "b", "-o", "stitch=maybe"], "stitch='maybe': expected on, off or qc"),
    (["a", "b", "-o", "stitch"], "stitch needs a value"),
    (["a", "b", "-o", "bin_cache=-1"], "bin_cache='-1': must not be negative"),
    (["a", "b", "-o", "index"], "index needs a value"),
    (["a", "b", "-o", "index="], "index= needs a value"),
    (["a", "b", "-o", "umask=999"], "octal"),
    (["a", "b", "-o", "umask=1000"], "octal"),
    (["a", "b", "-o", "umask"], "umask needs a value"),
    (["a", "b", "-o", "sparkle"], "unknown option"),
    (["a", "b", "-o", "mosaic=0x600"], "mosaic='0x600': expected WxH@S like 800x600@33"),
    (["a", "b", "-o", "mosaic=800x600@0"], "mosaic='800x600@0': expected WxH@S"),
    (["a", "b", "-o", "mosaic=800x600@101"], "S percent (1 to 100)"),
    (["a", "b", "-o", "mosaic=8000x8000"], "at most 16777216"),
    (["a", "b", "-o", "mosaic=big"], "mosaic='big'"),
    (["a", "b", "-o", "zip=yes"], "zip='yes': zip takes no value"),
    (["a", "b", "-o", "endpoint=http://x"], "apply to s3://"),
    (["s3://", "b"], "no bucket name"),
    (["s3://bkt", "b", "-o", "endpoint=s3.example.org"], "expected a URL"),
    (["s3://bkt", "b", "-o", "region=Mars 1"], "expected a region name"),
    (["s3://bkt", "b", "-o", "readahead=far"], "readahead"),
])
def test_bad_arguments(argv, message):
    """Every bad option value is refused with one line naming the option and what it accepts."""
    with pytest.raises(cli.UsageError) as err:
        cli.parse_args(argv)
    assert message in str(err.value) and err.value.status == 2
    assert "\n" not in str(err.value)


def test_good_edge_values_and_repeats_of_one_value():
    cfg = cli.parse_args(["a", "b", "-o", "poll=0,workers=1,cache_size=0,layout=flat,layout=flat,ro,ro"])
    assert (cfg.poll, cfg.workers, cfg.options.cache_size, cfg.options.layout) == (0, 1, 0, "flat")


def test_uid_or_gid_without_allow_other_is_warned_about():
    other = os.getuid() + 1
    assert cli.advice(cli.parse_args(["a", "b"])) == []
    assert cli.advice(cli.parse_args(["a", "b", "-o", f"uid={os.getuid()}"])) == []
    assert cli.advice(cli.parse_args(["a", "b", "-o", f"uid={other},allow_other"])) == []
    (warning,) = cli.advice(cli.parse_args(["a", "b", "-o", f"uid={other}"]))
    assert f"uid={other} without allow_other" in warning and "add allow_other" in warning
    assert len(cli.advice(cli.parse_args(["a", "b", "-o", f"uid={other},gid={os.getgid() + 1}"]))) == 2


def test_mosaic_and_zip():
    from ifcbfs.core.mosaic import Mosaic

    def parsed(*opts):
        o = cli.parse_args(["/a", "/b", "-o", ",".join(opts)]).options
        return o.mosaic, o.zip

    assert parsed("ro") == (None, False)
    assert parsed("mosaic", "zip") == (Mosaic(800, 600, 33), True)
    assert parsed("mosaic=640x480") == (Mosaic(640, 480, 33), False)
    assert parsed("mosaic=@50") == (Mosaic(800, 600, 50), False)
    assert parsed("mosaic=1x1@100")[0] == (1, 1, 100) and str(Mosaic()) == "800x600@33"


def test_an_object_store_source_is_a_url_with_its_own_options():
    cfg = cli.parse_args(["s3://bkt/raw/", "mnt", "-o", "endpoint=http://127.0.0.1:8333,region=eu-west-1,readahead=1M"])
    assert cfg.source == "s3://bkt/raw/" and cfg.mountpoint == os.path.abspath("mnt")
    assert cfg.source_options() == {"endpoint": "http://127.0.0.1:8333", "region": "eu-west-1", "threads": 16,
                                    "readahead": 1 << 20}
    assert "fsname=s3://bkt/raw/" in cli.fuse_options(cfg)
    assert cli.parse_args(["s3://bkt", "m", "-o", "workers=3"]).source_options()["threads"] == 3
    assert cli.parse_args(["/a", "/b"]).source_options() == {}


def test_an_index_is_kept_per_layout_bin_filter_and_skipped_folders():
    from ifcbfs.index import default_path

    def signature(given: str) -> str:
        return cli.parse_args(["/a", "/b", *(["-o", given] if given else [])]).signature

    same = signature("since=2024-06-01,instrument=5:124")
    assert same == signature("instrument=124:5,since=2024-06-01T00:00:00Z")  # one filter, one index
    kinds = ("", "layout=flat", "since=2024-06-01", "until=2024-06-01", "instrument=124", "include_skipped", "zip")
    assert len({signature(o) for o in kinds} | {same}) == len(kinds) + 1
    assert default_path("/a", signature("")) != default_path("/a", signature("since=2024-06-01"))


def test_help_and_version(capsys):
    assert cli.main(["--help"]) == 0 and {"layout=mirror|flat", "stitch=on|off|qc", "mosaic[=WxH@S]", "zip", "since=DATE",
                                          "until=DATE", "instrument=N[:N...]"} <= set(capsys.readouterr().out.split())
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.startswith("ifcbfs ")
    assert cli.main(["only-one"]) == 2 and "ifcbfs:" in capsys.readouterr().err


def test_umask_is_octal_and_defaults_to_022():
    assert cli.parse_args(["/a", "/b"]).options.umask == 0o022
    assert [cli.parse_args(["/a", "/b", "-o", f"umask={m}"]).options.umask for m in ("027", "0", "777", "0002")] == [0o027, 0, 0o777, 0o002]


def test_sizes():
    assert [options.parse_size(t) for t in ("1024", "1K", "2M", "1G", "1.5M", "64MiB")] == [1024, 1024, 2 << 20, 1 << 30, 3 << 19, 64 << 20]


def test_missing_fuse_device_and_fusermount_are_named(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    cfg = cli.parse_args([str(tmp_path / "src"), str(tmp_path / "m")])
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/dev/fuse" else real_exists(p))
    with pytest.raises(cli.UsageError, match="/dev/fuse is missing"):
        cli.check_paths(cfg)
    monkeypatch.setattr(os.path, "exists", real_exists)
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    if real_exists("/dev/fuse"):
        with pytest.raises(cli.UsageError, match="fusermount3 is not installed"):
            cli.check_paths(cfg)


def test_unreadable_source(tmp_path, monkeypatch):
    cfg = cli.parse_args([str(tmp_path), str(tmp_path / "m")])
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(cli.UsageError, match="cannot be read"):
        cli.check_paths(cfg)


@pytest.mark.parametrize("src, mnt, message", [
    ("data", "data/inner", "mountpoint {mnt} is inside the source {src}"),
    ("data", "data", "source and mountpoint are the same folder"),
    ("data/inner", "data", "source {src} is inside the mountpoint {mnt}"),
    ("data", "link-to-data/inner", "is inside the source"),      # real paths are compared
    ("data", "link-to-data", "the same folder"),
])
def test_a_mount_inside_its_source_or_over_it_is_refused(tmp_path, src, mnt, message):
    (tmp_path / "data" / "inner").mkdir(parents=True)
    (tmp_path / "link-to-data").symlink_to(tmp_path / "data")
    cfg = cli.parse_args([str(tmp_path / src), str(tmp_path / mnt)])
    with pytest.raises(cli.UsageError) as err:
        cli.check_paths(cfg)
    assert message.format(src=cfg.source, mnt=cfg.mountpoint) in str(err.value)
    assert err.value.status == 1 and "\n" not in str(err.value)


def test_a_sibling_whose_name_extends_the_source_is_not_inside_it(tmp_path):
    assert cli.nesting_problem(str(tmp_path / "data"), str(tmp_path / "data2")) is None


def test_an_unwritable_log_file_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(cli, "check_paths", lambda cfg: None)  # the paths are not the point here
    assert cli.main([str(tmp_path / "src"), str(tmp_path / "m"), "-f", "-o", f"log={tmp_path}/file/x.log"]) == 1
    err = capsys.readouterr().err
    assert f"log file {tmp_path}/file/x.log cannot be written" in err and "-o log=FILE" in err
    assert len(err.strip().splitlines()) == 1


def test_a_refused_mount_makes_no_log_file(tmp_path, capsys):
    (tmp_path / "data" / "inner").mkdir(parents=True)
    log = tmp_path / "logs" / "x.log"
    assert cli.main([str(tmp_path / "data"), str(tmp_path / "data" / "inner"), "-o", f"log={log}"]) == 1
    assert "is inside the source" in capsys.readouterr().err
    assert not log.exists() and not log.parent.exists()


def test_product_options():
    cfg = cli.parse_args(["/a", "/b", "-o", "products=/p/cnn:annotated=/q/manual-2024:rel,blobs,classes,bins_csv"])
    o = cfg.options
    assert o.products == (("cnn", "/p/cnn"), ("annotated", "/q/manual-2024"), ("rel", os.path.abspath("rel")))
    assert o.blobs and o.classes and o.bins_csv and cli.advice(cfg) == []
    bare = cli.parse_args(["/a", "/b", "-o", "blobs,classes"])
    assert not bare.options.products and len(cli.advice(bare)) == 2  # blobs and classes need product trees
    assert cli.parse_args(["/a", "/b"]).options.products == ()


@pytest.mark.parametrize("value, message", [
    ("/p/x:/q/x", "two trees are named 'x'"),
    ("/data/manual", "'manual' is the manual annotations'"),
    ("a/b=/p", "cannot name a product tree"),
    (".hidden=/p", "cannot name a product tree"),
    ("name=", "expected DIR[:DIR...] or NAME=DIR"),
    ("/p:", "expected DIR[:DIR...]"),
])
def test_bad_product_options(value, message):
    with pytest.raises(cli.UsageError, match=message.replace("[", r"\[").replace(".", r"\.")) as err:
        cli.parse_args(["/a", "/b", "-o", f"products={value}"])
    assert err.value.status == 2


def test_product_trees_are_checked_before_mounting(tmp_path):
    (tmp_path / "p").mkdir()
    assert cli.products_problem((("p", str(tmp_path / "p")),)) is None
    assert "does not exist" in cli.products_problem((("q", str(tmp_path / "q")),))
    mnt = tmp_path / "mnt"
    (mnt / "inside").mkdir(parents=True)
    assert "inside the mountpoint" in cli.products_problem((("i", str(mnt / "inside")),), str(mnt))
