"""Importing user code a recipe names as "package.module:name" (rewards, trainer callbacks)."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def import_named(spec: str, import_root: str | None, kind: str) -> tuple[str, str, Any]:
    """The module name, the attribute name and the attribute (None when missing) that
    "package.module:name" names.

    `import_root` (the sweep file's folder) goes first on the import path. ValueError says what
    is wrong; `kind` names what the spec should end in ("function", "Class").
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"must look like 'package.module:{kind}', got '{spec}'")
    if import_root and import_root not in sys.path:
        sys.path.insert(0, import_root)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of user code is an input problem
        raise ValueError(f"cannot import module '{module_name}' ({type(err).__name__}: {err})") from err
    return module_name, attribute, getattr(module, attribute, None)
