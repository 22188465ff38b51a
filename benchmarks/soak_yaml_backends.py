"""A long randomized run of the YAML backends' differential fuzz
(tests/property/test_yaml_backends_differential.py).

The suite runs the same properties on a fixed, bounded set of examples so that a landing never
meets a new one; this runs them on fresh random examples for as long as asked, and stops at the
first disagreement with its smallest example (hypothesis shrinks it). Add that example to the test
(``@example``) and fix the backend that reads the text otherwise than libyaml (Psych's parser).

Usage: .venv/bin/python benchmarks/soak_yaml_backends.py [--examples 20000] [--seed N]
(about 40 ms an example of each property on one core; exit 1 on a disagreement, 0 otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "property"), str(TESTS)]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from test_loader_properties import YAMLISH, RubyHash, documents, psych_dump  # noqa: E402
from test_yaml_backends_differential import (  # noqa: E402
    BACKENDS,
    EDITS,
    SCALAR_FORMS,
    SCALAR_PLACES,
    assert_backends_agree,
    edited,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="examples of each property")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (default: a fresh one)")
    args = parser.parse_args()
    soak = settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )

    @given(documents())
    def psych_documents(document: RubyHash) -> None:
        assert_backends_agree(psych_dump(document))

    @given(documents(), EDITS)
    def edited_psych_documents(document: RubyHash, edits: list[tuple[int, str, str]]) -> None:
        assert_backends_agree(edited(psych_dump(document), edits))

    @given(SCALAR_FORMS, SCALAR_PLACES)
    def plain_scalar_forms(scalar: str, place: str) -> None:
        assert_backends_agree(place.format(scalar))

    @given(YAMLISH.map(lambda tail: "---" + tail))
    def yaml_like_noise(text: str) -> None:
        assert_backends_agree(text)

    print(f"backends: {', '.join(BACKENDS)}; {args.examples} examples a property", flush=True)
    for prop in (psych_documents, edited_psych_documents, plain_scalar_forms, yaml_like_noise):
        run = soak(prop if args.seed is None else seed(args.seed)(prop))
        started = time.monotonic()
        try:
            run()
        except AssertionError as failure:
            print(f"{prop.__name__}: DISAGREEMENT after {time.monotonic() - started:.0f} s\n{failure}")
            return 1
        print(f"{prop.__name__}: agreed ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
