"""The examples in the stream core's docstrings run, and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

from driftline.streams import core

MODULES = sorted(info.name for info in pkgutil.walk_packages(core.__path__, core.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_a_core_module_give_what_they_show(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)

    assert result.failed == 0


def test_the_core_has_docstring_examples() -> None:
    finder = doctest.DocTestFinder()
    examples = sum(len(test.examples) for name in MODULES for test in finder.find(importlib.import_module(name)))

    assert examples > 0
