"""The shipped configs, installed as the package `ssljax.configs` (setup.py maps it to this folder).

`python -m ssljax.main --config simclr_digits` finds `simclr_digits.py` here after any install,
editable or not; in a checkout, `--config configs/simclr_digits.py` names the same file by path.
Each file defines `get_config()`; common.py holds the recipe blocks they share.
"""
