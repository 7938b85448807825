"""The run directory: its schema (``schema``), checkpoints, the recorder that writes it
(``recorder``) and the reader (``reader``).
"""
