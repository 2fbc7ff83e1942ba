"""The documentation site builds without a warning, and its figures script
draws what the pages claim."""

import importlib.util
import json
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


def _kept(name):
    """The output kept in docs/data/*name*, without its "$ command" line."""
    lines = (ROOT / "docs" / "data" / name).read_text().splitlines(keepends=True)
    assert lines[0].startswith("$ ")
    return "".join(lines[1:])


def test_the_demo_output_on_the_kink_page_is_what_fastrelu_demo_prints():
    """The demo is deterministic: what docs/data/demo.txt keeps, and the kink
    page shows, is what the command prints today, line for line."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastrelu", "demo", "--no-plot"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _kept("demo.txt"), "run `fastrelu demo --no-plot` and keep its output in docs/data"


@pytest.mark.exhaustive
def test_the_study_output_on_the_kink_page_is_what_fastrelu_study_prints(tmp_path):
    """The study is deterministic too (about 10 minutes on 2 cores)."""
    pytest.importorskip("sklearn")
    command = (ROOT / "docs" / "data" / "study.txt").read_text().splitlines()[0][2:].split()
    assert command[:2] == ["fastrelu", "study"] and command[-2] == "--output"
    proc = subprocess.run(
        [sys.executable, "-m", "fastrelu", *command[2:-1], str(tmp_path / "study.png")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr
    printed, _, written = proc.stdout.rpartition("\nFigure written to ")
    kept, _, _ = _kept("study.txt").rpartition("\nFigure written to ")
    assert printed == kept and written.strip() == str(tmp_path / "study.png")


def _masked(text):
    """*text* with its numbers replaced: the form of a timing command's output."""
    return _NUMBER.sub("#", re.sub(r"\d+ µs", "# µs", text))


def _form(text):
    """The words of *text*'s lines, numbers masked, without the line that gives the size."""
    return [_masked(line).split() for line in text.splitlines() if line.strip() and "elements of" not in line]


def test_kept_timings_have_the_form_their_commands_print(tmp_path):
    """Timings differ from run to run, but what the pages keep of them must
    still be what the commands print: the same lines, with other numbers."""
    kept = (ROOT / "docs" / "data" / "fastrelu-bench.txt").read_text().split("$ ")[1:]
    for run in kept:
        command, _, printed = run.partition("\n")
        args = command.split()[1:] + ["--size", "2**12", "--repeat", "2"]
        proc = subprocess.run(
            [sys.executable, "-m", "fastrelu", *args], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert _form(proc.stdout) == _form(printed)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/test_switchover.py", "-k", "relu-1024", "-s", "-p"]
        + ["no:cacheprovider", "--benchmark-enable", "--benchmark-min-rounds=2", f"--basetemp={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    line = next(line for line in proc.stdout.splitlines() if "times as fast" in line)
    assert _masked(line) in {_masked(kept) for kept in _kept("switchover.txt").splitlines()}


def _script(path):
    """The script at *path* (from the repository's root), loaded as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
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
    # Those three: bench/, the demo and the study.
    assert shown - {"bench-ratios.png", "demo-loss.png", "study.png"} == drawn
    for name in drawn:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert proc.stdout == _kept("figures.txt"), "keep the output of `python docs/figures.py` in docs/data"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_ulp_figure_claims(dtype):
    """What ``softplus-ulp.png`` shows: fastrelu within 4 ULP everywhere on
    its grid; the naive formula infinite exactly where ``exp`` overflows."""
    x, naive, fast = _script("docs/figures.py").ulp_errors(np.dtype(dtype), num=20_001)
    assert np.isfinite(fast).all() and fast.max() < 4
    overflows = x > np.log(np.finfo(dtype).max)
    assert overflows.any() and (~overflows).any()
    assert np.isinf(naive[overflows]).all() and np.isfinite(naive[~overflows]).all()


# Measured numbers on a page stand between <!-- numbers: RECORD --> and
# <!-- /numbers -->, where RECORD is what a command printed, kept in
# docs/data/: a text file whose "$ ..." lines are the commands, or the
# benchmark suite's record, whose text is the tables bench/render.py makes
# of it.  Each number there with a decimal point, a percent sign or three
# digits must be one the record holds, and the page must name the command.
_NUMBERS = re.compile(r"<!-- numbers: (\S+) -->\n(.*?)<!-- /numbers -->", re.S)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?%?(?!\w|\.\d)")
_PAGES = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]


def _record(path):
    """The text of a record in docs/data and the commands that printed it."""
    if path.endswith(".json"):
        render = _script("bench/render.py")
        record = json.loads((ROOT / path).read_text())
        return render.section(record, ""), [record["command"]]
    text = (ROOT / path).read_text()
    return text, [line[2:] for line in text.splitlines() if line.startswith("$ ")]


def _values(text, significant):
    """The numbers of *text*: those with a decimal point, a % or at least three digits if *significant*."""
    found = set()
    for token in _NUMBER.findall(text):
        if significant and not ("." in token or "%" in token or len(token) >= 3):
            continue
        found.add((float(token.rstrip("%")), token.endswith("%")))
    return found


@pytest.mark.parametrize("page", _PAGES)
def test_measured_numbers_are_what_their_commands_printed(page):
    text = (ROOT / page).read_text()
    words = " ".join(text.replace("\\\n", " ").split())  # a command may run over lines
    for source, block in _NUMBERS.findall(text):
        printed, commands = _record(source)
        assert commands, f"{source} names no command"
        for command in commands:
            named = command.split(" | ")[0] in words
            assert named, f"{page} does not name `{command}`, which printed {source}"
        block = re.sub(r"`2\*\*\d+`|^```.*$", "", block, flags=re.M)
        missing = _values(block, significant=True) - _values(printed, significant=False)
        assert not missing, f"{page}: numbers that {source} does not hold: {sorted(missing)}"


def test_every_record_is_shown_by_a_page():
    shown = set()
    for page in _PAGES:
        text = (ROOT / page).read_text()
        shown |= {source for source, _ in _NUMBERS.findall(text)}
        shown |= set(re.findall(r'--8<-- "(docs/data/[^"]+)"', text))
    kept = {f"docs/data/{p.name}" for p in (ROOT / "docs" / "data").iterdir()}
    assert kept == shown


def test_the_performance_page_shows_the_kept_benchmark_results():
    """The tables between the markers of docs/performance.md are those that
    bench/render.py makes of docs/data/bench-suite.json, to the character."""
    render = _script("bench/render.py")
    page = (ROOT / "docs" / "performance.md").read_text()
    record = json.loads(render.RECORD.read_text())
    plot = "![fastrelu's speed-up over PyTorch, NumPy and a copy, against size](img/bench-ratios.png)"
    assert page == render.replace_section(page, render.section(record, plot)), "run python bench/render.py"
