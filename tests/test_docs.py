"""The documentation site builds without a warning, and its figures script
draws what the pages claim."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_in_strict_mode(tmp_path):
    """``mkdocs build --strict``: every page, link, image, anchor and API
    docstring resolves; a warning fails the build."""
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: pip install '.[test]' brings it")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    for page in sorted((tmp_path / "site").rglob("*.html")):
        _check_published_text(page.relative_to(tmp_path / "site"), page.read_text())
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("relu", "relu_backward", "softplus", "softplus_backward", "cuda_available"):
        assert f"fastrelu.{name}" in api
    # The shared device parameters are filled in, not shown as a placeholder.
    assert "{device_parameters}" not in api and "__cuda_array_interface__" in api


# Wording about how the project is run, not about the software.
_INTERNAL = re.compile(r"\(issue \d|\bissue \d+\b|\bsessions?\b|\blent\b|/tmp/|closing note|\bgoals?\b", re.I)


def _check_published_text(name, html):
    """A page's HTML: no size like 2**28 turned into bold or emphasis by
    Markdown, no project-internal wording."""
    stray = re.search(r".{0,30}\d<(strong|em)>.{0,30}", html)
    assert stray is None, f"{name}: Markdown emphasis from a ** or * in a size: {stray.group(0)!r}"
    text = re.sub(r"<[^>]+>", " ", html)
    internal = _INTERNAL.search(text)
    assert internal is None, (
        f"{name}: project-internal wording: {text[internal.start() - 60 : internal.end() + 60]!r}"
    )


def test_the_readme_speaks_of_the_software():
    readme = (ROOT / "README.md").read_text()
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)
    sizes = re.search(r".{0,30}\d\*\*\d.{0,30}", prose)
    assert sizes is None, f"a size Markdown would turn into bold: {sizes.group(0)!r}"
    internal = _INTERNAL.search(readme)
    assert internal is None, readme[internal.start() - 60 : internal.end() + 60]


# Characters of code a page shows without cutting a line (the copy button
# sits over the end of the first line of longer ones).
CODE_WIDTH = 80


def test_code_on_the_pages_fits_their_width():
    """Code in the pages' code blocks, and the example files they include,
    fit in CODE_WIDTH characters; program output (``text`` blocks) is
    exempt."""
    long = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in re.finditer(r"```(\w*)[^\n]*\n(.*?)```", page.read_text(), re.S):
            if block.group(1) != "text":
                long += [
                    f"{page.name}: {line}" for line in block.group(2).splitlines() if len(line) > CODE_WIDTH
                ]
    for example in sorted((ROOT / "docs" / "examples").glob("*.py")):
        long += [
            f"{example.name}: {line}" for line in example.read_text().splitlines() if len(line) > CODE_WIDTH
        ]
    assert not long, "\n".join(long)


def test_the_kink_page_shows_what_fastrelu_demo_prints():
    """The demo's table on the kink page is the output of the command it
    names, line for line (the page may stop before the closing remark)."""
    page = (ROOT / "docs" / "kink.md").read_text()
    shown = re.search(r"```text\n\$ fastrelu demo\n(.*?)```", page, re.S).group(1).splitlines()
    proc = subprocess.run(
        [sys.executable, "-m", "fastrelu", "demo", "--no-plot"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    printed = printed[next(i for i, line in enumerate(printed) if line.startswith("task ")) :]
    assert len(shown) >= 10, "the page shows less than the table"
    assert shown == printed[: len(shown)], "docs/kink.md: run `fastrelu demo` and paste its table"


def _figures():
    spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_script_draws_every_figure_the_pages_show(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run(
        [sys.executable, "docs/figures.py", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    drawn = {p.name for p in tmp_path.glob("*.png")}
    shown = set()
    for page in (ROOT / "docs").glob("*.md"):
        for line in page.read_text().splitlines():
            if line.startswith("![") and "](img/" in line:
                shown.add(line.split("](img/")[1].rstrip(")"))
    assert shown - {"bench-ratios.png", "demo-loss.png"} == drawn  # those two: bench/ and the demo
    for name in drawn:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_ulp_figure_claims(dtype):
    """What ``softplus-ulp.png`` shows: fastrelu within 4 ULP everywhere on
    its grid; the naive formula infinite exactly where ``exp`` overflows."""
    x, naive, fast = _figures().ulp_errors(np.dtype(dtype), num=20_001)
    assert np.isfinite(fast).all() and fast.max() < 4
    overflows = x > np.log(np.finfo(dtype).max)
    assert overflows.any() and (~overflows).any()
    assert np.isinf(naive[overflows]).all() and np.isfinite(naive[~overflows]).all()
