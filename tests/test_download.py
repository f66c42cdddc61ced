"""download(): a loopback HTTP server serves fixture archives; good ones land, bad ones leave nothing."""
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from functools import partial

import pytest

from recarch.data.download import ChecksumError, DownloadError, download

# hex digests compress only about 2:1, so flipping bytes near the start hits member data
MEMBERS = {"toy/a.txt": b"".join(hashlib.sha256(b"%d" % i).hexdigest().encode() for i in range(100)),
           "toy/sub/b.txt": b"hello\n" * 300}


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in MEMBERS.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tgz(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path == "/short.zip":  # promises more bytes than it sends, then hangs up
            body = self.server.files["good.zip"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    good = make_zip()
    files = {
        "good.zip": good,
        "corrupt.zip": good[:100] + bytes(b ^ 0xFF for b in good[100:160]) + good[160:],
        "truncated.zip": good[: len(good) // 2],
        "good.tar.gz": make_tgz(MEMBERS),
        "evil.tar.gz": make_tgz({"../evil.txt": b"x"}),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    httpd.files = files
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_download_verify_extract(server, dest):
    url, files = server
    placed = download(f"{url}/good.zip", dest, sha(files["good.zip"]), progress=False)
    assert placed == sorted(dest / n for n in MEMBERS)
    for name, data in MEMBERS.items():
        assert (dest / name).read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["toy"]  # no archive, no temp files


def test_download_without_extract_keeps_file(server, dest):
    url, files = server
    placed = download(f"{url}/good.zip", dest, sha(files["good.zip"]), filename="x.zip",
                      extract=False, progress=False)
    assert placed == [dest / "x.zip"] and (dest / "x.zip").read_bytes() == files["good.zip"]
    assert [p.name for p in dest.iterdir()] == ["x.zip"]


def test_tar_gz_and_unsafe_member(server, dest):
    url, files = server
    download(f"{url}/good.tar.gz", dest, sha(files["good.tar.gz"]), progress=False)
    assert (dest / "toy" / "sub" / "b.txt").read_bytes() == MEMBERS["toy/sub/b.txt"]
    other = dest / "other"
    other.mkdir()
    with pytest.raises(DownloadError, match="unsafe member path"):
        download(f"{url}/evil.tar.gz", other, sha(files["evil.tar.gz"]), progress=False)
    assert list(other.iterdir()) == [] and not (dest / "evil.txt").exists()


@pytest.mark.parametrize("name", ["corrupt.zip", "truncated.zip"])
def test_bad_archive_fails_checksum_and_leaves_nothing(server, dest, name):
    url, files = server
    expected = sha(files["good.zip"])
    with pytest.raises(ChecksumError) as e:
        download(f"{url}/{name}", dest, expected, filename="good.zip", progress=False)
    msg = str(e.value)
    assert f"expected {expected}" in msg and f"got {sha(files[name])}" in msg
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("name,why", [("corrupt.zip", "corrupt"), ("truncated.zip", "not a zip")])
def test_bad_archive_with_matching_hash_fails_extraction(server, dest, name, why):
    url, files = server
    with pytest.raises(DownloadError, match=why):
        download(f"{url}/{name}", dest, sha(files[name]), progress=False)
    assert list(dest.iterdir()) == []


def test_connection_closed_early(server, dest):
    url, files = server
    with pytest.raises(DownloadError, match="closed early|truncated"):
        download(f"{url}/short.zip", dest, sha(files["good.zip"]), progress=False)
    assert list(dest.iterdir()) == []


def test_http_error(server, dest):
    url, _ = server
    with pytest.raises(DownloadError, match="404"):
        download(f"{url}/missing.zip", dest, None, progress=False)
    assert list(dest.iterdir()) == []
