"""What the chapters call: the book runner (``run``), parameter checks, run selection, reference
export, the text report.
"""
