"""The alignment loop's ML core, free of Django: preference pairs, the GAPO/DPO/SFT losses and
trainer, the CogVideoX I2V generator (``cogvideox`` builds it, ``sampling`` makes candidate clips).
Plain Python + torch, usable from a GPU worker, a notebook or ``accelerate launch``."""
