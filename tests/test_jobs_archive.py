"""Job uploads into items: good archives keep order and paths; hostile ones, generated here, are refused with 4xx."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import struct
import tarfile
import tracemalloc
import zipfile

import pytest
from conftest import encode
from PIL import Image

from ai_service.errors import ServiceError
from ai_service.service.jobs.archive import (
    JobItem,
    items_from_archive,
    items_from_files,
    items_from_json,
    items_from_uploads,
)
from ai_service.service.upload import Upload
from ai_service.settings import JobsSettings

MB = 1024 * 1024
PNG = encode(Image.new("RGB", (8, 8), (200, 10, 10)))
JPEG = encode(Image.new("RGB", (8, 8), (10, 200, 10)), "JPEG")


def limits(**values: float) -> JobsSettings:
    """settings.jobs with some limits changed (max_items=3 → jobs_max_items=3)."""
    return JobsSettings(**{f"jobs_{name}": value for name, value in values.items()})


def zip_bytes(members: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: list[tuple[str | tarfile.TarInfo, bytes]], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = name if isinstance(name, tarfile.TarInfo) else tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def read(data: bytes, filename: str = "upload", **settings: float) -> list[JobItem]:
    return list(items_from_archive(io.BytesIO(data), filename, limits(**settings)))


def refused(data: bytes, code: str, filename: str = "upload", **settings: float) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        read(data, filename, **settings)
    assert caught.value.code == code, caught.value.message
    return caught.value


GOOD = [("b.png", PNG), ("photos/z.jpg", JPEG), ("photos/a.png", PNG), ("a.png", JPEG)]
JUNK = [
    ("__MACOSX/photos/._z.jpg", b"\x00\x05\x16\x07junk"),
    ("photos/.DS_Store", b"Bud1junk"),
    ("photos/Thumbs.db", b"junk"),
    ("photos/._a.png", b"\x00\x05\x16\x07junk"),
]


def test_a_zip_keeps_archive_order_and_paths_and_skips_directories_and_junk():
    directory = zipfile.ZipInfo("photos/")
    directory.external_attr = (stat.S_IFDIR | 0o755) << 16
    data = zip_bytes([(directory, b""), GOOD[0], JUNK[0], *GOOD[1:3], *JUNK[1:], GOOD[3]])
    items = read(data, "holiday.zip")
    assert [(item.path, item.data, item.error) for item in items] == [(path, blob, None) for path, blob in GOOD]


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_a_tar_plain_or_compressed_keeps_archive_order_and_paths(compression):
    data = tar_bytes(
        [(special("photos", tarfile.DIRTYPE), b""), GOOD[0], JUNK[0], *GOOD[1:3], *JUNK[1:], GOOD[3]], compression
    )
    items = read(data, "photos.zip")  # the name lies: the bytes decide
    assert [(item.path, item.data, item.error) for item in items] == [(path, blob, None) for path, blob in GOOD]


def test_a_member_that_is_not_an_image_is_an_item_with_its_error():
    items = read(zip_bytes([("a.png", PNG), ("notes.txt", b"hello"), ("empty.png", b""), ("c.jpg", JPEG)]))
    assert [item.path for item in items] == ["a.png", "notes.txt", "empty.png", "c.jpg"]
    assert [item.error.code if item.error else None for item in items] == [
        None,
        "unsupported_format",
        "empty_file",
        None,
    ]
    assert items[1].data is None and items[3].data == JPEG


def test_a_zip_bomb_is_refused_by_its_compression_ratio_before_it_is_unpacked():
    error = refused(zip_bytes([("a.png", PNG), ("bomb.png", bytes(4 * MB))]), "archive_too_large")
    assert error.status == 413 and error.details["setting"] == "AI_SERVICE_JOBS_MAX_RATIO"
    assert error.details["member"] == "bomb.png" and error.details["value"] > 200 and "bomb.png" in error.message


def test_a_gzip_bomb_is_refused_while_it_expands():
    data = tar_bytes([("bomb.png", bytes(32 * MB))], "gz")
    error = refused(data, "archive_too_large", max_member_mb=1000)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_RATIO" and "200:1" in error.message


def test_the_total_unpacked_size_is_refused_from_the_zip_headers():
    members = [(f"{index}.png", os.urandom(MB // 2)) for index in range(3)]  # incompressible: no ratio
    error = refused(zip_bytes(members, zipfile.ZIP_STORED), "archive_too_large", max_unpacked_mb=1)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_UNPACKED_MB" and error.details["member"] == "2.png"


def test_the_total_unpacked_size_is_counted_while_reading_a_tar():
    members = [(f"{index}.png", os.urandom(MB // 2)) for index in range(3)]  # tar has no table of sizes
    error = refused(tar_bytes(members, "gz"), "archive_too_large", max_unpacked_mb=1)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_UNPACKED_MB" and error.details["member"] == "2.png"


def test_zip_headers_that_understate_sizes_do_not_get_more_bytes_through():
    data = bytearray(zip_bytes([(f"{index}.png", PNG + os.urandom(MB // 2)) for index in range(3)]))
    entry = data.find(b"PK\x01\x02")
    while entry >= 0:  # every central directory entry now claims 1,000 bytes (compressed and not)
        struct.pack_into("<II", data, entry + 20, 1000, 1000)
        entry = data.find(b"PK\x01\x02", entry + 4)
    error = refused(bytes(data), "invalid_archive", max_unpacked_mb=1)
    assert error.details["member"] == "0.png"


def test_a_member_larger_than_the_member_limit_is_refused():
    error = refused(zip_bytes([("big.png", os.urandom(2 * MB))]), "archive_too_large", max_member_mb=1)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_MEMBER_MB" and error.details["value"] == 2 * MB
    error = refused(tar_bytes([("big.png", os.urandom(2 * MB))], "xz"), "archive_too_large", max_member_mb=1)
    assert error.details["member"] == "big.png"


def test_too_many_members_are_refused():
    members = [(f"{index}.png", PNG) for index in range(4)]
    for data in (zip_bytes(members), tar_bytes(members, "gz")):
        error = refused(data, "too_many_files", max_items=3)
        assert error.status == 413 and error.details["member"] == "3.png" and error.details["limit"] == 3


def test_a_listing_of_empty_entries_is_refused_too():
    directories = [(f"d{index}/", b"") for index in range(1010)]
    error = refused(zip_bytes(directories), "too_many_files", max_items=2)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_ITEMS"


def test_an_upload_larger_than_the_upload_limit_is_refused():
    data = zip_bytes([("a.png", os.urandom(MB))], zipfile.ZIP_STORED)
    error = refused(data, "payload_too_large", max_upload_mb=0.5)
    assert error.details["setting"] == "AI_SERVICE_JOBS_MAX_UPLOAD_MB"


@pytest.mark.parametrize(
    "name", ["../evil.png", "photos/../../evil.png", "/etc/evil.png", "C:/evil.png", "c:evil.png", "photos\\evil.png"]
)
def test_member_names_that_climb_out_or_are_absolute_are_refused(name):
    for data in (zip_bytes([("a.png", PNG), (name, PNG)]), tar_bytes([("a.png", PNG), (name, PNG)])):
        error = refused(data, "unsafe_archive")
        assert error.status == 400 and error.details["member"] == name


def test_a_symlink_in_a_zip_is_refused():
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    error = refused(zip_bytes([("a.png", PNG), (link, b"/etc/passwd")]), "unsafe_archive")
    assert error.details["member"] == "link.png" and "symbolic link" in error.message


def test_a_fifo_in_a_zip_is_refused():
    fifo = zipfile.ZipInfo("fifo.png")
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    refused(zip_bytes([(fifo, b"")]), "unsafe_archive")


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (tarfile.SYMTYPE, "symbolic link"),
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "device"),
        (tarfile.BLKTYPE, "device"),
        (tarfile.FIFOTYPE, "fifo"),
    ],
)
def test_links_devices_and_fifos_in_a_tar_are_refused(kind, words):
    data = tar_bytes([("a.png", PNG), (special("x.png", kind, linkname="a.png"), b"")], "gz")
    error = refused(data, "unsafe_archive")
    assert error.details["member"] == "x.png" and words in error.message


@pytest.mark.parametrize("name", ["inner.zip", "inner.tar", "inner.tar.gz", "inner.tgz", "inner.7z"])
def test_a_nested_archive_is_refused_by_its_name(name):
    refused(zip_bytes([("a.png", PNG), (name, zip_bytes([("b.png", PNG)]))]), "unsafe_archive")


def test_a_nested_archive_is_refused_by_its_bytes_whatever_its_name():
    inner_zip = zip_bytes([("b.png", PNG)])
    error = refused(zip_bytes([("a.png", PNG), ("innocent.png", inner_zip)]), "unsafe_archive")
    assert error.details["member"] == "innocent.png" and "zip" in error.message
    inner_tar = tar_bytes([("b.png", PNG)], "gz")
    refused(tar_bytes([("a.png", PNG), ("innocent.png", inner_tar)]), "unsafe_archive")
    refused(tar_bytes([("innocent.png", tar_bytes([("b.png", PNG)]))]), "unsafe_archive")  # plain tar: ustar magic


def test_an_encrypted_zip_member_is_refused():
    data = bytearray(zip_bytes([("a.png", PNG), ("secret.png", PNG)]))
    for signature, flags in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header and central directory
        entry = data.find(signature, data.find(signature) + 4)  # the second member's
        data[entry + flags] |= 0x1  # "encrypted" (zipfile writes no encryption, so the bit is set by hand)
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[1].flag_bits & 0x1
    error = refused(bytes(data), "invalid_archive")
    assert error.details["member"] == "secret.png" and "encrypted" in error.message


def test_a_huge_extended_tar_header_is_refused_before_it_is_read():
    data = tar_bytes([("a" * (2 * MB) + ".png", PNG)], "gz")
    refused(data, "unsafe_archive")


@pytest.mark.parametrize(
    "data",
    [
        zip_bytes([("a.png", PNG), ("b.png", JPEG)])[:-40],  # cut inside the central directory
        zip_bytes([("a.png", os.urandom(4096))], zipfile.ZIP_STORED)[:2000],
        tar_bytes([("a.png", PNG), ("b.png", os.urandom(4096))], "gz")[:-600],
        tar_bytes([("a.png", PNG), ("b.png", os.urandom(4096))])[:1500],  # plain tar cut inside a header
        tar_bytes([("a.png", PNG), ("b.png", os.urandom(4096))])[:3000],  # plain tar cut inside a member
        gzip.compress(PNG),  # a gzip that holds no tar
        bz2.compress(b"not a tar" * 100),
        lzma.compress(b"not a tar" * 100),
        b"",
        b"just some text, not an archive at all",
        PNG,
        b"7z\xbc\xaf\x27\x1c" + bytes(100),
    ],
    ids=[
        "zip-cut",
        "zip-member-cut",
        "tgz-cut",
        "tar-header-cut",
        "tar-member-cut",
        "gzip-not-tar",
        "bz2-not-tar",
        "xz-not-tar",
        "empty",
        "text",
        "png",
        "7z",
    ],
)
def test_a_corrupt_truncated_or_unknown_archive_is_refused(data):
    error = refused(data, "invalid_archive")
    assert error.status == 400


def test_a_damaged_header_after_the_first_is_refused_not_ignored():
    data = bytearray(tar_bytes([("a.png", PNG), ("b.png", PNG), ("c.png", PNG)]))
    second = data.find(b"b.png")
    data[second + 148 : second + 156] = b"9999999\x00"  # the checksum no longer matches
    error = refused(bytes(data), "invalid_archive")
    assert error.details["member"] == "a.png"


def test_a_flipped_byte_in_a_zip_member_is_refused():
    data = bytearray(zip_bytes([("a.png", PNG + bytes(2000))]))
    data[60] ^= 0xFF  # inside the compressed data: a bad stream or a bad CRC
    refused(bytes(data), "invalid_archive")


def test_a_one_way_stream_is_read_too():
    class OneWay(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    items = items_from_archive(OneWay(zip_bytes(GOOD)), "x.zip", limits())
    assert [item.path for item in items] == [path for path, _ in GOOD]
    with pytest.raises(ServiceError) as caught:
        items_from_archive(
            OneWay(zip_bytes([("a.png", os.urandom(MB))], zipfile.ZIP_STORED)), "x", limits(max_upload_mb=0.5)
        )
    assert caught.value.code == "payload_too_large"


def test_uploaded_files_keep_request_order_with_relative_names_and_per_item_errors():
    bad = ServiceError("invalid_base64", "not base64")
    uploads = [
        Upload(PNG, "b.png"),
        Upload(JPEG, "C:\\Users\\me\\photos\\a.jpg"),
        Upload(b"%PDF-1.4", "../../doc.pdf"),
        bad,
        Upload(PNG, ""),
    ]
    items = items_from_uploads(uploads, limits())
    assert [item.path for item in items] == ["b.png", "Users/me/photos/a.jpg", "doc.pdf", "file/3", "file/4"]
    assert [item.error.code if item.error else None for item in items] == [
        None,
        None,
        "unsupported_format",
        "invalid_base64",
        None,
    ]
    assert items[1].data == JPEG and items[3].error is bad


def test_uploaded_files_are_held_to_the_job_limits():
    with pytest.raises(ServiceError) as caught:
        items_from_uploads([Upload(PNG, f"{index}.png") for index in range(4)], limits(max_items=3))
    assert caught.value.code == "too_many_files" and caught.value.details["limit"] == 3
    with pytest.raises(ServiceError) as caught:
        items_from_uploads([Upload(os.urandom(MB), "big.png")], limits(max_upload_mb=0.5))
    assert caught.value.code == "payload_too_large"
    with pytest.raises(ServiceError) as caught:
        items_from_uploads([Upload(os.urandom(2 * MB), "big.png")], limits(max_member_mb=1))
    assert caught.value.code == "payload_too_large" and caught.value.details["member"] == "big.png"
    assert len(items_from_uploads([Upload(PNG, "a.png")] * 4)) == 4  # no limits: the caller checked them


def test_json_images_are_named_by_index_unless_named():
    bad = ServiceError("invalid_base64", "not base64")
    items = items_from_json([PNG, bad, Upload(JPEG, "mine.jpg"), b"text"], limits())
    assert [item.path for item in items] == ["images/0", "images/1", "mine.jpg", "images/3"]
    assert [item.error.code if item.error else None for item in items] == [
        None,
        "invalid_base64",
        None,
        "unsupported_format",
    ]


def test_every_refusal_comes_before_the_first_item_is_made():
    """The whole archive is checked when it is opened (nothing kept): a bad last member refuses it at once."""
    members = [*GOOD, ("inner.png", zip_bytes(GOOD))]  # a nested archive by its bytes, named like an image
    for data in (zip_bytes(members), tar_bytes(members, "gz")):
        with pytest.raises(ServiceError) as caught:
            items_from_archive(io.BytesIO(data), "photos", limits())  # not iterated
        assert caught.value.code == "unsafe_archive" and "inner.png" in caught.value.message


def test_items_are_made_one_at_a_time_and_can_be_read_again():
    upload = io.BytesIO(tar_bytes([*GOOD, ("notes.txt", b"hello")], "xz"))
    items = items_from_archive(upload, "photos.tar.xz", limits())
    assert len(items) == 5 and not isinstance(items, list)
    first = [(item.path, item.data) for item in items]
    assert first == [*GOOD, ("notes.txt", None)]
    assert [(item.path, item.data) for item in items] == first  # each iteration reads the upload again


def test_archive_members_are_held_one_at_a_time(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(40):
            archive.writestr(f"{index}.png", PNG + os.urandom(512 * 1024))
    with path.open("rb") as upload:
        tracemalloc.start()
        try:
            items = items_from_archive(upload, "big.zip", limits())
            sizes = [len(item.data) for item in items]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(sizes) == 40 and peak < 4 * MB, f"peak {peak / MB:.1f} MiB for 20 MiB of members"


def test_file_streams_are_checked_by_size_and_read_lazily():
    streams = [("a/b.png", io.BytesIO(PNG)), ("c:\\x\\notes.txt", io.BytesIO(b"text")), ("", io.BytesIO(JPEG))]
    items = items_from_files(streams, limits())
    assert len(items) == 3
    assert [(item.path, item.data, item.error and item.error.code) for item in items] == [
        ("a/b.png", PNG, None),
        ("x/notes.txt", None, "unsupported_format"),
        ("file/2", JPEG, None),
    ]
    for settings, code in (
        ({"max_items": 2}, "too_many_files"),
        ({"max_upload_mb": len(PNG + JPEG) / MB}, "payload_too_large"),
        ({"max_member_mb": len(JPEG) / MB / 2}, "payload_too_large"),
    ):
        with pytest.raises(ServiceError) as caught:
            items_from_files(streams, limits(**settings))
        assert caught.value.code == code
