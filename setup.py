# setuptools shim: cffi's API-mode extensions are declared here (cffi_modules is a setup() keyword).
# Each csrc/build_<area>.py defines `ffibuilder` for the extension module emu._c_<area>.
#
# The extensions (the C twins) are optional: when one does not compile (no C compiler, no Python headers) the
# build warns and goes on, and n6emu installs without it (the default Numba backend needs none; whatever needs
# a C twin says how to get it: emu/_install.py).
import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

here = os.path.dirname(os.path.abspath(__file__))
builders = sorted(glob.glob(os.path.join(here, "csrc", "build_*.py")))

NOTICE = ("n6emu: building the optional C twin {name} failed ({error}); n6emu installs without it (the default "
          "Numba backend needs none). To get the C twins, install a C compiler (e.g. `apt-get install gcc`) and "
          "reinstall.")


class OptionalBuildExt(build_ext):
    """build_ext for optional extensions: a compile or link failure is a warning, not a failed install."""

    def finalize_options(self):
        super().finalize_options()
        for ext in self.extensions:
            ext.optional = True   # distutils' own rule: a failed optional extension warns (and is not copied)

    def run(self):
        try:
            super().run()
        except (PlatformError, CCompilerError, CompileError, LinkError, ExecError) as e:   # e.g. no compiler at all
            print(NOTICE.format(name="extensions", error=e), file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, LinkError, ExecError) as e:
            print(NOTICE.format(name=ext.name, error=str(e).splitlines()[0] if str(e) else type(e).__name__),
                  file=sys.stderr)
            raise   # distutils turns it into its "building extension failed" warning (ext.optional)


setup(cffi_modules=[os.path.relpath(p, here) + ":ffibuilder" for p in builders],
      cmdclass={"build_ext": OptionalBuildExt})
