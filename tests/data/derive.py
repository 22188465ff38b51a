"""Write the corpus lookup data shipped with the golden testing kit, deterministically.

    .venv/bin/python tests/data/derive.py      # rewrites contacts.jsonl, sso.jsonl, companies.json

The data is the ``KIT`` world of tests/support/corpus_world.py (the one builder of the synthetic
CDP: its table gives the rules), written into the package data
(src/crm_audit_transform/data/audited-5.8.0/), next to the shipped copies of the fixture files;
tests/unit/test_golden_corpus_data.py fails when the two disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "src" / "crm_audit_transform" / "data" / "audited-5.8.0"


def derive() -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # run as a script: the tests' support package
    from support.corpus_world import kit_files

    for name, text in kit_files().items():
        (PACKAGED / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    derive()
