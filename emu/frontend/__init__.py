"""Audio front ends: tables (window, mel), binary16 helpers, parameters, the ST column algorithm (st-f16,
st-f32) and its C twin, the cmsis-q15 fixed-point front end (cmsis_q15.py) and its C twin; registry.py maps
each profile name to its typed config, prepare and canonical stages, and holds FrontEnd."""
