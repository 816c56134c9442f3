"""POST /api/v1/models: content-addressed uploads, per-user visibility, and archives that try to escape."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import pytest

from .conftest import GAMBLER, detail_text, is_json_error, tar_gz, upload, zip_bytes


def test_upload_tar_gz_and_zip(alice):
    for data, name in (
        (tar_gz({"model.py": GAMBLER}, folder="g1"), "g1.tar.gz"),
        (zip_bytes({"model.py": GAMBLER}), "g.zip"),
    ):
        r = upload(alice, data, name)
        assert r.status_code == 201, r.text
        body = r.json()
        assert len(body["id"]) == 64 and body["size"] == len(data)


def test_uncompressed_tar_is_accepted_too(alice):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("model.py")
        info.size = len(GAMBLER)
        tar.addfile(info, io.BytesIO(GAMBLER.encode()))
    assert upload(alice, buf.getvalue(), "m.tar").status_code == 201


def test_same_bytes_same_id_other_bytes_other_id(alice):
    data = tar_gz({"model.py": GAMBLER}, folder="same")
    a = upload(alice, data, "a.tar.gz").json()["id"]
    b = upload(alice, data, "renamed.tar.gz").json()["id"]
    c = upload(alice, tar_gz({"model.py": GAMBLER + "\n# changed\n"}, folder="same"), "a.tar.gz").json()["id"]
    assert a == b != c
    ids = [m["id"] for m in alice.get("/models").json()]
    assert ids.count(a) == 1 and c in ids
    assert alice.get(f"/models/{a}").json()["id"] == a


def test_other_users_do_not_see_an_upload(alice, bob, gambler_upload):
    r = bob.get(f"/models/{gambler_upload}")
    assert r.status_code == 404 and is_json_error(r)
    assert gambler_upload not in [m["id"] for m in bob.get("/models").json()]
    r = bob.post("/runs", json={"model": {"upload": gambler_upload}})
    assert r.status_code in (404, 422) and "upload" in detail_text(r)


def test_the_same_bytes_uploaded_by_another_user_are_theirs_too(alice, bob):
    data = tar_gz({"model.py": GAMBLER}, folder="shared")
    a = upload(alice, data).json()["id"]
    assert bob.get(f"/models/{a}").status_code == 404
    assert upload(bob, data).json()["id"] == a
    assert bob.get(f"/models/{a}").status_code == 200


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"\x1f\x8b not really gzip", b"PK\x03\x04 not really a zip", os.urandom(5000)],
    ids=["empty", "text", "fake-gzip", "fake-zip", "random"],
)
def test_non_archives_are_refused(alice, data):
    r = upload(alice, data, "model.tar.gz")
    assert 400 <= r.status_code < 500, r.text
    assert is_json_error(r)
    assert "archive" in detail_text(r) or "tar" in detail_text(r) or "zip" in detail_text(r)


def test_upload_without_the_file_field(alice):
    r = alice.post("/models", files={"other": ("m.tar.gz", tar_gz({"model.py": GAMBLER}))})
    assert r.status_code == 422 and "file" in detail_text(r)
    r = alice.post("/models", json={"file": "x"})
    assert r.status_code == 422 and is_json_error(r)


@pytest.mark.parametrize("bad", ["abc", "../../etc/passwd", "0" * 64, "Z" * 64, "%2e%2e", "é" * 10])
def test_unknown_or_malformed_upload_ids_are_404(alice, bad):
    r = alice.get(f"/models/{bad}")
    assert r.status_code == 404 and is_json_error(r)


# -- hostile archives -----------------------------------------------------------------
def _tar(members: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            data = (contents or {}).get(m.name)
            if data is not None:
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x = 1\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _zip_raw(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def hostile(outside) -> dict[str, tuple[bytes, str]]:
    """Archives that try to write outside their folder (at ``outside``), and the member each refusal must name."""
    model = tarfile.TarInfo("model.py")
    abs_target = str(outside / "abs_marker.py")
    cases = {}
    m, d = _file(abs_target)
    cases["tar-absolute"] = (_tar([m], {m.name: d}), "abs_marker.py")
    m, d = _file("../../../../../../../../" + str(outside).lstrip("/") + "/dotdot_marker.py")
    cases["tar-dotdot"] = (_tar([m], {m.name: d}), "dotdot_marker.py")
    m, d = _file("sub/../../escape.py")
    cases["tar-dotdot-inner"] = (_tar([m], {m.name: d}), "escape.py")
    link = _link("evil", str(outside))
    m, d = _file("evil/through_link.py")
    cases["tar-symlink-outside"] = (_tar([link, m], {m.name: d}), "evil")
    cases["tar-symlink-relative-outside"] = (
        _tar(
            [
                _link("up", "../../../.."),
            ]
        ),
        "up",
    )
    cases["tar-hardlink-outside"] = (_tar([_link("hard", "/etc/passwd", tarfile.LNKTYPE)]), "hard")
    dev = tarfile.TarInfo("null")
    dev.type = tarfile.CHRTYPE
    dev.devmajor, dev.devminor = 1, 3
    cases["tar-device"] = (_tar([dev]), "null")
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    cases["tar-fifo"] = (_tar([fifo]), "pipe")
    cases["zip-dotdot"] = (_zip_raw([(zipfile.ZipInfo("../../zip_marker.py"), b"x = 1\n")]), "zip_marker.py")
    cases["zip-absolute"] = (_zip_raw([(zipfile.ZipInfo(str(outside / "zip_abs.py")), b"x = 1\n")]), "zip_abs.py")
    cases["zip-backslash-dotdot"] = (_zip_raw([(zipfile.ZipInfo("..\\..\\zip_bs.py"), b"x = 1\n")]), "zip_bs.py")
    sym = zipfile.ZipInfo("link")
    sym.create_system = 3
    sym.external_attr = (stat.S_IFLNK | 0o777) << 16
    cases["zip-symlink"] = (_zip_raw([(sym, str(outside).encode())]), "link")
    # found by Hypothesis (tests/test_properties.py): these raised plain OSError/KeyError, a 500
    cases["tar-hardlink-to-nothing"] = (_tar([_link("hard2", "missing.py", tarfile.LNKTYPE)]), "hard2")
    cases["zip-file-and-folder-clash"] = (
        _zip_raw([(zipfile.ZipInfo("pkg"), b"x = 1\n"), (zipfile.ZipInfo("pkg/"), b"")]),
        "pkg",
    )
    del model
    return cases


@pytest.fixture(scope="module")
def outside(server):
    """A folder next to the server's home: a successful escape would write here."""
    d = server.home.parent / "outside"
    d.mkdir(exist_ok=True)
    return d


def _all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(hostile(__import__("pathlib").Path("/nonexistent"))))
def test_hostile_archives_are_refused_naming_the_member(server, alice, outside, case):
    data, member = hostile(outside)[case]
    before_outside = _all_files(server.home.parent)
    trees_before = sorted(os.listdir(server.home / "sources" / "trees"))
    r = upload(alice, data, "evil.tar.gz" if case.startswith("tar") else "evil.zip")
    assert 400 <= r.status_code < 500, r.text
    assert is_json_error(r)
    assert member.lower() in detail_text(r), r.text
    # nothing written outside the home, nothing left half-unpacked inside it
    after = [p for p in _all_files(server.home.parent) if not p.startswith("home/") and not p.endswith(".log")]
    assert after == [p for p in before_outside if not p.startswith("home/") and not p.endswith(".log")]
    assert sorted(os.listdir(server.home / "sources" / "trees")) == trees_before
    assert not os.path.exists("/etc/passwd.ancho") and not (outside / "through_link.py").exists()


def test_store_still_works_after_hostile_uploads(alice, gambler_upload):
    assert alice.get(f"/models/{gambler_upload}").status_code == 200
    r = alice.post("/inspect", json={"model": {"upload": gambler_upload}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Gambler"


def test_archive_with_links_inside_is_fine(alice):
    """Relative links that stay inside the archive are ordinary source layouts, not attacks."""
    m, d = _file("pkg/model.py", GAMBLER.encode())
    r = upload(alice, _tar([m, _link("pkg/alias.py", "model.py")], {m.name: d}), "ok.tar.gz")
    assert r.status_code == 201, r.text


def test_uploads_keep_the_archive_bytes(server, alice):
    """The archive is kept next to its unpacked tree, even when an earlier attempt died between the two."""
    data = tar_gz({"model.py": GAMBLER + "\n# kept\n"})
    digest = upload(alice, data).json()["id"]
    archive = server.home / "sources" / "archives" / f"{digest}.tar.gz"
    assert archive.read_bytes() == data
    archive.unlink()  # as if the server had died right after unpacking
    assert upload(alice, data).json()["id"] == digest
    assert archive.read_bytes() == data
