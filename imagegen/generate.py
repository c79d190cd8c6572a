"""`python -m imagegen.generate "a red circle" --model RUN --out out.png` (see imagegen/cli/generate.py).

This module shares its name with the function `imagegen.generate`; it makes itself callable so
that `imagegen.generate(...)` works whether or not this module has been imported.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from imagegen.pipelines import generate

        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from imagegen.cli.generate import main

    sys.exit(main())
