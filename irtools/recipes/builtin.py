"""The built-in reference models (the top-level ``models`` package installed with irtools),
loaded from irtools' own installation: never from the working directory, whose own
``models/__init__.py`` would otherwise run on a plain ``irtools analyze``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import irtools
from irtools.ir.errors import UsageError

#: top-level packages shipped with irtools (pyproject.toml's packages.find).
BUILTIN_PACKAGES = ("models",)
INSTALL_ROOT = Path(irtools.__file__).resolve().parent.parent


def load_builtin_package(name: str = "models") -> ModuleType:
    """The installed package ``name``, from the files beside irtools; refused if a package of
    that name was already imported from somewhere else."""
    init = INSTALL_ROOT / name / "__init__.py"
    loaded = sys.modules.get(name)
    if loaded is not None:
        where = getattr(loaded, "__file__", None)
        if where is None or Path(where).resolve() != init:
            raise UsageError(f"a module {name!r} is already imported from {where or 'elsewhere'}, "
                             f"not irtools' built-in one ({init})")
        return loaded
    if not init.is_file():
        raise UsageError(f"irtools' built-in package {name!r} is not installed (no {init})")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


__all__ = ["BUILTIN_PACKAGES", "INSTALL_ROOT", "load_builtin_package"]
