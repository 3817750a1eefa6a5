"""Audio front ends: tables (window, mel), binary16 helpers, parameters, the ST column algorithm (st-f16,
st-f32) and its C twin. The cmsis-q15 front end lives in emu/frontend/cmsis_q15.py (its own owner)."""
