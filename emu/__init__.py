"""n6emu: bit-exact host emulator of an STM32N6 keyword-spotting device chain."""
__version__ = "0.1.0"   # the one version source (pyproject.toml reads it: [tool.setuptools.dynamic])

# Before any kernel module is imported (their @njit(cache=True) decorations pick the cache folder): Numba's
# cache goes to a per-user folder, never into the package (emu/_install.py).
from emu._install import configure_numba_cache as _configure_numba_cache

_configure_numba_cache()
