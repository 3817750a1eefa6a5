# setuptools shim: cffi's API-mode extensions are declared here (cffi_modules is a setup() keyword).
# Each csrc/build_<area>.py defines `ffibuilder` for the extension module emu._c_<area>.
import glob
import os

from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
builders = sorted(glob.glob(os.path.join(here, "csrc", "build_*.py")))
setup(cffi_modules=[os.path.relpath(p, here) + ":ffibuilder" for p in builders])
