"""The ``mlobs`` command: one module per command, plus the argparse types and the text
formatting they share.
"""
