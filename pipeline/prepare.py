"""prepare: fetch the four MNIST IDX files and verify them against known SHA-256 sums.

Sources are torchvision's MNIST mirrors, or only the folder / file:// / http(s) URL in the
MNIST_MIRROR environment variable when it is set (offline machines). A source that sends nothing
for MNIST_TIMEOUT seconds (default 30) is given up; nothing is written unless all four files
arrive intact.
"""
from __future__ import annotations

import gzip
import http.client
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from pipeline import stage
from pipeline.io import PipelineError, atomic_dir, sha256_bytes
from pipeline.layout import RAW_DIR

# SHA-256 of the decompressed files: the originals, whatever mirror or compression they came in.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
DEFAULT_TIMEOUT_S = 30.0
OFFLINE_HINT = "on a machine without internet, set MNIST_MIRROR to a folder or file:// URL holding the four .gz files"


def official_mirrors() -> list[str]:
    from torchvision.datasets import MNIST
    return list(MNIST.mirrors)


def sources() -> list[str]:
    mirror = os.environ.get("MNIST_MIRROR")
    return [mirror] if mirror else official_mirrors()


def timeout_s() -> float:
    """Seconds a source may stay silent (MNIST_TIMEOUT) before it is given up."""
    value = os.environ.get("MNIST_TIMEOUT", "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise PipelineError(f"MNIST_TIMEOUT: expected a number of seconds > 0, got {value!r}")
    return seconds


def read_source(source: str, filename: str, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """Bytes of `filename` from a URL (http, https, file) or a local folder."""
    if source.startswith(("http://", "https://", "file://")):
        url = source.rstrip("/") + "/" + filename
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    return (Path(source) / filename).read_bytes()


def _unreachable(error: Exception) -> bool:
    """A failure of the source itself (no answer, refused), not of one file: skip it from now on."""
    reason = getattr(error, "reason", error)
    return isinstance(reason, (TimeoutError, ConnectionError)) or "timed out" in str(reason)


def fetch_verified(name: str, expected: str, candidates: list[str], timeout: float = DEFAULT_TIMEOUT_S,
                   dead: set | None = None) -> bytes:
    """The decompressed file `name` from the first source that has it with the right checksum.
    Sources found unreachable are added to `dead` and not tried again."""
    problems, dead = [], dead if dead is not None else set()
    for source in candidates:
        if source in dead:
            problems.append(f"{source}: skipped, it did not answer before")
            continue
        try:
            data = gzip.decompress(read_source(source, name + ".gz", timeout))
        except (OSError, urllib.error.URLError, http.client.HTTPException, EOFError, zlib.error, ValueError) as e:
            if _unreachable(e):
                dead.add(source)
                problems.append(f"{source}: no answer within {timeout:g}s (MNIST_TIMEOUT)")
            else:
                problems.append(f"{source}: {type(e).__name__}: {getattr(e, 'reason', None) or e}")
            continue
        actual = sha256_bytes(data)
        if actual == expected:
            return data
        problems.append(f"{source}: SHA-256 mismatch (got {actual[:12]}..., expected {expected[:12]}...), "
                        "the file is corrupt or truncated")
    hint = "" if os.environ.get("MNIST_MIRROR") else f"; {OFFLINE_HINT}"
    raise PipelineError(f"could not get a verified {name}.gz: {'; '.join(problems)}{hint}")


def prepare(out_dir: Path = RAW_DIR) -> None:
    candidates, timeout, dead = sources(), timeout_s(), set()
    verified = {name: fetch_verified(name, sha, candidates, timeout, dead) for name, sha in SHA256.items()}
    with atomic_dir(out_dir) as tmp:  # written only once all four are verified, and all at once
        for name, data in verified.items():
            (tmp / name).write_bytes(data)


def main(argv=None) -> None:
    stage.parse_args(__doc__.splitlines()[0], argv)
    prepare()
    print(f"prepare: {len(SHA256)} MNIST files verified in {RAW_DIR}/")


if __name__ == "__main__":
    stage.run_as_script(main)
