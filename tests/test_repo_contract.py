"""The repository's contract (CONVENTIONS.md), checked for every paper folder (any ``*/train.py``).

For each paper: the required files exist, no paper imports another paper (and ``common`` imports none),
the ``train.py`` stays thin, and the README has Results and Deviations sections. The checks are functions of
a root folder, so they are also run on a fabricated tree to show that they catch violations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KNOWN_PAPERS = {
    "snp_s3", "m2_encoder", "video_scene", "sycoca", "label_adapter",
    "pink_rc", "tpm_cl", "eve_edit", "tsgsv", "switch_bert",
}  # fmt: skip
PAPER_FILES = [
    "__init__.py", "README.md", "model.py", "module.py", "data.py", "train.py",
    "configs/paper.yaml", "configs/tiny.yaml",
]  # fmt: skip
TEST_FILES = ["test_model.py", "test_data.py", "test_module.py", "test_train.py", "test_configs.py"]
MAX_TRAIN_LINES = 30


def discover_papers(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/train.py"))


def missing_files(root: Path, paper: str) -> list[str]:
    wanted = [f"{paper}/{f}" for f in PAPER_FILES] + [f"tests/{paper}/{f}" for f in TEST_FILES]
    return [f for f in wanted if not (root / f).is_file()]


def imported_top_level(path: Path) -> set[str]:
    """Top-level package names a Python file imports (absolute imports only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def cross_imports(root: Path, package: str, papers: set[str]) -> list[str]:
    """``file: other`` for every import of another paper inside ``package`` (a paper or ``common``)."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for name in sorted(imported_top_level(path) & (papers - {package})):
            found.append(f"{path.relative_to(root)}: imports {name}")
    return found


def train_py_lines(root: Path, paper: str) -> int:
    text = (root / paper / "train.py").read_text()
    return sum(1 for line in text.splitlines() if line.strip())


def missing_readme_sections(root: Path, paper: str) -> list[str]:
    lines = (root / paper / "README.md").read_text().splitlines()
    headings = [line.lstrip("#").strip().lower() for line in lines if line.startswith("#")]
    return [s for s in ("results", "deviations") if not any(h.startswith(s) for h in headings)]


PAPERS = discover_papers(REPO)


def test_paper_folders_have_known_names() -> None:
    assert set(PAPERS) <= KNOWN_PAPERS


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_has_required_files(paper: str) -> None:
    assert missing_files(REPO, paper) == []


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_imports_no_other_paper(paper: str) -> None:
    assert cross_imports(REPO, paper, KNOWN_PAPERS) == []


def test_common_imports_no_paper() -> None:
    assert (REPO / "common" / "__init__.py").is_file()
    assert cross_imports(REPO, "common", KNOWN_PAPERS) == []


@pytest.mark.parametrize("paper", PAPERS)
def test_train_py_stays_thin(paper: str) -> None:
    assert train_py_lines(REPO, paper) <= MAX_TRAIN_LINES


@pytest.mark.parametrize("paper", PAPERS)
def test_readme_has_results_and_deviations(paper: str) -> None:
    assert missing_readme_sections(REPO, paper) == []


def test_checks_catch_violations_in_a_fabricated_tree(tmp_path: Path) -> None:
    good, bad = tmp_path / "snp_s3", tmp_path / "tpm_cl"
    for paper in (good, bad):
        for rel in PAPER_FILES:
            (paper / rel).parent.mkdir(parents=True, exist_ok=True)
            (paper / rel).write_text("")
        (tmp_path / "tests" / paper.name).mkdir(parents=True)
        for rel in TEST_FILES:
            (tmp_path / "tests" / paper.name / rel).write_text("")
    (good / "README.md").write_text("# SNP-S3\n## Results\n## Deviations from the paper\n")
    (good / "model.py").write_text(
        "import torch\nfrom common.contrastive import clip_loss\nfrom . import data\n"
    )
    (bad / "README.md").write_text("# TPM-CL\n## Results\n")
    (bad / "model.py").write_text("from snp_s3.model import Encoder\n")
    (bad / "train.py").write_text("x = 1\n" * (MAX_TRAIN_LINES + 1))
    (tmp_path / "tests" / "tpm_cl" / "test_data.py").unlink()
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "video.py").write_text("def f():\n    import tpm_cl.data\n")

    assert discover_papers(tmp_path) == ["snp_s3", "tpm_cl"]
    assert missing_files(tmp_path, "snp_s3") == []
    assert missing_files(tmp_path, "tpm_cl") == ["tests/tpm_cl/test_data.py"]
    assert cross_imports(tmp_path, "snp_s3", KNOWN_PAPERS) == []
    assert cross_imports(tmp_path, "tpm_cl", KNOWN_PAPERS) == ["tpm_cl/model.py: imports snp_s3"]
    assert cross_imports(tmp_path, "common", KNOWN_PAPERS) == ["common/video.py: imports tpm_cl"]
    assert train_py_lines(tmp_path, "tpm_cl") > MAX_TRAIN_LINES
    assert missing_readme_sections(tmp_path, "snp_s3") == []
    assert missing_readme_sections(tmp_path, "tpm_cl") == ["deviations"]
