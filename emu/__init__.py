"""n6emu: bit-exact host emulator of an STM32N6 keyword-spotting device chain."""
__version__ = "0.1.0"
