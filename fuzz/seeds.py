#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the test fixtures and small hand-made
cases (hostile ones included). Run from anywhere: python3 fuzz/seeds.py. The outputs are
committed; rerunning rewrites the seeds (files named seed-*), never the other inputs kept there
(regressions found by fuzzing are named after what they found).
"""
import gzip
import io
import json
import pathlib
import tarfile

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
CONFIG = "com.openfaas.docker.config"
SECRETS = "com.openfaas.secrets"
MTIME = 1_700_000_000


def write(target, name, data):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (out / f"seed-{name}").write_bytes(data)


# -- archive_index: request tars -------------------------------------------------------------


def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.linkname = link
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.CONTTYPE) else 0
    return info, data


def f(name, data=b"x"):
    return entry(name, data=data if isinstance(data, bytes) else data.encode())


def d(name):
    return entry(name, tarfile.DIRTYPE, mode=0o755)


def sym(name, target):
    return entry(name, tarfile.SYMTYPE, link=target, mode=0o777)


def hard(name, target, mode=0o644):
    return entry(name, tarfile.LNKTYPE, link=target, mode=mode)


def tar(entries, fmt=tarfile.GNU_FORMAT, config=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        if config:
            info, data = f(CONFIG, '{"image":"127.0.0.1:5000/fn:1"}')
            t.addfile(info, io.BytesIO(data))
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.size else None)
    # tarfile pads to 10 KiB records; two zero blocks end an archive, the rest only costs.
    raw = buf.getvalue().rstrip(b"\0")
    return raw + b"\0" * (-len(raw) % 512 + 1024)


DOCKERFILE = f("context/Dockerfile", "FROM scratch\nCOPY . /\n")
BASIC = [
    d("context/"),
    DOCKERFILE,
    d("context/src"),
    f("context/src/main.rs", "fn main() {}\n"),
    sym("context/current", "src/main.rs"),
    hard("context/copy", "context/src/main.rs"),
    f("context/.dockerignore", "*.md\n!README.md\n"),
]


def archive_seeds():
    w = lambda name, entries, **kw: write("archive_index", name, tar(entries, **kw))
    w("minimal", [DOCKERFILE])
    w("basic", BASIC)
    write("archive_index", "basic-gzip", gzip.compress(tar(BASIC), mtime=0))
    # Two gzip members: decompressed as one stream.
    plain = tar(BASIC)
    write(
        "archive_index",
        "gzip-two-members",
        gzip.compress(plain[:1024], mtime=0) + gzip.compress(plain[1024:], mtime=0),
    )
    w("pax", BASIC + [f("context/" + "long/" * 30 + "name", "deep")], fmt=tarfile.PAX_FORMAT)
    w("gnu-long-name", [DOCKERFILE, f("context/" + "n" * 200 + "/x", "long")])
    w("dot-slash", [f("./context/Dockerfile", "FROM scratch\n"), d("./context/a/")])
    w("dockerfile-via-link", [d("context/build"), f("context/build/Dockerfile", "FROM scratch\n"),
                              sym("context/Dockerfile", "build/Dockerfile")])
    w("dotdot", [DOCKERFILE, f("context/../etc/passwd", "root")])
    w("absolute", [DOCKERFILE, f("/etc/passwd", "root")])
    w("link-escapes", [DOCKERFILE, sym("context/l", "../../etc")])
    w("link-absolute", [DOCKERFILE, sym("context/l", "/etc/passwd")])
    w("link-chain-climbs", [DOCKERFILE, sym("context/l0", "."), sym("context/l1", "l0/.."),
                            sym("context/l2", "l1/.."), sym("context/l3", "l2/../x")])
    w("link-loop", [DOCKERFILE, sym("context/a", "b"), sym("context/b", "a")])
    w("link-inside-chain", [DOCKERFILE, d("context/d"), sym("context/d/up", ".."),
                            sym("context/top", "d/up/d/up/Dockerfile")])
    w("entry-under-link", [DOCKERFILE, d("context/d"), sym("context/l", "d"), f("context/l/x")])
    w("hardlink-outside", [DOCKERFILE, hard("context/h", "/etc/passwd")])
    w("hardlink-dotdot", [DOCKERFILE, hard("context/h", "context/../../etc/passwd")])
    w("hardlink-later", [DOCKERFILE, hard("context/h", "context/z"), f("context/z")])
    w("hardlink-through-link", [DOCKERFILE, sym("context/l", "."), f("context/f"),
                                hard("context/h", "context/l/f")])
    # One inode, three names across dirs, one header with another mode; then a name replaced.
    w("hardlink-group", [DOCKERFILE, f("context/a", "data"), hard("context/d/b", "context/a"),
                         hard("context/e/c", "context/d/b", mode=0o755), f("context/a", "new"),
                         hard("context/n", "context/a")])
    w("fifo", [DOCKERFILE, entry("context/p", tarfile.FIFOTYPE)])
    w("dir-replaced", [DOCKERFILE, d("context/a"), f("context/a", "file")])
    w("file-then-dir", [DOCKERFILE, f("context/a"), d("context/a")])
    w("outside-context", [DOCKERFILE, f("other/x")])
    w("no-config", [DOCKERFILE], config=False)
    w("no-dockerfile", [f("context/x")])
    w("dockerfile-is-dir", [d("context/Dockerfile")])
    w("context-is-file", [f("context", "x")])
    secrets = (ROOT / "tests/fixtures/sealed/secrets.yaml").read_bytes()
    w("secrets", [DOCKERFILE, f(SECRETS, secrets)])
    truncated = tar(BASIC)
    write("archive_index", "truncated", truncated[: len(truncated) // 2 + 100])
    write("archive_index", "empty", b"")
    write("archive_index", "gzip-truncated", gzip.compress(tar(BASIC), mtime=0)[:200])


# -- build_config -----------------------------------------------------------------------------


def build_config_seeds():
    cases = {
        "image": {"image": "127.0.0.1:5000/fn:1"},
        "full": {
            "image": "registry.example.com:5000/acme/fn:1.2.3",
            "buildArgs": {"GO_VERSION": "1.22", "EMPTY": ""},
            "platforms": ["linux/amd64", "linux/arm/v7"],
            "skipPush": False,
            "cache": {"from": ["reg:5000/acme/fn:cache"], "to": "reg:5000/acme/fn:cache"},
            "frontendAttrs": {"x": "y"},
        },
        "skip-push": {"skipPush": True},
        "bad-image": {"image": "Foo//bar"},
        "bad-type": {"image": "a/b", "buildArgs": {"FOO": 1}},
        "bad-platform": {"image": "a/b", "platforms": ["linux"]},
        "bad-cache": {"image": "a/b", "cache": {"from": ["UPPER/x"]}},
        "bad-arg-name": {"image": "a/b", "buildArgs": {"A=B": "x"}},
        "digest": {"image": "a/b@sha256:" + "0" * 64},
        "localhost": {"image": "localhost:5000"},
    }
    for name, value in cases.items():
        write("build_config", name, json.dumps(value))
    write("build_config", "not-json", "{\"image\": ")
    write("build_config", "array", "[1, 2]")


# -- signature --------------------------------------------------------------------------------


def signature_seeds():
    digest = "5b2a1f" + "0" * 58
    cases = {
        "good": "sha256=" + digest,
        "upper": "sha256=" + digest.upper(),
        "spaces": "sha256=  " + digest + " \t",
        "short": "sha256=" + digest[:62],
        "odd": "sha256=" + digest[:63],
        "sha1": "sha1=" + digest[:40],
        "no-prefix": digest,
        "empty": "",
        "nonhex": "sha256=" + "zz" * 32,
    }
    for name, value in cases.items():
        write("signature", name, value)


# -- dockerignore: `ignore file \0 paths \0 include patterns` ---------------------------------


def dockerignore_seeds():
    paths = "Dockerfile\nREADME.md\ndocs/keep.txt\ndocs/x.md\nnode_modules/a/b.js\nsrc/main.rs\na-b\na.txt\na/x"
    cases = {
        "example": ((ROOT / "examples/hello/.dockerignore").read_text(), paths, ""),
        "template": ((ROOT / "template/rust-http/.dockerignore").read_text(), paths, ""),
        "exceptions": ("docs\n!docs/keep.txt\nnode_modules\n", paths, ""),
        "last-wins": ("*.md\n!README.md\nREADME.md\n", paths, ""),
        "double-star": ("**/*.js\n**/gen\nsrc/**\n!src/**/main.rs\n", paths + "\nsrc/gen/x.rs", ""),
        "classes": ("[a-c]*\n?.txt\n[^x]*\n\\*\n", paths + "\n*\nb.txt", ""),
        "clean": ("/leading\n./x\na//b/../c/\n! /docs/keep.txt\n/\n.\n../up\n", paths, ""),
        "bom-comments": ("\ufeff# comment\n\n  *.md  \r\n  # not a comment\n", paths, ""),
        "include": ("src/gen\n", paths, "src\n**/x\n"),
        "include-blank": ("", paths, "\n"),
        "bad-class": ("[a\n", paths, ""),
        "bad-escape": ("a\\", paths, ""),
        "lone-bang": ("!\n", paths, ""),
        "reversed-range": ("[z-a]\n", paths, ""),
        "suffix-fast-path": ("**.log\n**foo\n", "x/a.log\nbarfoo\nfoo", ""),
    }
    for name, (ignore, p, include) in cases.items():
        write("dockerignore", name, f"{ignore}\0{p}\0{include}")


# -- sealed -----------------------------------------------------------------------------------


def sealed_seeds():
    fixture = (ROOT / "tests/fixtures/sealed/secrets.yaml").read_text()
    write("sealed", "fixture", fixture)
    write("sealed", "other-version", fixture.replace("version: v1", "version: v2"))
    write("sealed", "other-algorithm", fixture.replace("nacl/box", "rsa"))
    write("sealed", "other-key-id", fixture.replace("key_id: rL6rAa/D", "key_id: AAAAAAAA"))
    write("sealed", "bad-sender", fixture.replace("public_key: hBnH", "public_key: hB"))
    lines = fixture.splitlines()
    head = "\n".join(l for l in lines if not l.startswith("  ") and l != "secrets:")
    write("sealed", "bad-base64", head + "\nsecrets:\n  token: '!!!'\n")
    write("sealed", "short-value", head + "\nsecrets:\n  token: AAAA\n")
    write("sealed", "bad-name", head + "\nsecrets:\n  'a/b': AAAA\n")
    write("sealed", "no-secrets", head + "\nsecrets: {}\n")
    write("sealed", "not-yaml", "version: [v1\n")


# -- docker_config ----------------------------------------------------------------------------


def docker_config_seeds():
    import base64

    b64 = lambda s: base64.b64encode(s.encode()).decode()
    cases = {
        "auth": {"auths": {"127.0.0.1:5000": {"auth": b64("user:pa:ss")}}},
        "hub": {"auths": {"https://index.docker.io/v1/": {"auth": b64("alex:secret")}}},
        "fields": {"auths": {"ghcr.io": {"username": "u", "password": "p"},
                             "https://reg.example.com/v2/": {"identitytoken": "tok"},
                             "reg2": {"registrytoken": "rt"}}},
        "unpadded": {"auths": {"reg": {"auth": b64("u:p").rstrip("=")}}},
        "null": {"auths": {"reg": None}, "credsStore": None, "credHelpers": None},
        "bad-auth": {"auths": {"reg": {"auth": b64("nocolon")}}},
        "empty-user": {"auths": {"reg": {"auth": b64(":p")}}},
        "helpers": {"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "reg": ""}},
        "empty-helper": {"auths": {"reg": {"auth": b64("u:p")}}, "credHelpers": {"reg": ""}},
        "extra": {"auths": {}, "HttpHeaders": {"User-Agent": "x"}, "experimental": "enabled"},
    }
    for name, value in cases.items():
        write("docker_config", name, json.dumps(value))
    write("docker_config", "empty", "  \n")
    write("docker_config", "syntax", '{"auths": {"reg": {"auth": "')
    write("docker_config", "wrong-type", '{"auths": []}')


# -- stack ------------------------------------------------------------------------------------


def stack_seeds():
    write("stack", "repository", (ROOT / "stack.yml").read_text())
    simple = """version: 1.0
provider:
  name: openfaas
functions:
  fn:
    lang: rust-http
    handler: ./fn
    image: ${REGISTRY:-127.0.0.1:5000}/fn:${TAG}
    build_args:
      A: $OWNER-$$HOME
    build_options: [dev]
    build_secrets:
      token: ./token.txt
    platforms: linux/amd64, linux/arm64
configuration:
  copy:
    - ./proto
    - ../outside
    - /etc
    - a/../b/
"""
    write("stack", "simple", simple)
    write("stack", "two-functions", simple.replace("functions:\n", "functions:\n  other:\n    lang: dockerfile\n    handler: ./other\n    skip_build: true\n"))
    write("stack", "faasd", simple.replace("name: openfaas", "name: faasd"))
    write("stack", "version-2", simple.replace("version: 1.0", "version: 2.0"))
    write("stack", "unclosed", "image: ${OWNER\n")
    write("stack", "bash-operator", "image: ${OWNER^^}\n")
    write("stack", "no-name", "image: ${:-x}\n")
    write("stack", "not-yaml", "functions: [\n")
    write("stack", "no-functions", "provider:\n  name: openfaas\n")


if __name__ == "__main__":
    archive_seeds()
    build_config_seeds()
    signature_seeds()
    dockerignore_seeds()
    sealed_seeds()
    docker_config_seeds()
    stack_seeds()
