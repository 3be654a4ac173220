"""Data resolution: explicit path, CLDYN_DATA, the mirror, the cache, checksummed downloads
(against a local HTTP server serving fixtures), and the loaders' parsing of each format."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import need_mirror
from PIL import Image

import cldyn_lib as cl
from cldyn_lib.data import cifar10, fetch, omniglot
from cldyn_lib.data.fetch import ChecksumError, DataNotFoundError, Remote
from cldyn_lib.files import cache_dir


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_omniglot_zip(path: Path, n_chars=2, seed=0) -> list[np.ndarray]:
    """An official-layout zip: images_background/<alphabet>/characterNN/<id>_<drawer>.png."""
    rng = np.random.default_rng(seed)
    drawn = []
    with zipfile.ZipFile(path, "w") as zf:
        for c in range(n_chars):
            for d in range(1, 21):
                img = (rng.random((105, 105)) > 0.1).astype(np.uint8)  # mostly white paper
                drawn.append(img)
                buf = io.BytesIO()
                Image.fromarray(img * 255).convert("1").save(buf, format="PNG")
                zf.writestr(f"images_background/Alpha/character{c + 1:02d}/{c:02d}01_{d:02d}.png",
                            buf.getvalue())  # fmt: skip
    return drawn


def make_cifar_binary(path: Path, n=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1).tobytes()
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (("test_batch.bin", records), ("batches.meta.txt", b"airplane\n")):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return labels, pixels


# ---------------------------------------------------------------- downloads


def test_download_verifies_and_names_file_only_when_complete(server, isolated_data):
    www, url = server
    (www / "f.bin").write_bytes(b"hello" * 1000)
    good = Remote(f"{url}/f.bin", "f.bin", md5=md5(www / "f.bin"), size=5000)
    path = fetch.download(good)
    assert path.read_bytes() == b"hello" * 1000
    cache = cache_dir()

    bad = Remote(f"{url}/f.bin", "g.bin", md5="0" * 32)
    with pytest.raises(ChecksumError, match="(?i)md5.*0000.*nothing was saved"):
        fetch.download(bad)
    assert not (cache / "g.bin").exists()
    assert not list(cache.glob("*.part")), "a failed download must leave no partial file"

    truncated = Remote(f"{url}/f.bin", "h.bin", size=6000)
    with pytest.raises(ChecksumError, match="size 5000 bytes, expected 6000"):
        fetch.download(truncated)
    assert not (cache / "h.bin").exists()


def test_omniglot_from_official_zip_via_download(server, isolated_data, monkeypatch):
    www, url = server
    drawn = make_omniglot_zip(www / "images_background.zip")
    remote = Remote(f"{url}/images_background.zip", "images_background.zip",
                    md5=md5(www / "images_background.zip"))  # fmt: skip
    monkeypatch.setitem(omniglot.OMNIGLOT_REMOTES, "background", remote)
    om = cl.load_omniglot("background", size=105)
    assert om.source.kind == "download" and om.source.location == remote.url
    assert om.images.shape == (2, 20, 105, 105)
    assert list(om.character) == ["character01", "character02"]
    # every drawing is there, 255 = paper, in the canonical (content-hash) order
    got = {(im // 255).tobytes() for im in om.images.reshape(-1, 105, 105)}
    assert got == {d.tobytes() for d in drawn}
    assert sorted(om.drawer[0]) == list(range(1, 21))
    # second call: found in the cache, no download
    (www / "images_background.zip").unlink()
    again = cl.load_omniglot("background", size=105)
    assert again.source.kind == "cache" and np.array_equal(again.images, om.images)
    small = cl.load_omniglot("background", size=28)
    assert small.images.shape == (2, 20, 28, 28) and small.images.dtype == np.uint8


def test_omniglot_wrong_checksum_is_an_error(server, isolated_data, monkeypatch):
    www, url = server
    make_omniglot_zip(www / "images_background.zip")
    remote = Remote(f"{url}/images_background.zip", "images_background.zip", md5="1" * 32)
    monkeypatch.setitem(omniglot.OMNIGLOT_REMOTES, "background", remote)
    with pytest.raises(ChecksumError):
        cl.load_omniglot("background")
    assert not (cache_dir() / "images_background.zip").exists()


def test_cifar_binary_archive_via_download(server, isolated_data, monkeypatch):
    www, url = server
    labels, pixels = make_cifar_binary(www / "cifar-10-binary.tar.gz")
    archive = www / "cifar-10-binary.tar.gz"
    remote = Remote(f"{url}/cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz",
                    md5=md5(archive), size=archive.stat().st_size)  # fmt: skip
    monkeypatch.setattr(cifar10, "CIFAR10_REMOTE", remote)
    cifar = cl.load_cifar10("test")
    assert cifar.source.kind == "download"
    assert cifar.images.shape == (5, 32, 32, 3)
    assert np.array_equal(cifar.labels, labels)
    assert np.array_equal(cifar.images[0, :, :, 0], pixels[0, 0])  # channel-last, R plane
    with pytest.raises(DataNotFoundError, match="data_batch_1.bin"):
        cl.load_cifar10("train")


def test_offline_and_missing_lists_every_place(isolated_data, monkeypatch):
    monkeypatch.setitem(
        omniglot.OMNIGLOT_REMOTES, "background",
        Remote("http://127.0.0.1:9/none.zip", "images_background.zip", md5="0" * 32),
    )  # fmt: skip
    with pytest.raises(DataNotFoundError) as err:
        cl.load_omniglot("background")
    msg = str(err.value)
    assert "offline mirror:" in msg and "download cache:" in msg
    assert "download of http://127.0.0.1:9/none.zip: failed" in msg
    assert "CLDYN_DATA" in msg and "path=" in msg
    monkeypatch.setenv("CLDYN_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="skipped \\(CLDYN_OFFLINE is set\\)"):
        cl.load_omniglot("background")
    with pytest.raises(DataNotFoundError, match="cnn_dailymail: no copy found"):
        cl.load_articles()
    with pytest.raises(DataNotFoundError, match="gpt-neox-tokenizer"):
        cl.load_tokenizer()


def test_explicit_path_and_cldyn_data(isolated_data, monkeypatch, tmp_path):
    rows = [{"id": "a", "article": "One."}, {"id": "b", "article": "Two."}]
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    arts = cl.load_articles(path=f)
    assert arts.texts == ["One.", "Two."] and arts.source.kind == "explicit"
    with pytest.raises(DataNotFoundError, match="does not exist"):
        cl.load_articles(path=tmp_path / "missing.jsonl")
    data = tmp_path / "mydata" / "cnn_dailymail"
    data.mkdir(parents=True)
    (data / "articles_permissive.jsonl").write_text(json.dumps(rows[0]))
    monkeypatch.setenv("CLDYN_DATA", str(tmp_path / "mydata"))
    arts = cl.load_articles()
    assert arts.ids == ["a"] and arts.source.kind == "CLDYN_DATA"


def test_corrupted_mirror_file_is_detected(isolated_data, monkeypatch, tmp_path):
    mirror = tmp_path / "bad-mirror" / "cnn_dailymail"
    mirror.mkdir(parents=True)
    (mirror / "articles_permissive.jsonl").write_text('{"id": "x", "article": "tampered"}')
    monkeypatch.setenv("CLDYN_MIRROR", str(tmp_path / "bad-mirror"))
    with pytest.raises(ChecksumError, match="sha256 .* expected 9a8e84f4"):
        cl.load_articles()


def test_bad_loader_arguments():
    with pytest.raises(ValueError, match="pool must be one of 'permissive', 'all'"):
        cl.load_articles(pool="everything")
    with pytest.raises(ValueError, match="split must be one of 'background', 'evaluation'"):
        cl.load_omniglot("train")
    with pytest.raises(ValueError, match="size must be an integer in \\[8, 105\\]"):
        cl.load_omniglot("background", size=200)
    with pytest.raises(ValueError, match="split must be one of 'test', 'train'"):
        cl.load_cifar10("val")


# ---------------------------------------------------------------- the offline mirror


def test_mirror_articles_and_tokenizer():
    need_mirror("cnn_dailymail", "articles_permissive.jsonl")
    arts = cl.load_articles()
    assert len(arts) == 270 and arts.source.kind == "mirror"
    assert all(i.split("/")[0] in ("frank", "allennlp") for i in arts.ids)
    assert len(cl.load_articles("all")) == 2370
    tok, src = cl.load_tokenizer(return_source=True)
    assert tok("Hello world")["input_ids"] == [12092, 1533]
    assert len(tok) == 50277 and tok.pad_token_id == 0 and tok.eos_token_id == 0
    assert src.kind == "mirror" and src.sha256.startswith("56ac4821")


def test_mirror_omniglot_canonical_order_matches_official_zip():
    need_mirror("omniglot", "derived", "omniglot_105x105_packed.npz")
    small = need_mirror("omniglot", "original", "images_background_small1.zip")
    om = cl.load_omniglot("background", size=28)
    assert om.images.shape == (964, 20, 28, 28) and om.source.kind == "mirror"
    assert len(set(om.alphabet)) == 30
    ev = cl.load_omniglot("evaluation", size=28)
    assert ev.images.shape == (659, 20, 28, 28)
    # the official small zip, parsed by the zip loader, gives the same drawing k per character
    zipped = cl.load_omniglot("background", size=28, path=small)  # the zip loader
    assert zipped.source.kind == "explicit"
    zipped = {k: getattr(zipped, k) for k in ("images", "alphabet", "character", "drawer")}
    index = {(a, c): i for i, (a, c) in enumerate(zip(om.alphabet, om.character))}
    checked = 0
    for j, (a, c) in enumerate(zip(zipped["alphabet"], zipped["character"])):
        i = index[(a, c)]
        assert np.array_equal(zipped["images"][j], om.images[i]), (a, c)
        known = om.drawer[i] >= 0
        assert np.array_equal(zipped["drawer"][j][known], om.drawer[i][known])
        checked += 1
    assert checked == len(zipped["alphabet"]) and checked > 100


def test_mirror_cifar10_jpegs():
    need_mirror("cifar10", "cifar10_test_jpeg_YoongiKim.tar.gz")
    cifar = cl.load_cifar10()
    assert cifar.images.shape == (10000, 32, 32, 3) and cifar.images.dtype == np.uint8
    assert np.array_equal(np.bincount(cifar.labels), np.full(10, 1000))
    assert cifar.source.kind == "mirror" and cifar.source.sha256.startswith("6ccafce0")
