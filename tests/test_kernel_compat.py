"""Which ipykernel releases get the mid-cell Stop wrapper: pure, no kernel started."""

from __future__ import annotations

import sys
import types
from importlib.metadata import PackageNotFoundError, version

import pytest

from jupyter_stream import _kernel_compat as compat


@pytest.mark.parametrize(
    ("release", "measured"),
    [
        ("6.16.2", False),
        ("6.17.1", True),  # Colab's and Kaggle's pin
        ("6.29.5", True),  # the last ipykernel 6
        ("6.30.0", False),  # never measured: the notice, not the wrapper
        ("7.0.1", False),
        ("7.2.0", False),
        ("7.3.0", True),  # SageMaker's
        ("7.4.0", False),  # native from here on: no wrapper needed
    ],
)
def test_the_wrapper_is_on_only_for_the_measured_releases(
    release: str, measured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.SimpleNamespace(__version__=release))
    found = compat.ipykernel_version()
    assert found is not None and ".".join(map(str, found)) == release
    assert compat._measured(found) is measured


def test_the_version_is_the_imported_modules_else_the_installed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.SimpleNamespace(__version__="6.29.5"))
    assert compat.ipykernel_version() == (6, 29, 5)
    monkeypatch.setitem(sys.modules, "ipykernel", types.SimpleNamespace())  # says no version
    try:
        installed: str | None = version("ipykernel")
    except PackageNotFoundError:
        installed = None
    found = compat.ipykernel_version()
    assert (found is None) if installed is None else found == compat._parse_version(installed)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("7.4.0rc1", (7, 4, 0)),
        ("6.29.5", (6, 29, 5)),
        ("7.3", (7, 3)),
        ("6.17.1.post1", (6, 17, 1)),
        ("dev", ()),
    ],
)
def test_a_version_is_read_by_its_leading_release_numbers(
    text: str, parsed: tuple[int, ...]
) -> None:
    assert compat._parse_version(text) == parsed
