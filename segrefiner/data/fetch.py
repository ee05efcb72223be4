"""Pinned downloads of public archives, cached and verified, and safe reads of their members.

Every file the project downloads is pinned in one table (:data:`SOURCES`): name, version, URL,
sha256 and licence. :func:`fetch` returns the cached copy when its sha256 matches, otherwise
downloads it with urllib over HTTPS into a temporary file beside the cache entry, checks the
hash and renames it into place, so the cache never holds a partial or unverified file.

Cache folder: ``--cache`` / ``cache=`` if given, else ``$SEGREFINER_CACHE`` (the downloads folder
itself), else ``~/.cache/segrefiner/downloads``. A file can be put there by hand (same file name)
on a machine without network; ``offline=True`` never touches the network.

Archive members are read straight from the ``.tar.gz``/``.zip`` (nothing is extracted to disk);
member names are checked first (:func:`check_member_name`): absolute names, ``..`` parts,
backslashes and non-regular members (links, devices) are refused, so a member can never name a
path outside the folder it would be written to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from segrefiner.errors import InputError
from segrefiner.io import file_sha256

CACHE_ENV = "SEGREFINER_CACHE"
DEFAULT_CACHE = Path("~/.cache/segrefiner/downloads")
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One pinned download: ``url`` must give bytes whose sha256 is ``sha256`` (hex)."""

    name: str
    version: str
    url: str
    sha256: str
    licence: str

    @property
    def filename(self) -> str:
        """The cache file name: the last part of the URL (``labelme-6.3.1.tar.gz``)."""
        return self.url.rsplit("/", 1)[-1]


def _by_name(*sources: Source) -> dict[str, Source]:
    return {s.name: s for s in sources}


_PYPI = "https://files.pythonhosted.org/packages"

# The sdists the real-photo data set is built from (see segrefiner.data.real). labelme is
# GPL-3.0: it is read at build time only, nothing of it is copied into this repository.
SOURCES: dict[str, Source] = _by_name(
    Source(
        "labelme-toolkit",
        "1.3.3",
        f"{_PYPI}/e1/80/e6745da2a749f2f16a9edc8a16d81cadd51a5f0611c1b7c41c4092cca729/"
        "labelme_toolkit-1.3.3.tar.gz",
        "3c731671db201269eb927e0f521a169184fc9741658e5c2ffcb4047edaa4207d",
        "MIT",
    ),
    Source(
        "labelme",
        "6.3.1",
        f"{_PYPI}/0f/6f/353ca36fe1a3a5fa31cc1cf93c7438dd43f0ac8a16269c3912055f0112e2/"
        "labelme-6.3.1.tar.gz",
        "2947e0d8341a92faa7b3ee50cf4b672f838051c6bf24892526e95b64fd3a707e",
        "GPL-3.0",
    ),
    Source(
        "realesrgan",
        "0.3.0",
        f"{_PYPI}/75/40/4af728ed9c48ac65634976535f36afd421de39315920e5f740049a6524a6/"
        "realesrgan-0.3.0.tar.gz",
        "0d36da96ab9f447071606e91f502ccdfb08f80cc82ee4f8caf720c7745ccec7e",
        "BSD-3-Clause",
    ),
    Source(
        "scikit-image",
        "0.26.0",
        f"{_PYPI}/a1/b4/2528bb43c67d48053a7a649a9666432dc307d66ba02e3a6d5c40f46655df/"
        "scikit_image-0.26.0.tar.gz",
        "f5f970ab04efad85c24714321fcc91613fcb64ef2a892a13167df2f3e59199fa",
        "BSD-3-Clause",
    ),
    Source(
        "scikit-learn",
        "1.9.1",
        f"{_PYPI}/d2/eb/eaf5e07fcc0da7149b0e084f24e54edd7441b9a89ce7e034032ae97fe3a0/"
        "scikit_learn-1.9.1.tar.gz",
        "629cada3e33e2b9bf376cdc7614a47a4140b8aedc1d836579e359736fbd82977",
        "BSD-3-Clause",
    ),
)


_DEBIAN = "http://deb.debian.org/debian/pool/main"

# Debian packages read by the HR training-set builder (segrefiner.data.hr_train). Debian's pool
# is served over plain HTTP (its archive is signed, not its transport): the pinned sha256 is
# what makes the file trusted. The photographs are GPL-2+; read at build time, never copied
# into this repository.
HR_SOURCES: dict[str, Source] = _by_name(
    Source(
        "mate-backgrounds",
        "1.26.0-1",
        f"{_DEBIAN}/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
        "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
        "GPL-2+",
    ),
)


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The downloads folder: ``cache``, else ``$SEGREFINER_CACHE``, else
    ``~/.cache/segrefiner/downloads`` (not created here)."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (:func:`segrefiner.io.file_sha256`)."""
    return file_sha256(path)


def fetch(source: Source, cache: str | os.PathLike | None = None, offline: bool = False) -> Path:
    """The verified local copy of ``source`` (downloaded into the cache when absent).

    Raises :class:`InputError` naming the file and the remedy when the cached or downloaded
    bytes do not match the pinned sha256, when the download fails, or when ``offline`` and the
    file is not cached.
    """
    folder = cache_dir(cache)
    path = folder / source.filename
    manual = (
        f"download {source.url} by hand and put it in {folder}/ (its sha256 must be "
        f"{source.sha256})"
    )
    if path.is_file():
        actual = sha256_file(path)
        if actual == source.sha256:
            return path
        raise InputError(
            f"{path}: sha256 mismatch for {source.name} {source.version} (cached file has "
            f"{actual}, expected {source.sha256}); delete it and run again, or {manual}"
        )
    if offline:
        raise InputError(
            f"{path}: {source.name} {source.version} is not cached (offline); {manual}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _urlopen(source, manual) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != source.sha256:
            raise InputError(
                f"{source.url}: sha256 mismatch for {source.name} {source.version} (downloaded "
                f"{actual}, expected {source.sha256}); the file was not kept. Check the URL or "
                f"{manual}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is shared with the user
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def _urlopen(source: Source, manual: str) -> Iterator:
    try:
        with urllib.request.urlopen(source.url, timeout=TIMEOUT_S) as response:
            yield response
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(
            f"{source.url}: download of {source.name} {source.version} failed ({exc}); "
            f"check the network or {manual}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Archive members


def check_member_name(name: str, archive: str | os.PathLike) -> str:
    """A member name that stays inside the folder it is extracted to, normalised
    (``a/./b`` -> ``a/b``); absolute names, drive letters, backslashes and ``..`` are refused."""
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
        or ".." in name.split("/")
    ):
        raise InputError(f"{archive}: member {name!r} leaves the output folder; refusing it")
    return posixpath.normpath(name)


def read_members(archive: str | os.PathLike, wanted: Collection[str]) -> dict[str, bytes]:
    """Read the named regular-file members of a ``.tar.gz``/``.tar``/``.zip`` in one pass.

    Returns ``{name: bytes}``; a missing member, or one that is a link or not a regular file, is
    an :class:`InputError` naming the archive and the member.
    """
    wanted = {check_member_name(n, archive) for n in wanted}
    found: dict[str, bytes] = {}
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    name = posixpath.normpath(info.filename)
                    if name in wanted and not info.is_dir():
                        found[name] = zf.read(info)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    name = posixpath.normpath(member.name)
                    if name not in wanted:
                        continue
                    if not member.isfile():
                        raise InputError(
                            f"{archive}: member {member.name!r} is not a regular file "
                            "(link or device); refusing it"
                        )
                    fh = tf.extractfile(member)
                    assert fh is not None  # regular files always have data
                    found[name] = fh.read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"{archive}: unreadable archive ({exc})") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise InputError(f"{archive}: missing member(s) {', '.join(missing)}")
    return found


def deb_members(
    archive: str | os.PathLike, prefix: str, suffixes: tuple[str, ...]
) -> dict[str, bytes]:
    """Regular files of a Debian package's data archive under ``prefix`` whose names end with
    one of ``suffixes`` (case-insensitive), names checked (see :func:`check_member_name`).

    A ``.deb`` is an ``ar`` archive holding ``data.tar.{xz,gz,zst}``; xz and gz are read.
    Returns ``{name without a leading ./: bytes}``; :class:`InputError` naming the archive when
    it is not a ``.deb`` or holds nothing that matches.
    """
    import io as _io

    archive = Path(archive)
    data = None
    try:
        with open(archive, "rb") as fh:
            if fh.read(8) != b"!<arch>\n":
                raise InputError(f"{archive}: not a Debian package (no ar header)")
            while header := fh.read(60):
                if len(header) < 60:
                    break
                name = header[:16].decode("ascii", "replace").strip().rstrip("/")
                size = int(header[48:58].decode("ascii").strip())
                body = fh.read(size)
                fh.read(size % 2)  # members are 2-byte aligned
                if name.startswith("data.tar"):
                    data = (name, body)
                    break
    except (OSError, ValueError) as exc:
        raise InputError(f"{archive}: unreadable Debian package ({exc})") from exc
    if data is None:
        raise InputError(f"{archive}: no data.tar member in this Debian package")
    name, body = data
    if not name.endswith((".xz", ".gz", ".tar")):
        raise InputError(f"{archive}: {name} is compressed in a way this reader does not know")
    prefix = prefix.strip("/")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=_io.BytesIO(body), mode="r:*") as tf:
            for member in tf:
                clean = member.name[2:] if member.name.startswith("./") else member.name
                if not member.isfile() or not clean.lower().endswith(suffixes):
                    continue
                clean = check_member_name(clean, archive)
                if not clean.startswith(prefix + "/"):
                    continue
                fh = tf.extractfile(member)
                assert fh is not None
                found[clean] = fh.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{archive}: unreadable {name} ({exc})") from exc
    if not found:
        raise InputError(f"{archive}: no {'/'.join(suffixes)} files under {prefix}/")
    return found


def zip_members(data: bytes, where: str) -> dict[str, bytes]:
    """All regular-file members of an in-memory zip, names checked (see
    :func:`check_member_name`); ``where`` names the zip in errors."""
    import io as _io

    try:
        with zipfile.ZipFile(_io.BytesIO(data)) as zf:
            out: dict[str, bytes] = {}
            for info in zf.infolist():
                name = check_member_name(info.filename, where)
                if info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink entry
                    raise InputError(f"{where}: member {info.filename!r} is a link; refusing it")
                out[name] = zf.read(info)
            return out
    except zipfile.BadZipFile as exc:
        raise InputError(f"{where}: unreadable zip ({exc})") from exc
