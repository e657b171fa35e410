"""Reliability figures the project keeps: hostile inputs against the parser, the demo, eval resume and pickles.

Four checks, each printing its counts (docs/benchmarks.md records them):

* ``parser``: N strings (default 100,000; seeded) through ``segr1.answer.parse_answer``: random unicode,
  mutated valid answers, huge numbers, nan/inf, deep nesting, very long inputs, code in the coordinates.
  Counts exceptions (raised, or caught inside as "internal error"), evaluations (``exec``/``compile`` audit
  events while parsing: none may happen) and per-string time (p50, p99, max).
* ``demo``: a local demo server (fake red-blob policy + GrabCut, so it measures the server, not a model)
  gets hostile uploads: truncated, decompression bomb, non-images, over-size file, 9000x9000 greyscale, an
  inline data-URL bomb, a flat image (GrabCut's slow case), path tricks on Gradio's file routes, then
  concurrent clients. Counts refused-as-expected, correct answers, leaks, and the process's RSS growth.
* ``resume``: ``segr1 eval foreground`` on synthetic scenes killed (SIGKILL) mid-run, then rerun into the
  same ``--out``: its metrics.json must equal an uninterrupted run's, byte for byte.
* ``pickle``: malicious refer pickles (code-running reduce payloads, every import opcode, persistent ids,
  hostile length fields) through ``segr1.data.safe_pickle.safe_loads``: refused, none executed.

    python benchmarks/robustness.py                      # all four, 100,000 parser strings
    python benchmarks/robustness.py --only parser --n 2000
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pickle
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("parser", "demo", "resume", "pickle")
MAX_RSS_GROWTH_MB = 200  # the demo check fails above this growth of the server process

# ----------------------------------------------------------------------------------------------- parser

VALID = (
    "<think>the object is in the middle</think> <bbox>[12,30,200,180]</bbox>, "
    "<points>[[100,90],[40,40]]</points>, <labels>[1,0]</labels>"
)
CODE = (
    "__import__('os').system('touch /tmp/segr1-pwned')",
    "eval('1+1')",
    "exec('x=1')",
    "lambda: 0",
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd').read()",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "f'{1+1}'",
    "1 if True else 0",
)
NUMBERS = (
    "1e308",
    "-1e999",
    "9" * 400,
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "0x10",
    "1_000",
    "1e-400",
    "+-1",
    "１２",
)


def _random_unicode(rng: random.Random) -> str:
    n = rng.randint(0, 300)
    pools = (
        (0x20, 0x7E),
        (0xA0, 0x2FFF),
        (0x4E00, 0x9FFF),
        (0xD800, 0xDFFF),
        (0x1F300, 0x1FAFF),
        (0, 0x10FFFF),
    )
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _mutated(rng: random.Random) -> str:
    text = list(VALID)
    for _ in range(rng.randint(1, 12)):
        op = rng.random()
        i = rng.randrange(len(text)) if text else 0
        if op < 0.3 and text:
            del text[i]
        elif op < 0.6:
            text.insert(i, rng.choice("[]<>,./-0123456789 e\n\\\"'"))
        elif op < 0.8 and text:
            text[i] = chr(rng.randint(0, 0x2FFF))
        else:
            j = rng.randrange(len(text) + 1)
            text[i:i] = text[min(i, j) : max(i, j)][:200]
    return "".join(text)


def _with_numbers(rng: random.Random) -> str:
    values = [rng.choice(NUMBERS) for _ in range(4)]
    return f"<think>x</think> <bbox>[{','.join(values)}]</bbox>, <points>[[{values[0]},{values[1]}]]</points>"


def _nested(rng: random.Random) -> str:
    k = rng.choice((10, 100, 1000, 10_000))
    return f"<bbox>{'[' * k}1,2,3,4{']' * k}</bbox> <points>{'[' * k}{']' * k}</points>"


def _long(rng: random.Random) -> str:
    size = rng.choice((10_000, 100_000, 1_000_000))
    unit = rng.choice(("<bbox>[1,", "[[1,2],", "<think>", "9", "<" * 7, VALID))
    return (unit * (size // len(unit) + 1))[:size]


def _code(rng: random.Random) -> str:
    c = rng.choice(CODE)
    return rng.choice(
        (
            f"<bbox>[{c},2,3,4]</bbox>",
            f"<points>[[{c},1]]</points>, <labels>[{c}]</labels>",
            f"<think>{c}</think> <bbox>[1,2,{c}]</bbox>",
            c,
        )
    )


GENERATORS = (
    ("random unicode", _random_unicode, 0.35),
    ("mutated answers", _mutated, 0.35),
    ("huge numbers / nan / inf", _with_numbers, 0.12),
    ("code in coordinates", _code, 0.12),
    ("deep nesting", _nested, 0.04),
    ("very long", _long, 0.02),
)


def fuzz_parser(n: int = 100_000, seed: int = 0) -> dict:
    """Parse ``n`` generated strings; counts of exceptions, evaluations, invalid results and times."""
    from segr1.answer import SegPrompt, parse_answer

    rng = random.Random(seed)
    names = [g[0] for g in GENERATORS]
    weights = [g[2] for g in GENERATORS]
    gens = {g[0]: g[1] for g in GENERATORS}
    watch = {"on": False, "events": 0}

    def audit(event: str, args: tuple) -> None:
        if watch["on"] and event in ("exec", "compile"):
            watch["events"] += 1

    sys.addaudithook(audit)  # cannot be removed; it only counts while watch["on"]
    parse_answer(VALID)  # warm-up: lazy imports happen outside the watched window
    per_kind = dict.fromkeys(names, 0)
    exceptions = internal = bad = 0
    times = []
    marker = Path("/tmp/segr1-pwned")
    marker.unlink(missing_ok=True)
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        text = gens[kind](rng)
        per_kind[kind] += 1
        t = time.perf_counter()
        watch["on"] = True
        try:
            prompt = parse_answer(text)
        except Exception:
            exceptions += 1
            continue
        finally:
            watch["on"] = False
            times.append(time.perf_counter() - t)
        if any(e.startswith("internal error") for e in prompt.validity.errors):
            internal += 1
        if not _well_formed(prompt, SegPrompt):
            bad += 1
    times_ms = np.asarray(times) * 1000
    return {
        "strings": n,
        "by kind": per_kind,
        "exceptions": exceptions,
        "internal errors": internal,
        "evaluations": watch["events"],
        "malformed results": bad,
        "code ran": marker.exists(),
        "p50 ms": round(float(np.percentile(times_ms, 50)), 3),
        "p99 ms": round(float(np.percentile(times_ms, 99)), 3),
        "max ms": round(float(times_ms.max()), 3),
    }


def _well_formed(p, SegPrompt) -> bool:
    """The invariants every parse result keeps: shapes, finite bounded numbers, labels in {0, 1}."""
    from segr1.answer import MAX_ABS_COORD, MAX_BOXES, MAX_POINTS

    if not isinstance(p, SegPrompt):
        return False
    b, pts, lab = np.asarray(p.boxes), np.asarray(p.points), np.asarray(p.labels)
    return (
        b.ndim == 2
        and b.shape[1] == 4
        and b.shape[0] <= MAX_BOXES
        and pts.ndim == 2
        and pts.shape[1] == 2
        and pts.shape[0] <= MAX_POINTS
        and lab.shape == (pts.shape[0],)
        and bool(np.isfinite(b).all() and np.isfinite(pts).all())
        and bool((np.abs(b) <= MAX_ABS_COORD).all() and (np.abs(pts) <= MAX_ABS_COORD).all())
        and set(np.unique(lab).tolist()) <= {0, 1}
    )


# ------------------------------------------------------------------------------------------------- demo


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _png(
    image: np.ndarray | None = None, mode: str = "RGB", size: tuple[int, int] = (8, 8), fill: int = 0
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(image) if image is not None else Image.new(mode, size, fill)
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _bomb() -> bytes:
    data = bytearray(_png(mode="1", size=(1, 1)))
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_hostile(n_concurrent: int = 40, workers: int = 10) -> dict:
    """Hostile uploads and file-route requests against a local demo; counts and RSS growth."""
    import httpx

    from segr1.app.demo import build_app, launch, make_pipelines
    from segr1.app.fakes import RedBlobPolicy, iou, red_disc_scene
    from segr1.app.handler import DemoLimits
    from segr1.segmenters import load_segmenter

    limits = DemoLimits(max_upload_mb=2, max_pixels=4096 * 4096, concurrency=2, max_queue=64)
    tmp = Path(tempfile.mkdtemp(prefix="segr1-robust-"))
    app = build_app(
        make_pipelines(RedBlobPolicy(frame=256), load_segmenter("grabcut")),
        examples=[],
        limits=limits,
        out_dir=tmp / "masks",
    )
    port = _free_port()
    launch(app, "127.0.0.1", port, limits, block=False, quiet=True)
    base = f"http://127.0.0.1:{port}"
    counts = {
        "hostile uploads": 0,
        "refused with a message": 0,
        "unexpected answers": 0,
        "path tricks": 0,
        "leaks": 0,
    }
    slowest = 0.0

    def call(
        http: httpx.Client, blob: bytes | None, name: str = "x.png", url: str | None = None
    ) -> tuple[str, object]:
        if url is None:
            r = http.post("/gradio_api/upload", files={"files": (name, blob, "image/png")})
            if r.status_code != 200:
                return "http", r.status_code
            (path,) = r.json()
            image = {"path": path, "meta": {"_type": "gradio.FileData"}}
        else:
            image = {"url": url, "meta": {"_type": "gradio.FileData"}}
        body = {"data": [image, "foreground", ""]}
        event = http.post("/gradio_api/call/segment", json=body).json()["event_id"]
        text = http.get(f"/gradio_api/call/segment/{event}").text
        kind, data = "", None
        for block in text.strip().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            kind, data = fields.get("event", ""), json.loads(fields.get("data", "null"))
        return kind, data

    rng = np.random.default_rng(0)
    noise = _png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    big_grey = _png(mode="L", size=(9000, 9000), fill=7)
    hostile = {
        "truncated png": noise[: len(noise) // 2],
        "decompression bomb": _bomb(),
        "text": b"this is not an image",
        "html": b"<html><script>alert(1)</script></html>",
        "zip magic": b"PK\x03\x04" + bytes(100),
        "empty": b"",
        "9000x9000 greyscale": big_grey,
        "over-size file": rng.bytes(3 * 2**20),
    }
    with httpx.Client(base_url=base, timeout=120) as http:
        warm, _ = red_disc_scene(200, 160, 60, 70, 30, seed=99)
        assert call(http, _png(warm))[0] == "complete"  # imports and caches warm before RSS is read
        rss0 = _rss_mb()
        for blob in hostile.values():
            counts["hostile uploads"] += 1
            t = time.perf_counter()
            kind, data = call(http, blob)
            slowest = max(slowest, time.perf_counter() - t)
            ok = (kind == "http" and data == 413) or (
                kind == "error" and isinstance(data, dict) and data.get("error")
            )
            counts["refused with a message"] += bool(ok)
            counts["unexpected answers"] += not ok
        for url in (
            "data:image/png;base64," + base64.b64encode(_bomb()).decode(),
            "data:image/png;base64," + base64.b64encode(big_grey).decode(),
        ):
            counts["hostile uploads"] += 1
            kind, data = call(http, None, url=url)
            ok = kind == "error" and "too many pixels" in str(data)
            counts["refused with a message"] += ok
            counts["unexpected answers"] += not ok
        flat = _png(mode="RGB", size=(600, 600), fill=255)
        t = time.perf_counter()
        kind, data = call(http, flat)
        flat_s = time.perf_counter() - t
        secret = Path("/etc/passwd").read_text()[:20]
        for route in (
            "/gradio_api/file=/etc/passwd",
            "/gradio_api/file=../../../../etc/passwd",
            "/gradio_api/file=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/file=/etc/passwd",
            f"/gradio_api/file={REPO / 'pyproject.toml'}",
            "/gradio_api/file=/proc/self/environ",
        ):
            counts["path tricks"] += 1
            r = http.get(route)
            counts["leaks"] += int(
                r.status_code == 200 and (secret in r.text or "segr1" in r.text or "PATH=" in r.text)
            )
        r = http.post(
            "/gradio_api/upload", files={"files": ("../../../../tmp/segr1-escape.png", noise, "image/png")}
        )
        counts["path tricks"] += 1
        counts["leaks"] += int(Path("/tmp/segr1-escape.png").exists())
        # concurrent clients, each with its own scene
        scenes = []
        for i in range(n_concurrent):
            image, gt = red_disc_scene(200 + 8 * (i % 5), 160, 60 + 3 * (i % 7), 70, 30, seed=i)
            scenes.append((_png(image), gt))

        def one(item):
            blob, gt = item
            with httpx.Client(base_url=base, timeout=300) as h:
                kind, data = call(h, blob)
            if kind != "complete":
                return False
            mask_path = data[1]["path"]
            from PIL import Image

            return iou(np.asarray(Image.open(mask_path)) > 128, gt) > 0.8

        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            correct = sum(pool.map(one, scenes))
        concurrent_s = time.perf_counter() - t
        alive = http.get("/").status_code == 200
    app.close()
    return {
        **counts,
        "slowest refusal s": round(slowest, 2),
        "flat 600x600 image": f"{kind} in {flat_s:.1f} s",
        "concurrent requests": n_concurrent,
        "concurrent correct": int(correct),
        "concurrent s": round(concurrent_s, 1),
        "server up after": alive,
        "RSS growth MB": round(_rss_mb() - rss0, 1),
    }


# ----------------------------------------------------------------------------------------------- resume


def eval_kill_resume(n: int = 12, kill_after: int = 4) -> dict:
    """``segr1 eval foreground`` killed with SIGKILL after ``kill_after`` records, rerun: same metrics.json?"""
    tmp = Path(tempfile.mkdtemp(prefix="segr1-resume-"))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    segr1 = [sys.executable, "-m", "segr1"]
    data = tmp / "scenes"
    subprocess.run([*segr1, "data", "synth", "--kind", "salient", "--n", str(n), "--seed", "5", "--out", str(data),
                    "--size", "160", "--no-progress"], env=env, check=True, capture_output=True)  # fmt: skip
    args = ["eval", "foreground", "--images", str(data / "images"), "--masks", str(data / "masks"),
            "--batch-size", "2", "--no-progress", "--report-n", "0"]  # fmt: skip
    subprocess.run([*segr1, *args, "--out", str(tmp / "full")], env=env, check=True, capture_output=True)
    out = tmp / "killed"
    proc = subprocess.Popen(
        [*segr1, *args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    records = out / "samples.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_file() and records.read_bytes().count(b"\n") >= kill_after:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = records.read_bytes().count(b"\n") if records.is_file() else 0
    subprocess.run([*segr1, *args, "--out", str(out)], env=env, check=True, capture_output=True)
    same = (out / "metrics.json").read_bytes() == (tmp / "full" / "metrics.json").read_bytes()
    return {
        "samples": n,
        "killed with SIGKILL": killed,
        "records at kill": done_at_kill,
        "metrics.json identical": same,
    }


# ----------------------------------------------------------------------------------------------- pickle


def malicious_pickles(marker: Path) -> dict[str, bytes]:
    """Pickles that would run code (touching ``marker``), import things, or ask for absurd allocations."""
    touch = f"touch {marker}"

    class Reduce:
        def __init__(self, fn, args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return (self.fn, self.args)

    import builtins
    import importlib

    out = {
        "reduce os.system": pickle.dumps(Reduce(os.system, (touch,)), protocol=2),
        "reduce subprocess.call": pickle.dumps(
            Reduce(subprocess.call, (["touch", str(marker)],)), protocol=2
        ),
        "reduce builtins.eval": pickle.dumps(
            Reduce(builtins.eval, (f"__import__('os').system('{touch}')",)), protocol=2
        ),
        "reduce builtins.exec": pickle.dumps(
            Reduce(builtins.exec, (f"import os; os.system('{touch}')",)), protocol=4
        ),
        "nested in a list": pickle.dumps([{"ok": 1}, Reduce(os.system, (touch,))], protocol=2),
        "as a dict value": pickle.dumps({"refs": Reduce(os.system, (touch,))}, protocol=0),
        "protocol 5": pickle.dumps(Reduce(os.system, (touch,)), protocol=5),
    }
    sys_call = f"cos\nsystem\n(V{touch}\ntR.".encode()
    out["GLOBAL opcode"] = sys_call
    out["STACK_GLOBAL opcode"] = (
        b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(touch)]) + touch.encode() + b"\x85R."
    )
    out["INST opcode"] = f"(S'{touch}'\nios\nsystem\n.".encode()
    out["OBJ opcode"] = b"\x80\x02(cos\nsystem\nX" + struct.pack("<I", len(touch)) + touch.encode() + b"o."
    out["NEWOBJ opcode"] = b"\x80\x02cbuiltins\nobject\n)\x81."
    out["EXT1 opcode"] = b"\x80\x02\x82\x01."
    out["PERSID opcode"] = b"Pfoo\n."
    out["BINPERSID opcode"] = b"\x80\x02X\x03\x00\x00\x00foo Q."
    out["BUILD on a global"] = b"\x80\x02cos\n_wrap_close\n)\x81}b."
    out["huge BYTEARRAY8"] = b"\x80\x05\x96" + struct.pack("<Q", 2**60) + b"x"
    out["huge BINBYTES8"] = b"\x80\x04\x8e" + struct.pack("<Q", 2**63 - 1) + b"x"
    out["reduce builtins.getattr"] = pickle.dumps(
        Reduce(builtins.getattr, (Reduce(importlib.import_module, ("os",)), "system")), protocol=2
    )
    out["reduce importlib.import_module"] = pickle.dumps(Reduce(importlib.import_module, ("os",)), protocol=3)
    return out


def pickle_check() -> dict:
    from segr1.data.safe_pickle import safe_loads

    marker = Path(tempfile.mkdtemp(prefix="segr1-pickle-")) / "pwned"
    refused, accepted = 0, []
    for name, data in malicious_pickles(marker).items():
        try:
            safe_loads(data)
        except pickle.UnpicklingError:
            refused += 1
        except Exception as exc:  # anything but a clean refusal is a finding
            accepted.append(f"{name}: {type(exc).__name__}")
        else:
            accepted.append(f"{name}: loaded")
    return {"malicious pickles": refused + len(accepted), "refused": refused, "not refused": accepted,
            "code executed": marker.exists()}  # fmt: skip


# ------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CHECKS, action="append", help="run only these checks")
    parser.add_argument("--n", type=int, default=100_000, help="parser strings (default 100,000)")
    parser.add_argument("--concurrent", type=int, default=40, help="concurrent demo requests (default 40)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    checks = {
        "parser": lambda: fuzz_parser(args.n),
        "demo": lambda: demo_hostile(args.concurrent),
        "resume": eval_kill_resume,
        "pickle": pickle_check,
    }
    failed = False
    for name in args.only or CHECKS:
        t = time.perf_counter()
        result = checks[name]()
        print(f"## {name} ({time.perf_counter() - t:.0f} s)")
        for key, value in result.items():
            print(f"  {key}: {value}")
        failed |= not _passed(name, result)
    print("all checks passed" if not failed else "SOME CHECKS FAILED")
    return 1 if failed else 0


def _passed(name: str, r: dict) -> bool:
    if name == "parser":
        return (
            r["exceptions"] == r["internal errors"] == r["evaluations"] == r["malformed results"] == 0
            and not r["code ran"]
        )
    if name == "demo":
        return (
            r["unexpected answers"] == 0
            and r["leaks"] == 0
            and r["server up after"]
            and r["concurrent correct"] == r["concurrent requests"]
            and r["RSS growth MB"] < MAX_RSS_GROWTH_MB
        )
    if name == "resume":
        return r["metrics.json identical"]
    return not r["not refused"] and not r["code executed"]


if __name__ == "__main__":
    sys.exit(main())
